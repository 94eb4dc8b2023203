"""What the export report measures: ranking accuracy of ORT scores, latency, file sizes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from llarapp.eval import metrics as M
from llarapp.llara.layout import Example, PromptBuilder

Feeds = dict[str, np.ndarray]


@dataclass
class PromptSet:
    """Protocol (a) prompts of one split, packed into ranker feeds in batches."""

    examples: list[Example]
    batches: list[Feeds]

    @classmethod
    def pack(cls, builder: PromptBuilder, examples: list[Example], item_vectors: np.ndarray,
             pad_id: int, batch_size: int = 32) -> PromptSet:
        return cls(examples, [builder.pack(examples[s:s + batch_size], item_vectors, pad_id)
                              .onnx_inputs() for s in range(0, len(examples), batch_size)])

    @property
    def labels(self) -> np.ndarray:
        return np.array([e.label for e in self.examples])

    def scores(self, run: Callable[[Feeds], np.ndarray]) -> np.ndarray:
        return np.concatenate([run(feeds) for feeds in self.batches])

    def metrics(self, scores: np.ndarray) -> dict[str, float]:
        k = scores.shape[1]
        per_row = M.candidate_metrics(scores, self.labels, ks=(k,))
        return {"hr@1": float(per_row["hit_ratio@1"].mean()),
                f"ndcg@{k}": float(per_row[f"ndcg@{k}"].mean())}



def latency_ms(runs: dict[str, Callable[[Feeds], np.ndarray]], feeds: Feeds, repeats: int,
               rounds: int = 3) -> dict[str, tuple[float, float]]:
    """(p50, p99) wall time per model of ``run(feeds)``. Models take turns in ``rounds``
    blocks (one warm-up call, then ``repeats`` timed calls each), so drift on a shared
    machine hits all alike while every block runs with its own weights in cache, as a
    server would."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            run(feeds)
            for _ in range(repeats):
                start = time.perf_counter()
                run(feeds)
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: (float(np.percentile(values, 50)), float(np.percentile(values, 99)))
            for name, values in times.items()}


def batch_of(prompts: PromptSet, builder: PromptBuilder, item_vectors: np.ndarray, pad_id: int,
             size: int) -> Feeds:
    """The first ``size`` prompts (cycled when fewer), packed as one batch."""
    chosen = [prompts.examples[i % len(prompts.examples)] for i in range(size)]
    return builder.pack(chosen, item_vectors, pad_id).onnx_inputs()
