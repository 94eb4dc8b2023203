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


def onnx_runner(session) -> Callable[[Feeds], np.ndarray]:
    return lambda feeds: session.run(None, feeds)[0]


def latency_ms(run: Callable[[Feeds], np.ndarray], feeds: Feeds, repeats: int
               ) -> dict[str, float]:
    """Median and p90 wall time of ``run(feeds)`` after two warm-up calls."""
    for _ in range(2):
        run(feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.quantile(times, 0.9))}


def batch_of(prompts: PromptSet, builder: PromptBuilder, item_vectors: np.ndarray, pad_id: int,
             size: int) -> Feeds:
    """The first ``size`` prompts (cycled when fewer), packed as one batch."""
    chosen = [prompts.examples[i % len(prompts.examples)] for i in range(size)]
    return builder.pack(chosen, item_vectors, pad_id).onnx_inputs()
