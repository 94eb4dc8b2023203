"""The retrieve stage: LightGCN, text-only and hybrid recommendations, the mix tuned on val.

See :mod:`llarapp.models.hybrid` for the list. Every (λ, λ_cold, cold slots) in the grid
ranks the validation playlists; the combination with the best ``tune_metric`` is used for
every split. Seeded and title-only playlists get their own (``per_query_type``): a title
alone is a much weaker text query than a handful of seed tracks, so the best mix differs.
The grid is cheap: a warm list per λ and a cold list per λ_cold, then every slot count is
a merge of the two.

Every cold track the hybrid ranks takes a slot from a warm one, so reaching cold targets
costs accuracy on warm ones. ``tune_metric`` says how that trade is made:

* ``cold_budget`` (default): the best cold-target NDCG among the combinations whose
  warm-target NDCG is at most ``cold_budget`` (a share, 0.02 = 2%) below the reference,
  and whose warm-target R-precision is at most ``cold_budget_r_precision`` (0.075) below
  it; ties go to the better warm NDCG; if none is within both, the best warm-target NDCG.
  The reference, per metric, is the better of LightGCN alone and the same λ's list
  without cold slots, on the same validation playlists: the slots may cost no more than
  the budget of what the hybrid would rank without them, and the hybrid never falls more
  than the budget below LightGCN. Against LightGCN alone, a title-only group (where text
  lifts warm accuracy 10–20% above LightGCN's) spent the whole lift on 50 slots, 16% of
  its warm R-precision. R-precision needs its own guard: a cold slot inside a playlist's
  top-R costs R-precision directly, while NDCG discounts it. On mpd-popular validation
  the NDCG budget alone chose 50 slots, which cost 15% of warm R-precision there (14% on
  test); each 10 slots past 30 cost about 4% more R-precision for less and less cold
  NDCG, and 7.5% keeps 30 (README "Results").
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
from llarapp.models.hybrid import MODELS, HybridParams, HybridScorer, Queries
from llarapp.models.recommendations import (
    RecommendationLists,
    RecommenderConfig,
    batches_of,
    seed_matrix,
    top_n,
)
from llarapp.models.text_embed import TextEmbeddings


@dataclass
class RetrieveConfig(RecommenderConfig):
    MODELS: ClassVar[tuple[str, ...]] = MODELS
    lambdas: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    cold_lambdas: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0])
    cold_slot_counts: list[int] = field(default_factory=lambda: [0, 10, 20, 30, 40, 50])
    cold_slots_end: int = 100  # the cold slots end just above this rank (Recall@100)
    lam: float = -1.0  # >= 0: use this λ (and cold_lambda, cold_slots) and skip tuning
    cold_lambda: float = 2.0
    cold_slots: int = 20
    tune_metric: str = "cold_budget"
    cold_budget: float = 0.02  # warm-target NDCG the cold slots may cost (module docstring)
    cold_budget_r_precision: float = 0.075  # and warm-target R-precision
    per_query_type: bool = True
    title_weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        require(bool(self.lambdas) and min(self.lambdas) >= 0, "lambdas must be >= 0")
        require(bool(self.cold_lambdas) and min(self.cold_lambdas) >= 0,
                "cold_lambdas must be >= 0")
        require(bool(self.cold_slot_counts) and min(self.cold_slot_counts) >= 0
                and max(self.cold_slot_counts + [self.cold_slots]) <= self.cold_slots_end,
                "cold_slot_counts and cold_slots must be between 0 and cold_slots_end")
        require(0 < self.cold_slots_end <= self.num_recs,
                "cold_slots_end must be between 1 and num_recs")
        require(self.tune_metric in TUNE_METRICS,
                f"tune_metric must be one of {', '.join(TUNE_METRICS)}")
        require(self.title_weight >= 0, "title_weight must be >= 0")
        for name in ("cold_budget", "cold_budget_r_precision"):
            require(0 <= getattr(self, name) < 1, f"{name} must be in [0, 1), e.g. 0.02 for 2%")


TUNE_COLUMNS = ["ndcg", "ndcg_warm", "ndcg_cold", "r_precision", "r_precision_warm",
                "lightgcn_ndcg_warm", "lightgcn_r_precision_warm",
                "no_slots_ndcg_warm", "no_slots_r_precision_warm"]
GRID_COLUMNS = ["lambda", "cold_lambda", "cold_slots"]
TUNE_METRICS = ("cold_budget", "balanced_ndcg", "ndcg")
QUERY_TYPES = ("seeded", "title_only")
Params = dict[str, HybridParams]  # query type -> its mix


def query_types(frame: pd.DataFrame) -> np.ndarray:
    return np.where(frame["num_seeds"].to_numpy() > 0, "seeded", "title_only")


def _queries(scorer: HybridScorer, text: TextEmbeddings, batch: pd.DataFrame,
             num_items: int) -> Queries:
    return scorer.queries(seed_matrix(batch["seeds"], num_items),
                          text.titles(batch["pid"].to_numpy()))


def merge_slots(warm_list: np.ndarray, cold_list: np.ndarray, slots: int, end: int,
                n: int) -> np.ndarray:
    """The hybrid's list from a warm list and a cold list: ``slots`` cold tracks at ranks
    ``end − slots`` … ``end − 1`` (what :meth:`HybridScorer.hybrid_scores` ranks)."""
    above = end - slots
    return np.concatenate([warm_list[:, :above], cold_list[:, :slots],
                           warm_list[:, above:n - slots]], axis=1)


def tune_lambda(scorer: HybridScorer, text: TextEmbeddings, val: pd.DataFrame,
                lambdas: list[float], num_items: int, batch_size: int,
                cold_lambdas: list[float] = (2.0,), cold_slot_counts: list[int] = (0,),
                cold_slots_end: int = 100, num_recs: int = 500) -> pd.DataFrame:
    """Mean validation metrics of the hybrid for every (λ, λ_cold, cold slots)."""
    grid = [(lam, cold_lam, slots) for lam in lambdas for cold_lam in cold_lambdas
            for slots in cold_slot_counts]
    sums = np.zeros((len(grid), len(TUNE_COLUMNS)))
    counts = np.zeros(len(TUNE_COLUMNS))
    warm = scorer.warm
    most_slots = max(cold_slot_counts)
    for batch in tqdm(list(batches_of(val, batch_size)), desc="tune λ, cold slots",
                      unit="batch"):
        q = _queries(scorer, text, batch, num_items)
        graph, text_scores = scorer.components(q)
        targets = list(batch["targets"])
        relevant = [M.relevance_matrix(targets, num_items),
                    M.relevance_matrix([t[warm[t]] for t in targets], num_items),
                    M.relevance_matrix([t[~warm[t]] for t in targets], num_items)]
        lightgcn_recs = scorer.recommend(q, "lightgcn", None, num_recs)
        lightgcn_warm = warm_accuracy(lightgcn_recs, relevant[1])
        warm_lists = {lam: top_n(np.where(warm, graph + lam * text_scores, -np.inf),
                                 q.seeds, num_recs) for lam in lambdas}
        no_slots_warm = {lam: warm_accuracy(recs, relevant[1])
                         for lam, recs in warm_lists.items()}
        cold_lists = {lam: top_n(np.where(warm, -np.inf, graph + lam * text_scores),
                                 q.seeds, most_slots) for lam in cold_lambdas}
        for i, (lam, cold_lam, slots) in enumerate(grid):
            recs = merge_slots(warm_lists[lam], cold_lists[cold_lam], slots, cold_slots_end,
                               num_recs)
            values = [M.challenge_ndcg(recs, r) for r in relevant]
            values += [M.r_precision(recs, relevant[0]), M.r_precision(recs, relevant[1]),
                       *lightgcn_warm, *no_slots_warm[lam]]
            sums[i] += [np.nansum(v) for v in values]
            if i == 0:
                counts += [np.isfinite(v).sum() for v in values]
    means = sums / np.maximum(counts, 1)
    table = pd.DataFrame(means, columns=TUNE_COLUMNS)
    for position, column in enumerate(GRID_COLUMNS):
        table.insert(position, column, [values[position] for values in grid])
    table["balanced_ndcg"] = (table["ndcg_warm"] + table["ndcg_cold"]) / 2
    return table


def warm_accuracy(recs: np.ndarray, warm_relevant) -> list[np.ndarray]:
    """Per-playlist warm-target NDCG and R-precision, the two metrics the budget guards."""
    return [M.challenge_ndcg(recs, warm_relevant), M.r_precision(recs, warm_relevant)]


def best_row(table: pd.DataFrame, metric: str, cold_budget: float,
             cold_budget_r_precision: float) -> pd.Series:
    """The chosen row of a tuning table (see the module docstring)."""
    if metric != "cold_budget":
        return table.loc[table[metric].idxmax()]

    def reference(name: str) -> pd.Series:
        return table[[f"lightgcn_{name}", f"no_slots_{name}"]].max(axis=1)

    within = table[
        (table["ndcg_warm"] >= (1 - cold_budget) * reference("ndcg_warm"))
        & (table["r_precision_warm"]
           >= (1 - cold_budget_r_precision) * reference("r_precision_warm"))]
    if not len(within):
        return table.loc[table["ndcg_warm"].idxmax()]
    # Cold NDCG depends on the slots and λ_cold only, so it ties across λ: the better warm
    # NDCG breaks the tie (and decides alone when a subset has no cold targets).
    return within.sort_values(["ndcg_cold", "ndcg_warm"], ascending=False,
                              kind="stable").iloc[0]


def choose_params(cfg: RetrieveConfig, scorer: HybridScorer, text: TextEmbeddings,
                  val: pd.DataFrame, num_items: int) -> tuple[Params, pd.DataFrame]:
    """The mix per query type, and the tuning table (empty when the config fixes it)."""
    if cfg.lam >= 0:
        fixed = HybridParams(cfg.lam, cfg.cold_lambda, cfg.cold_slots, cfg.cold_slots_end)
        return {t: fixed for t in QUERY_TYPES}, pd.DataFrame()
    groups = ({t: val[query_types(val) == t] for t in QUERY_TYPES} if cfg.per_query_type
              else {"all": val})
    params: Params = {}
    frames = []
    for name, subset in groups.items():
        if not len(subset):
            continue
        table = tune_lambda(scorer, text, subset, cfg.lambdas, num_items, cfg.batch_size,
                            cfg.cold_lambdas, cfg.cold_slot_counts, cfg.cold_slots_end,
                            cfg.num_recs)
        best = best_row(table, cfg.tune_metric, cfg.cold_budget, cfg.cold_budget_r_precision)
        params[name] = HybridParams(float(best["lambda"]), float(best["cold_lambda"]),
                                    int(best["cold_slots"]), cfg.cold_slots_end)
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
        rows = [params[t] for t in query_types(batch)]
        for model in cfg.models:
            lists.add(model, batch, scorer.recommend(q, model, rows, cfg.num_recs, parts))

    def write_tuning(folder: Path) -> None:
        if len(tuning):
            tuning.to_csv(folder / "lambda_tuning.csv", index=False)
            for name, table in tuning.groupby("query_type"):
                best_cold = table.loc[table["ndcg_cold"].idxmax(), "cold_lambda"]
                save_grid(table[table["cold_lambda"] == best_cold], "lambda", "cold_slots",
                          ["ndcg_warm", "ndcg_cold", "ndcg"],
                          folder / f"lambda_tuning_{name}.png",
                          f"hybrid on validation ({name}, λ_cold {best_cold}): by λ, "
                          "one line per number of cold slots")

    return lists.save(output, write_extra=write_tuning, config=cfg.to_dict(),
                      models=cfg.models, splits=cfg.splits, tune_metric=cfg.tune_metric,
                      hybrid_params={t: p.to_dict() for t, p in params.items()},
                      lambda_tuning=tuning.to_dict(orient="records"),
                      split_dataset_hash=split.manifest["dataset_hash"])
