"""Protocol (b): the hybrid's top K per held-out playlist, with features and labels, and
the metrics of a reranked list.

A playlist's question is its seeds (the first tracks) or its title alone; the retriever's
top K are its candidates, and every held-out track among them is a positive. Validation
playlists are split once, by a hash of their pid, into a ``fit`` part (the rerankers, LLaRA
included, learn from it) and a ``select`` part (the ranker choice is measured on it), so no
ranker is chosen on playlists it trained on and the test split stays for the final
figures. The split is fixed, not a setting: the llara and eval-llara stages must agree on it.

The fit part is widened with prefix questions: a playlist's seeds plus its first j held-out
tracks, the rest held out. Held-out tracks are outside the graph model's training, so a
prefix question is as unseen as the original one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from llarapp.eval import metrics as M
from llarapp.models.hybrid import params_for
from llarapp.models.recommendations import batches_of, seed_matrix, top_n
from llarapp.rerank.features import FEATURES, CatalogueFeatures, candidate_features

if TYPE_CHECKING:  # llara.examples builds LLaRA's training questions from this module
    from llarapp.data.dataset import Split
    from llarapp.llara.examples import Sources


SELECT_SHARE = 0.5  # of validation playlists
PREFIX_SEEDS = (1, 5, 10, 25)  # j of the prefix questions
MIN_HELD_OUT = 5  # a prefix question keeps at least this many held-out tracks


@dataclass
class RetrievedLists:
    heldout: pd.DataFrame
    candidates: np.ndarray  # (B, K) retrieval order, -1 padded
    features: np.ndarray  # (B, K, F)
    labels: np.ndarray  # (B, K) 1 where the candidate is held out
    graph_queries: np.ndarray  # (B, G)

    def subset(self, mask: np.ndarray) -> RetrievedLists:
        return RetrievedLists(self.heldout[mask].reset_index(drop=True), self.candidates[mask],
                              self.features[mask], self.labels[mask], self.graph_queries[mask])

    def __len__(self) -> int:
        return len(self.candidates)


def scored_batches(sources: Sources, heldout: pd.DataFrame, batch_size: int = 256,
                   desc: str = "retrieval") -> Iterator[ScoredBatch]:
    """The tuned hybrid's scores of the whole catalogue, ``batch_size`` playlists at a time."""
    scorer = sources.scorer
    for start, batch in tqdm(list(enumerate(batches_of(heldout, batch_size))), desc=desc,
                             unit="batch"):
        seeds = [np.asarray(s, np.int64) for s in batch["seeds"]]
        q = scorer.queries(seed_matrix(pd.Series(seeds), sources.num_items),
                           sources.text.titles(batch["pid"].to_numpy()))
        graph, text = scorer.components(q)
        kinds = np.where([len(s) > 0 for s in seeds], "seeded", "title_only")
        hybrid = scorer.hybrid_scores((graph, text), params_for(sources.hybrid_params, kinds),
                                      q.seeds)
        yield ScoredBatch(start * batch_size, batch, seeds, q.graph, q.seeds, graph, text,
                          hybrid)


@dataclass
class ScoredBatch:
    """One batch of questions with the hybrid's catalogue-wide scores."""

    offset: int  # of the batch's first playlist in ``heldout``
    heldout: pd.DataFrame
    seeds: list[np.ndarray]
    graph_queries: np.ndarray
    seed_matrix: sp.csr_matrix
    graph: np.ndarray  # playlists × catalogue, standardised
    text: np.ndarray
    hybrid: np.ndarray

    def features(self, tables: CatalogueFeatures, candidates: np.ndarray) -> np.ndarray:
        """:func:`candidate_features` of these (B, K) candidates, -1 padded."""
        rows, items = np.arange(len(candidates))[:, None], np.maximum(candidates, 0)
        return candidate_features(tables, candidates, self.hybrid[rows, items],
                                  self.graph[rows, items], self.text[rows, items], self.seeds)


def retrieved_lists(sources: Sources, tables: CatalogueFeatures, heldout: pd.DataFrame,
                    k: int, batch_size: int = 256, desc: str = "retrieved lists"
                    ) -> RetrievedLists:
    parts_of = []
    for scored in scored_batches(sources, heldout, batch_size, desc):
        top = top_n(scored.hybrid, scored.seed_matrix, k)
        labels = np.stack([np.isin(top[i], t) & (top[i] >= 0)
                           for i, t in enumerate(scored.heldout["targets"])])
        parts_of.append((top, scored.features(tables, top), labels.astype(np.int8),
                         scored.graph_queries))
    if not parts_of:
        return RetrievedLists(heldout, np.zeros((0, k), np.int64),
                              np.zeros((0, k, len(FEATURES)), np.float32),
                              np.zeros((0, k), np.int8), np.zeros((0, 0), np.float32))
    return RetrievedLists(heldout.reset_index(drop=True),
                          *(np.concatenate(column) for column in zip(*parts_of, strict=True)))


def select_mask(heldout: pd.DataFrame) -> np.ndarray:
    """True for the validation playlists the ranker choice is measured on (a multiplicative
    hash of the pid, so the same playlists whatever else the split holds)."""
    hashed = (heldout["pid"].to_numpy().astype(np.uint64) * np.uint64(2654435761)) % (1 << 32)
    return hashed < SELECT_SHARE * (1 << 32)


def prefix_questions(heldout: pd.DataFrame, extra: tuple[int, ...] = PREFIX_SEEDS
                     ) -> pd.DataFrame:
    """``heldout`` plus, per playlist and j in ``extra``, the question with its first j
    held-out tracks moved to the seeds (when at least MIN_HELD_OUT stay held out)."""
    rows = heldout.to_dict("records")
    out = list(rows)
    for row in rows:
        targets = np.asarray(row["targets"], np.int64)
        for j in extra:
            if len(targets) >= j + MIN_HELD_OUT:
                seeds = np.r_[np.asarray(row["seeds"], np.int64), targets[:j]]
                out.append(row | {"seeds": seeds, "targets": targets[j:],
                                  "num_seeds": len(seeds)})
    return pd.DataFrame(out, columns=heldout.columns)


def fit_questions(split: Split) -> pd.DataFrame:
    """The validation ``fit`` playlists with their prefix questions."""
    val = split.heldout_for("val")
    return prefix_questions(val[~select_mask(val)].reset_index(drop=True))


def list_metrics(lists: RetrievedLists, scores: np.ndarray | None, num_items: int, k: int
                 ) -> dict[str, float]:
    """NDCG@k, Recall@k and R-precision of the candidates ordered by ``scores`` (None:
    retrieval order), against all held-out tracks; padding ranks last."""
    recs = lists.candidates
    if scores is not None:
        keyed = np.where(recs >= 0, scores, -np.inf)
        recs = np.take_along_axis(recs, np.argsort(-keyed, axis=1, kind="stable"), axis=1)
    relevant = M.relevance_matrix(list(lists.heldout["targets"]), num_items)
    return {f"ndcg@{k}": float(np.nanmean(M.ndcg_at_k(recs, relevant, k))),
            f"recall@{k}": float(np.nanmean(M.recall_at_k(recs, relevant, k))),
            "r_precision": float(np.nanmean(M.r_precision(recs, relevant)))}


def graph_first_share(lists: RetrievedLists) -> float:
    """Among questions with a positive candidate: the share where the best graph score
    is a positive (how far the graph model alone can be trusted on such questions)."""
    graph = lists.features[..., FEATURES.index("graph")]
    has = lists.labels.any(axis=1)
    if not has.any():
        return float("nan")
    best = np.argmax(np.where(lists.candidates >= 0, graph, -np.inf), axis=1)
    return float(lists.labels[np.arange(len(best)), best][has].mean())
