"""The retrieve stage: LightGCN, text-only and hybrid recommendations, λ tuned on val.

See :mod:`llarapp.models.hybrid` for the scores. For every λ in the grid, the validation
playlists' top lists are scored with the challenge NDCG; the best λ is then used for
every split. Writes the usual ``recommendations`` artifact (one list per model and
held-out playlist) plus the tuning table and its plot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from llarapp.config import StageConfig, require
from llarapp.data.dataset import Dataset, Split
from llarapp.eval import metrics as M
from llarapp.eval.plots import save_curves
from llarapp.models.cold_mapper import ColdMapper
from llarapp.models.graph import GraphEmbeddings
from llarapp.models.hybrid import MODELS, HybridScorer, Queries
from llarapp.models.retrieval import RecommendationLists, batches_of, seed_matrix
from llarapp.models.text_embed import TextEmbeddings


@dataclass
class RetrieveConfig(StageConfig):
    models: list[str] = field(default_factory=lambda: list(MODELS))
    splits: list[str] = field(default_factory=lambda: ["val", "test"])
    num_recs: int = 500
    lambdas: list[float] = field(
        default_factory=lambda: [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    lam: float = -1.0  # >= 0: use this λ and skip tuning
    title_weight: float = 1.0
    batch_size: int = 256

    def validate(self) -> None:
        unknown = set(self.models) - set(MODELS)
        require(not unknown, f"unknown models {sorted(unknown)}; valid: {', '.join(MODELS)}")
        require(set(self.splits) <= {"val", "test"}, "splits must be among val, test")
        require(self.num_recs >= 1, "num_recs must be at least 1")
        require(bool(self.lambdas) and min(self.lambdas) >= 0, "lambdas must be >= 0")
        require(self.title_weight >= 0, "title_weight must be >= 0")
        require(self.batch_size >= 1, "batch_size must be at least 1")


def _queries(scorer: HybridScorer, text: TextEmbeddings, batch: pd.DataFrame,
             num_items: int) -> Queries:
    return scorer.queries(seed_matrix(batch["seeds"], num_items),
                          text.titles(batch["pid"].to_numpy()))


def tune_lambda(scorer: HybridScorer, text: TextEmbeddings, val: pd.DataFrame,
                lambdas: list[float], num_items: int, batch_size: int,
                num_recs: int = 500) -> pd.DataFrame:
    """Mean validation challenge-NDCG (and R-precision) of the hybrid for each λ."""
    sums = np.zeros((len(lambdas), 2))
    counted = 0
    for batch in tqdm(list(batches_of(val, batch_size)), desc="tune λ", unit="batch"):
        q = _queries(scorer, text, batch, num_items)
        parts = scorer.components(q)
        relevant = M.relevance_matrix(list(batch["targets"]), num_items)
        for i, lam in enumerate(lambdas):
            recs = scorer.recommend(q, "hybrid", lam, num_recs, parts)
            sums[i] += [np.nansum(M.challenge_ndcg(recs, relevant)),
                        np.nansum(M.r_precision(recs, relevant))]
        counted += len(batch)
    return pd.DataFrame({"lambda": lambdas, "ndcg": sums[:, 0] / max(counted, 1),
                         "r_precision": sums[:, 1] / max(counted, 1)})


def run_retrieve(cfg: RetrieveConfig, dataset: Dataset, split: Split, text: TextEmbeddings,
                 graph: GraphEmbeddings, mapper: ColdMapper,
                 output: str | os.PathLike[str]) -> dict[str, Any]:
    scorer = HybridScorer.from_artifacts(text, graph, mapper, cfg.title_weight)
    num_items = dataset.num_tracks
    tuning = pd.DataFrame()
    if cfg.lam >= 0:
        lam = cfg.lam
    else:
        tuning = tune_lambda(scorer, text, split.heldout_for("val"), cfg.lambdas, num_items,
                             cfg.batch_size, cfg.num_recs)
        lam = float(tuning.loc[tuning["ndcg"].idxmax(), "lambda"])
    heldout = split.heldout[split.heldout["split"].isin(cfg.splits)].reset_index(drop=True)
    lists = RecommendationLists()
    for batch in tqdm(list(batches_of(heldout, cfg.batch_size)), desc="retrieve",
                      unit="batch"):
        q = _queries(scorer, text, batch, num_items)
        parts = scorer.components(q) if set(cfg.models) - {"lightgcn"} else None
        for model in cfg.models:
            lists.add(model, batch, scorer.recommend(q, model, lam, cfg.num_recs, parts))

    def write_tuning(folder: Path) -> None:
        if len(tuning):
            tuning.to_csv(folder / "lambda_tuning.csv", index=False)
            save_curves(tuning, "lambda", ["ndcg", "r_precision"], folder / "lambda_tuning.png",
                        "hybrid: validation metrics by λ")

    return lists.save(output, write_extra=write_tuning, config=cfg.to_dict(),
                      models=cfg.models, splits=cfg.splits, hybrid_lambda=lam,
                      lambda_tuning=tuning.to_dict(orient="records"),
                      split_dataset_hash=split.manifest["dataset_hash"])
