"""``llarapp eval-llara``: LLaRA against LightGCN and the hybrid on the same candidates.

* Protocol (a), LLaRA's: the first held-out track plus K-1 uniform random negatives, each
  with the features the server would give it; HR@1, HR@5 and NDCG@K by segment (all, warm
  or cold target, title-only playlists). ``feature_head``, LLaRA's head without its LM,
  is reported beside it on both protocols (an ablation, never shipped).
* Position bias: HR@1 with the target moved to the first and to the last slot.
* Protocol (b): rerank the hybrid retrieval's top K; NDCG@10, Recall@10 and R-precision
  against all held-out tracks for retrieval alone, LambdaMART and LLaRA, on the
  validation ``select`` part and on test (:mod:`llarapp.rerank.compare`); the ranker the
  bundle ships is chosen there, on validation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from llarapp.config import TrackedConfig, require
from llarapp.eval import metrics as M
from llarapp.eval.plots import save_grid
from llarapp.llara.checkpoint import LlaraArtifact
from llarapp.llara.examples import ExampleFactory, Sources
from llarapp.llara.model import LlaraRanker
from llarapp.llara.prompts import Collator, Example
from llarapp.llara.stage import make_collator
from llarapp.manifest import write_json, write_manifest
from llarapp.models.torch_utils import DEVICES, resolve_device
from llarapp.rerank.compare import CompareSettings, ListScorer, compare_rankers
from llarapp.rerank.features import FEATURES
from llarapp.rerank.lambdamart import LambdaMartParams
from llarapp.rerank.lists import RetrievedLists
from llarapp.storage import atomic_dir


@dataclass
class LlaraEvalConfig(TrackedConfig):
    split: str = "test"
    rerank_k: int = 10
    batch_size: int = 32
    device: str = "auto"
    seed: int = 1
    hybrid: bool | None = None  # None: hybrid prompts unless the model trained text-only
    # Protocol (b) and the ranker choice
    ranker_tolerance: float = 0.01  # a reranker must beat retrieval by more, relatively
    lambdamart_trees: int = LambdaMartParams.trees
    lambdamart_leaves: int = LambdaMartParams.leaves
    lambdamart_learning_rate: float = LambdaMartParams.learning_rate
    lambdamart_min_child_samples: int = LambdaMartParams.min_child_samples

    def validate(self) -> None:
        require(self.split in ("val", "test"), "split must be val or test")
        require(self.rerank_k > 0 and self.batch_size > 0, "rerank_k and batch_size must be > 0")
        require(0 <= self.ranker_tolerance < 1, "ranker_tolerance is a fraction in [0, 1)")
        self.lambdamart.validate()
        require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}")

    @property
    def lambdamart(self) -> LambdaMartParams:
        return LambdaMartParams(self.lambdamart_trees, self.lambdamart_leaves,
                                self.lambdamart_learning_rate,
                                self.lambdamart_min_child_samples, self.seed)

    def compare_settings(self, num_candidates: int) -> CompareSettings:
        return CompareSettings(num_candidates, self.rerank_k, self.ranker_tolerance,
                               self.lambdamart)


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
    """The same candidates (and their features) with the true item moved to ``position``;
    the others keep their order."""
    moved = []
    for e in examples:
        index = position % len(e.candidates)
        order = np.insert(np.delete(np.arange(len(e.candidates)), e.label), index, e.label)
        features = None if e.features is None else e.features[order]
        moved.append(replace(e, candidates=e.candidates[order], label=index,
                             features=features))
    return moved


def baseline_scores(sources: Sources, examples: list[Example]) -> dict[str, np.ndarray]:
    """LightGCN (fold-in or title query · LightGCN item vectors) and the tuned hybrid, whose
    score is a column of the examples' features."""
    candidates = np.stack([e.candidates for e in examples])
    queries = np.stack([e.playlist_vector for e in examples])
    lightgcn = np.einsum("bd,bkd->bk", queries, sources.graph.items[candidates])
    hybrid = np.stack([e.features[:, FEATURES.index("hybrid")] for e in examples])
    return {"lightgcn": lightgcn, "hybrid": hybrid}


def segments_of(sources: Sources, heldout: pd.DataFrame, examples: list[Example]
                ) -> dict[str, np.ndarray]:
    """Protocol (a)'s segments: all, warm or cold target, title-only playlists."""
    targets = np.array([e.candidates[e.label] for e in examples], dtype=np.int64)
    target_warm = sources.scorer.warm[targets]
    return {"all": np.ones(len(examples), bool), "warm_target": target_warm,
            "cold_target": ~target_warm, "title_only": heldout["num_seeds"].to_numpy() == 0}


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


def llara_list_scorer(ranker: LlaraRanker, collator: Collator, sources: Sources,
                      history_len: int, hybrid: bool, batch_size: int, device: torch.device
                      ) -> ListScorer:
    """Protocol (b) scores of LLaRA: each retrieved list as one prompt, retrieval order."""
    def score(lists: RetrievedLists, split: str) -> np.ndarray:
        examples = [Example(str(sources.titles.get(pid, "")),
                            np.asarray(seeds, dtype=np.int64)[-history_len:],
                            lists.candidates[i], -1, lists.graph_queries[i],
                            features=lists.features[i])
                    for i, (pid, seeds) in enumerate(zip(lists.heldout["pid"],
                                                         lists.heldout["seeds"], strict=True))]
        return score_examples(ranker, collator, examples, hybrid, batch_size, device,
                              desc=f"rerank ({split})")
    return score


FEATURE_HEAD = "feature_head"  # the ablation: LLaRA's feature head alone, without the LM


@torch.no_grad()
def feature_head_scores(ranker: LlaraRanker, features: np.ndarray) -> np.ndarray:
    """(B, K) scores of the ranker's feature head alone."""
    device = ranker.feature_head.mean.device
    return ranker.feature_head(torch.from_numpy(features).float().to(device)).cpu().numpy()


def before_after(table: list[dict[str, Any]], k: int) -> dict[str, float]:
    """Test-split retrieval (before) and LLaRA (after) figures, the flat keys reports read."""
    test = {row["ranker"]: row for row in table if row["split"] == "test"}
    return {f"{metric}@{k}_{name}": test[ranker][f"{metric}@{k}"]
            for name, ranker in (("before", "retrieval"), ("after", "llara"))
            for metric in ("recall", "ndcg")}


def run_eval_llara(cfg: LlaraEvalConfig, model: LlaraArtifact, sources: Sources,
                   output: str | os.PathLike[str]) -> dict[str, Any]:
    trained = model.config
    device = resolve_device(cfg.device)
    hybrid = trained.schedule != "text" if cfg.hybrid is None else cfg.hybrid
    ranker = model.ranker()
    collator = make_collator(ranker.backbone, sources, trained)
    heldout = sources.split.heldout_for(cfg.split)
    factory = ExampleFactory(sources, trained.num_candidates, trained.history_len, cfg.seed)
    examples = factory.random_candidates(heldout)
    labels = np.array([e.label for e in examples])
    scores = {"llara": score_examples(ranker, collator, examples, hybrid, cfg.batch_size, device)}
    ablations: dict[str, ListScorer] = {}
    if ranker.feature_head is not None:
        scores[FEATURE_HEAD] = feature_head_scores(
            ranker, np.stack([e.features for e in examples]))
        ablations[FEATURE_HEAD] = lambda lists, _: feature_head_scores(ranker, lists.features)
    scores |= baseline_scores(sources, examples)
    table = candidate_table(scores, labels, segments_of(sources, heldout, examples))
    bias = {}
    for name, position in (("first", 0), ("last", -1)):
        moved = move_target(examples, position)
        moved_scores = score_examples(ranker, collator, moved, hybrid, cfg.batch_size, device,
                                      desc=f"position bias ({name})")
        bias[f"hr@1_target_{name}"] = float(M.candidate_metrics(
            moved_scores, np.array([e.label for e in moved]), ks=(1,))["hit_ratio@1"].mean())
    with atomic_dir(output) as folder:
        choice = compare_rankers(
            cfg.compare_settings(trained.num_candidates), sources,
            llara_list_scorer(ranker, collator, sources, trained.history_len, hybrid,
                              cfg.batch_size, device), folder, ablations)
        rerank = before_after(choice["table"], cfg.rerank_k)
        result = {"split": cfg.split, "hybrid_prompts": hybrid, "schedule": trained.schedule,
                  "candidates": table.to_dict(orient="records"), "position_bias": bias,
                  "rerank": rerank, "rankers": choice}
        markdown = table.to_markdown(index=False, floatfmt=".4f")
        bias_table = pd.DataFrame([bias]).T.rename(columns={0: "value"})
        rankers = pd.DataFrame(choice["table"])
        (folder / "metrics.md").write_text(
            f"# LLaRA ({trained.schedule}), {cfg.split} split, {len(labels)} playlists\n\n"
            f"## {trained.num_candidates} candidates: target + random negatives\n\n{markdown}\n\n"
            f"## Position bias\n\n{bias_table.to_markdown(floatfmt='.4f')}\n\n"
            f"## Reranking the hybrid's top {trained.num_candidates}: the shipped ranker\n\n"
            f"{rankers.to_markdown(index=False, floatfmt='.4f')}\n\n"
            f"Shipped: **{choice['ranker']}**, because {choice['why']} (chosen on the "
            f"validation `select` playlists; test is only reported).\n")
        save_grid(table, "segment", "model", ["hr@1", "hr@5"], folder / "hr_by_segment.png",
                  "HR on the same candidates, by segment", bars=True)
        save_grid(rankers, "split", "ranker", [f"ndcg@{cfg.rerank_k}", f"recall@{cfg.rerank_k}"],
                  folder / "rankers.png", "Reranking the retrieved top K, by ranker", bars=True)
        if cfg.track:
            from llarapp.tracking import log_run

            flat = {f"{r['model']}.{r['segment']}.{m}": r[m] for r in result["candidates"]
                    for m in ("hr@1", "hr@5")}
            result["mlflow"] = log_run(
                experiment=cfg.experiment, run_name=f"eval-llara-{trained.schedule}",
                params=cfg.to_dict() | {"schedule": trained.schedule},
                metrics=flat | bias | rerank | {
                    f"{r['split']}.{r['ranker']}.{m}": r[m] for r in choice["table"]
                    for m in (f"ndcg@{cfg.rerank_k}", f"recall@{cfg.rerank_k}")},
                artifacts=[folder / "metrics.md", folder / "hr_by_segment.png",
                           folder / "rankers.png"],
                tags={"stage": "eval-llara", "ranker": choice["ranker"]},
                tracking_uri=cfg.tracking_uri or None)
        write_json(folder / "metrics.json", result)
        write_manifest(folder, "llara-evaluation", 1, config=cfg.to_dict(),
                       model=str(model.folder), schedule=trained.schedule,
                       ranker=choice["ranker"])
    return result
