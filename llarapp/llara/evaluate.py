"""``llarapp eval-llara``: LLaRA against LightGCN and the hybrid on the same candidates.

* Protocol (a), LLaRA's: the first held-out track plus K-1 uniform random negatives;
  HR@1, HR@5 and NDCG@K by segment (all, warm or cold target, title-only playlists).
* Position bias: HR@1 with the target moved to the first and to the last slot.
* Protocol (b): rerank the hybrid retrieval's top K; Recall@10 and NDCG@10 against all
  held-out tracks, before and after.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from llarapp.artifacts import write_json, write_manifest
from llarapp.config import TrackedConfig, require
from llarapp.eval import metrics as M
from llarapp.eval.plots import save_grid
from llarapp.llara.artifact import LlaraArtifact
from llarapp.llara.examples import ExampleFactory, Retrieval, Sources
from llarapp.llara.model import LlaraRanker
from llarapp.llara.prompts import Collator, Example
from llarapp.llara.train import make_collator
from llarapp.models.torch_utils import DEVICES, resolve_device
from llarapp.storage import atomic_dir


@dataclass
class LlaraEvalConfig(TrackedConfig):
    split: str = "test"
    rerank_k: int = 10
    batch_size: int = 32
    device: str = "auto"
    seed: int = 1
    hybrid: bool | None = None  # None: hybrid prompts unless the model trained text-only

    def validate(self) -> None:
        require(self.split in ("val", "test"), "split must be val or test")
        require(self.rerank_k > 0 and self.batch_size > 0, "rerank_k and batch_size must be > 0")
        require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}")


@torch.no_grad()
def score_examples(ranker: LlaraRanker, collator: Collator, examples: list[Example],
                   hybrid: bool, batch_size: int, device: torch.device,
                   desc: str = "llara scoring") -> np.ndarray:
    """Label logits (examples × K), one forward pass per batch."""
    ranker.to(device).eval()
    out = []
    for start in tqdm(range(0, len(examples), batch_size), desc=desc, unit="batch"):
        batch = collator(examples[start:start + batch_size]).to(device)
        out.append(ranker(batch, hybrid).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def move_target(examples: list[Example], position: int) -> list[Example]:
    """The same candidates with the true item moved to ``position`` (others keep order)."""
    moved = []
    for e in examples:
        others = np.delete(e.candidates, e.label)
        index = position % len(e.candidates)
        moved.append(replace(e, candidates=np.insert(others, index, e.candidates[e.label]),
                             label=index))
    return moved


def baseline_scores(sources: Sources, retrieval: Retrieval, candidates: np.ndarray
                    ) -> dict[str, np.ndarray]:
    """LightGCN (fold-in or title query · LightGCN item vectors) and the tuned hybrid."""
    rows = np.arange(len(candidates))[:, None]
    lightgcn = np.einsum("bd,bkd->bk", retrieval.queries.graph,
                         sources.graph.items[candidates])
    return {"lightgcn": lightgcn, "hybrid": retrieval.scores[rows, candidates]}


def candidate_table(scores: dict[str, np.ndarray], labels: np.ndarray,
                    segments: dict[str, np.ndarray]) -> pd.DataFrame:
    k = next(iter(scores.values())).shape[1]
    rows = []
    for model, values in scores.items():
        per_row = M.candidate_metrics(values, labels, ks=(5, k))
        for segment, mask in segments.items():
            if mask.any():
                rows.append({"model": model, "segment": segment, "playlists": int(mask.sum()),
                             "hr@1": per_row["hit_ratio@1"][mask].mean(),
                             "hr@5": per_row["recall@5"][mask].mean(),
                             f"ndcg@{k}": per_row[f"ndcg@{k}"][mask].mean()})
    return pd.DataFrame(rows)


def rerank_metrics(examples: list[Example], scores: np.ndarray, heldout: pd.DataFrame,
                   num_items: int, k: int) -> dict[str, float]:
    before = np.stack([e.candidates for e in examples])
    after = np.take_along_axis(before, np.argsort(-scores, axis=1, kind="stable"), axis=1)
    relevant = M.relevance_matrix(list(heldout["targets"]), num_items)
    out = {}
    for name, recs in (("before", before), ("after", after)):
        out[f"recall@{k}_{name}"] = float(np.nanmean(M.recall_at_k(recs, relevant, k)))
        out[f"ndcg@{k}_{name}"] = float(np.nanmean(M.ndcg_at_k(recs, relevant, k)))
    return out


def evaluate_llara(cfg: LlaraEvalConfig, model: LlaraArtifact, sources: Sources,
                   output: str | os.PathLike[str]) -> dict[str, Any]:
    trained = model.config
    device = resolve_device(cfg.device)
    hybrid = trained.schedule != "text" if cfg.hybrid is None else cfg.hybrid
    ranker = model.ranker()
    collator = make_collator(ranker.backbone, sources, trained)
    heldout = sources.split.heldout_for(cfg.split)
    factory = ExampleFactory(sources, trained.num_candidates, trained.history_len, cfg.seed)
    retrieval = sources.retrieval([np.asarray(s, dtype=np.int64) for s in heldout["seeds"]],
                                  heldout["pid"].to_numpy())
    examples = factory.random_candidates(heldout, retrieval.queries.graph)
    labels = np.array([e.label for e in examples])
    candidates = np.stack([e.candidates for e in examples])
    scores = {"llara": score_examples(ranker, collator, examples, hybrid, cfg.batch_size, device)}
    scores |= baseline_scores(sources, retrieval, candidates)
    target_warm = sources.scorer.warm[candidates[np.arange(len(labels)), labels]]
    segments = {"all": np.ones(len(labels), bool), "warm_target": target_warm,
                "cold_target": ~target_warm,
                "title_only": heldout["num_seeds"].to_numpy() == 0}
    table = candidate_table(scores, labels, segments)
    bias = {}
    for name, position in (("first", 0), ("last", -1)):
        moved = move_target(examples, position)
        moved_scores = score_examples(ranker, collator, moved, hybrid, cfg.batch_size, device,
                                      desc=f"position bias ({name})")
        bias[f"hr@1_target_{name}"] = float(M.candidate_metrics(
            moved_scores, np.array([e.label for e in moved]), ks=(1,))["hit_ratio@1"].mean())
    retrieved = factory.retrieved_candidates(heldout, retrieval)
    rerank = rerank_metrics(retrieved, score_examples(ranker, collator, retrieved, hybrid,
                                                      cfg.batch_size, device, desc="rerank"),
                            heldout, sources.num_items, cfg.rerank_k)
    result = {"split": cfg.split, "hybrid_prompts": hybrid, "schedule": trained.schedule,
              "candidates": table.to_dict(orient="records"), "position_bias": bias,
              "rerank": rerank}
    with atomic_dir(output) as folder:
        markdown = table.to_markdown(index=False, floatfmt=".4f")
        extra = pd.DataFrame([bias | rerank]).T.rename(columns={0: "value"})
        (folder / "metrics.md").write_text(
            f"# LLaRA ({trained.schedule}), {cfg.split} split, {len(labels)} playlists\n\n"
            f"## {trained.num_candidates} candidates: target + random negatives\n\n{markdown}\n\n"
            f"## Position bias and reranking the hybrid's top {trained.num_candidates}\n\n"
            f"{extra.to_markdown(floatfmt='.4f')}\n")
        save_grid(table, "segment", "model", ["hr@1", "hr@5"], folder / "hr_by_segment.png",
                  "HR on the same candidates, by segment", bars=True)
        if cfg.track:
            from llarapp.tracking import log_run

            flat = {f"{r['model']}.{r['segment']}.{m}": r[m] for r in result["candidates"]
                    for m in ("hr@1", "hr@5")}
            result["mlflow"] = log_run(
                experiment=cfg.experiment, run_name=f"eval-llara-{trained.schedule}",
                params=cfg.to_dict() | {"schedule": trained.schedule},
                metrics=flat | bias | rerank, artifacts=[folder / "metrics.md",
                                                         folder / "hr_by_segment.png"],
                tags={"stage": "eval-llara"}, tracking_uri=cfg.tracking_uri or None)
        write_json(folder / "metrics.json", result)
        write_manifest(folder, "llara-evaluation", 1, config=cfg.to_dict(),
                       model=str(model.folder), schedule=trained.schedule)
    return result
