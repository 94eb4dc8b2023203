"""Protocol (b) for every ranker, and the choice of the one the bundle ships.

1. Retrieve the top K for the validation and test playlists, with their features.
2. Split validation into ``fit`` (with its prefix questions) and ``select``
   (:mod:`llarapp.rerank.lists`).
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
from llarapp.rerank.lambdamart import LambdaMart, LambdaMartParams
from llarapp.rerank.lists import (
    RetrievedLists,
    graph_first_share,
    list_metrics,
    prefix_questions,
    retrieved_lists,
    select_mask,
)

ListScorer = Callable[[RetrievedLists, str], np.ndarray]


@dataclass
class CompareSettings:
    """The eval-llara fields that drive protocol (b) (defaults live in LlaraEvalConfig)."""

    k: int
    metric_k: int
    tolerance: float
    lambdamart: LambdaMartParams = field(default_factory=LambdaMartParams)


def compare_rankers(settings: CompareSettings, sources: Sources, llara: ListScorer | None,
                    folder: Path, ablations: dict[str, ListScorer] | None = None
                    ) -> dict[str, Any]:
    """Metrics per (split, ranker), the choice and why; LambdaMART is saved in ``folder``.
    ``ablations`` are reported beside the rankers but are never shipped."""
    tables = sources.catalogue_features
    val_heldout, test_heldout = (sources.split.heldout_for(s) for s in ("val", "test"))
    require(len(val_heldout) >= 2, "protocol (b) needs at least 2 validation playlists to "
            "fit and select a ranker; re-run split with a larger val share")
    select = select_mask(val_heldout)
    require(select.any() and not select.all(), "the validation playlists all fall on one side "
            "of the fit/select split; protocol (b) needs more validation playlists")
    # prefix_questions lists every original question first, then the prefixes in row order,
    # so the fit questions and the select originals are slices of one retrieval
    everything = retrieved_lists(sources, tables, prefix_questions(val_heldout), settings.k,
                                 desc="validation lists")
    in_select = everything.heldout["pid"].isin(val_heldout.loc[select, "pid"]).to_numpy()
    original = np.arange(len(everything)) < len(val_heldout)
    fit = everything.subset(~in_select)
    lists = {"select": everything.subset(in_select & original),
             "test": retrieved_lists(sources, tables, test_heldout, settings.k,
                                     desc="test lists")}
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
        scores |= {name: scorer(lists_, split) for name, scorer in (ablations or {}).items()}
        for ranker, values in scores.items():
            rows.append({"split": split, "ranker": ranker, "playlists": len(lists_)}
                        | list_metrics(lists_, values, sources.num_items, settings.metric_k))
    table = pd.DataFrame(rows)
    ndcg = f"ndcg@{settings.metric_k}"
    on_select = table[(table["split"] == "select") & ~table["ranker"].isin(ablations or {})
                      ].set_index("ranker")[ndcg].to_dict()
    chosen, why = choose_ranker(on_select, settings.tolerance)
    graph_first = {split: graph_first_share(lists_) for split, lists_ in
                   (("fit", fit), ("test", lists["test"]))}
    return {"table": table.to_dict(orient="records"), "ranker": chosen, "why": why,
            "candidates": settings.k, "fit_questions": len(fit),
            "graph_first_share": graph_first}
