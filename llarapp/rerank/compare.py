"""Protocol (b) for every ranker, and the choice of the one the bundle ships.

1. Retrieve the top K for the validation and test playlists, with their features.
2. Split validation into ``fit`` and ``select`` (:func:`select_mask`). Widen the fit part
   with prefix questions: a playlist's seeds plus its first j held-out tracks, the rest
   held out (held-out tracks are outside the graph model's training, so a prefix is as
   unseen as the original question).
3. LambdaMART learns on the fit part and is measured on ``select``; the shipped model
   learns on all validation questions, with the same settings, and gives the test figures.
4. LLaRA (already trained) is measured on the same lists.
5. :func:`choose_ranker` picks by NDCG@10 on ``select``; the test split is only reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llarapp.config import require
from llarapp.llara.examples import Sources
from llarapp.rerank.choose import choose_ranker
from llarapp.rerank.features import FEATURES, CatalogueFeatures
from llarapp.rerank.lambdamart import LambdaMart, LambdaMartParams
from llarapp.rerank.lists import RetrievedLists, list_metrics, retrieved_lists, select_mask

ListScorer = Callable[[RetrievedLists, str], np.ndarray]


@dataclass
class CompareSettings:
    """The eval-llara fields that drive protocol (b) (defaults live in LlaraEvalConfig)."""

    k: int
    metric_k: int
    select_fraction: float
    prefix_seeds: list[int]
    tolerance: float
    lambdamart: LambdaMartParams = field(default_factory=LambdaMartParams)
    seed: int = 0


def prefix_questions(heldout: pd.DataFrame, extra: list[int], min_left: int = 5
                     ) -> pd.DataFrame:
    """``heldout`` plus, per playlist and j in ``extra``, the question with its first j
    held-out tracks moved to the seeds (when at least ``min_left`` stay held out)."""
    rows = heldout.to_dict("records")
    out = list(rows)
    for row in rows:
        targets = np.asarray(row["targets"], np.int64)
        for j in extra:
            if len(targets) >= j + min_left:
                seeds = np.r_[np.asarray(row["seeds"], np.int64), targets[:j]]
                out.append(row | {"seeds": seeds, "targets": targets[j:],
                                  "num_seeds": len(seeds)})
    return pd.DataFrame(out, columns=heldout.columns)


def compare_rankers(settings: CompareSettings, sources: Sources, llara: ListScorer | None,
                    folder: Path) -> dict[str, Any]:
    """Metrics per (split, ranker), the choice and why; LambdaMART is saved in ``folder``."""
    tables = CatalogueFeatures.from_split(sources.dataset.tracks, sources.split.train)
    val_heldout, test_heldout = (sources.split.heldout_for(s) for s in ("val", "test"))
    require(len(val_heldout) >= 2, "protocol (b) needs at least 2 validation playlists to "
            "fit and select a ranker; re-run split with a larger val share")
    select = select_mask(val_heldout, settings.select_fraction, settings.seed)
    lists = {"select": retrieved_lists(sources, tables, val_heldout[select], settings.k,
                                       desc="select lists"),
             "test": retrieved_lists(sources, tables, test_heldout, settings.k,
                                     desc="test lists")}
    fit = retrieved_lists(sources, tables, prefix_questions(val_heldout[~select],
                                                            settings.prefix_seeds),
                          settings.k, desc="fit lists")
    everything = retrieved_lists(sources, tables, prefix_questions(val_heldout,
                                                                   settings.prefix_seeds),
                                 settings.k, desc="all validation lists")
    models = {"select": LambdaMart.fit(fit.features, fit.labels, settings.lambdamart),
              "test": LambdaMart.fit(everything.features, everything.labels,
                                     settings.lambdamart)}
    models["test"].save(folder)
    rows = []
    for split, lists_ in lists.items():
        scores = {"retrieval": None,
                  "lambdamart": models[split].score(lists_.features)}
        if llara is not None:
            scores["llara"] = llara(lists_, split)
        for ranker, values in scores.items():
            rows.append({"split": split, "ranker": ranker, "playlists": len(lists_)}
                        | list_metrics(lists_, values, sources.num_items, settings.metric_k))
    table = pd.DataFrame(rows)
    ndcg = f"ndcg@{settings.metric_k}"
    on_select = table[table["split"] == "select"].set_index("ranker")[ndcg].to_dict()
    chosen, why = choose_ranker(on_select, settings.tolerance)
    graph_first = {split: graph_first_share(lists_) for split, lists_ in
                   (("fit", fit), ("test", lists["test"]))}
    return {"table": table.to_dict(orient="records"), "ranker": chosen, "why": why,
            "candidates": settings.k, "fit_questions": len(fit),
            "graph_first_share": graph_first}


def graph_first_share(lists: RetrievedLists) -> float:
    """Among questions with a positive candidate: the share where the best graph score
    is a positive (how far the graph model alone can be trusted on such questions)."""
    graph = lists.features[..., FEATURES.index("graph")]
    has = lists.labels.any(axis=1)
    if not has.any():
        return float("nan")
    best = np.argmax(np.where(lists.candidates >= 0, graph, -np.inf), axis=1)
    return float(lists.labels[np.arange(len(best)), best][has].mean())
