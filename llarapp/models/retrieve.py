"""The retrieve stage: LightGCN, text-only and hybrid recommendations, λ and β tuned on val.

See :mod:`llarapp.models.hybrid` for the scores. Every (λ, β) in the grid ranks the
validation playlists; the pair with the best ``tune_metric`` is used for every split.
Seeded and title-only playlists get their own pair (``per_query_type``): a title alone
is a much weaker text query than a handful of seed tracks, so the best mix differs.

Every cold track the hybrid ranks takes a slot from a warm one, so reaching cold targets
costs accuracy on warm ones. ``tune_metric`` says how that trade is made:

* ``cold_budget`` (default): the best cold-target NDCG among the pairs whose warm-target
  NDCG is at most ``cold_budget`` (a share, 0.02 = 2%) below LightGCN alone's on the same
  validation playlists; if no pair is within it, the best warm-target NDCG.
* ``balanced_ndcg``: the mean of warm- and cold-target NDCG (cold counts as much as warm).
* ``ndcg``: NDCG over all targets.

Writes the usual ``recommendations`` artifact (one list per model and held-out playlist)
plus the tuning table and its plot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from tqdm import tqdm

from llarapp.config import require
from llarapp.data.dataset import Dataset, Split
from llarapp.eval import metrics as M
from llarapp.eval.plots import save_grid
from llarapp.models.cold_mapper import ColdMapper
from llarapp.models.graph import GraphVectors
from llarapp.models.hybrid import MODELS, HybridScorer, Queries
from llarapp.models.retrieval import (
    RecommendationLists,
    RecommenderConfig,
    batches_of,
    seed_matrix,
)
from llarapp.models.text_embed import TextEmbeddings


@dataclass
class RetrieveConfig(RecommenderConfig):
    MODELS: ClassVar[tuple[str, ...]] = MODELS
    lambdas: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    cold_offsets: list[float] = field(
        default_factory=lambda: [-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0])
    lam: float = -1.0  # >= 0: use this λ (and cold_offset) and skip tuning
    cold_offset: float = 0.0
    tune_metric: str = "cold_budget"
    cold_budget: float = 0.02  # warm-target NDCG the hybrid may give up vs LightGCN alone
    per_query_type: bool = True
    title_weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        require(bool(self.lambdas) and min(self.lambdas) >= 0, "lambdas must be >= 0")
        require(bool(self.cold_offsets), "cold_offsets must not be empty")
        require(self.tune_metric in TUNE_METRICS,
                f"tune_metric must be one of {', '.join(TUNE_METRICS)}")
        require(self.title_weight >= 0, "title_weight must be >= 0")
        require(0 <= self.cold_budget < 1, "cold_budget must be in [0, 1), e.g. 0.02 for 2%")


TUNE_COLUMNS = ["ndcg", "ndcg_warm", "ndcg_cold", "r_precision", "lightgcn_ndcg_warm"]
TUNE_METRICS = ("cold_budget", "balanced_ndcg", "ndcg")
QUERY_TYPES = ("seeded", "title_only")
Params = dict[str, tuple[float, float]]  # query type -> (λ, β)


def query_types(frame: pd.DataFrame) -> np.ndarray:
    return np.where(frame["num_seeds"].to_numpy() > 0, "seeded", "title_only")


def _queries(scorer: HybridScorer, text: TextEmbeddings, batch: pd.DataFrame,
             num_items: int) -> Queries:
    return scorer.queries(seed_matrix(batch["seeds"], num_items),
                          text.titles(batch["pid"].to_numpy()))


def tune_lambda(scorer: HybridScorer, text: TextEmbeddings, val: pd.DataFrame,
                lambdas: list[float], num_items: int, batch_size: int,
                cold_offsets: list[float] = (0.0,), num_recs: int = 500) -> pd.DataFrame:
    """Mean validation metrics of the hybrid for every (λ, β) pair."""
    grid = [(lam, beta) for beta in cold_offsets for lam in lambdas]
    sums = np.zeros((len(grid), len(TUNE_COLUMNS)))
    counts = np.zeros(len(TUNE_COLUMNS))
    warm = scorer.warm
    for batch in tqdm(list(batches_of(val, batch_size)), desc="tune λ, β", unit="batch"):
        q = _queries(scorer, text, batch, num_items)
        parts = scorer.components(q)
        targets = list(batch["targets"])
        relevant = [M.relevance_matrix(targets, num_items),
                    M.relevance_matrix([t[warm[t]] for t in targets], num_items),
                    M.relevance_matrix([t[~warm[t]] for t in targets], num_items)]
        graph_only = M.challenge_ndcg(scorer.recommend(q, "lightgcn", 0.0, num_recs),
                                      relevant[1])
        for i, (lam, beta) in enumerate(grid):
            recs = scorer.recommend(q, "hybrid", lam, num_recs, parts, beta)
            values = [M.challenge_ndcg(recs, r) for r in relevant]
            values += [M.r_precision(recs, relevant[0]), graph_only]
            sums[i] += [np.nansum(v) for v in values]
            if i == 0:
                counts += [np.isfinite(v).sum() for v in values]
    means = sums / np.maximum(counts, 1)
    table = pd.DataFrame(means, columns=TUNE_COLUMNS)
    table.insert(0, "cold_offset", [beta for _, beta in grid])
    table.insert(0, "lambda", [lam for lam, _ in grid])
    table["balanced_ndcg"] = (table["ndcg_warm"] + table["ndcg_cold"]) / 2
    return table


def best_row(table: pd.DataFrame, metric: str, cold_budget: float) -> pd.Series:
    """The chosen (λ, β) row of a tuning table (see the module docstring)."""
    if metric != "cold_budget":
        return table.loc[table[metric].idxmax()]
    floor = (1 - cold_budget) * table["lightgcn_ndcg_warm"].iloc[0]
    within = table[table["ndcg_warm"] >= floor]
    if not len(within):
        return table.loc[table["ndcg_warm"].idxmax()]
    # a title-only subset may have no cold targets: then warm accuracy decides
    key = "ndcg_cold" if (within["ndcg_cold"] > 0).any() else "ndcg_warm"
    return within.loc[within[key].idxmax()]


def choose_params(cfg: RetrieveConfig, scorer: HybridScorer, text: TextEmbeddings,
                  val: pd.DataFrame, num_items: int) -> tuple[Params, pd.DataFrame]:
    """(λ, β) per query type, and the tuning table (empty when the config fixes them)."""
    if cfg.lam >= 0:
        return {t: (cfg.lam, cfg.cold_offset) for t in QUERY_TYPES}, pd.DataFrame()
    groups = ({t: val[query_types(val) == t] for t in QUERY_TYPES} if cfg.per_query_type
              else {"all": val})
    params: Params = {}
    frames = []
    for name, subset in groups.items():
        if not len(subset):
            continue
        table = tune_lambda(scorer, text, subset, cfg.lambdas, num_items, cfg.batch_size,
                            cfg.cold_offsets, cfg.num_recs)
        best = best_row(table, cfg.tune_metric, cfg.cold_budget)
        params[name] = (float(best["lambda"]), float(best["cold_offset"]))
        frames.append(table.assign(query_type=name))
    require(bool(params), "no validation playlists to tune λ on; set lam >= 0 instead")
    fallback = params.get("all", next(iter(params.values())))
    return {t: params.get(t, fallback) for t in QUERY_TYPES}, pd.concat(frames)


def run_retrieve(cfg: RetrieveConfig, dataset: Dataset, split: Split, text: TextEmbeddings,
                 graph: GraphVectors, mapper: ColdMapper,
                 output: str | os.PathLike[str]) -> dict[str, Any]:
    scorer = HybridScorer.from_artifacts(text, graph, mapper, cfg.title_weight)
    num_items = dataset.num_tracks
    params, tuning = choose_params(cfg, scorer, text, split.heldout_for("val"), num_items)
    heldout = split.heldout[split.heldout["split"].isin(cfg.splits)].reset_index(drop=True)
    lists = RecommendationLists()
    for batch in tqdm(list(batches_of(heldout, cfg.batch_size)), desc="retrieve",
                      unit="batch"):
        q = _queries(scorer, text, batch, num_items)
        parts = scorer.components(q) if set(cfg.models) - {"lightgcn"} else None
        lam, beta = np.array([params[t] for t in query_types(batch)]).reshape(-1, 2).T
        for model in cfg.models:
            lists.add(model, batch, scorer.recommend(q, model, lam, cfg.num_recs, parts, beta))

    def write_tuning(folder: Path) -> None:
        if len(tuning):
            tuning.to_csv(folder / "lambda_tuning.csv", index=False)
            for name, table in tuning.groupby("query_type"):
                save_grid(table, "lambda", "cold_offset",
                          ["ndcg_warm", "ndcg_cold", "ndcg"],
                          folder / f"lambda_tuning_{name}.png",
                          f"hybrid on validation ({name}): by λ, one line per β")

    return lists.save(output, write_extra=write_tuning, config=cfg.to_dict(),
                      models=cfg.models, splits=cfg.splits, tune_metric=cfg.tune_metric,
                      hybrid_params={t: {"lambda": lam, "cold_offset": beta}
                                     for t, (lam, beta) in params.items()},
                      lambda_tuning=tuning.to_dict(orient="records"),
                      split_dataset_hash=split.manifest["dataset_hash"])
