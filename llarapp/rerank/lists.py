"""Protocol (b): the hybrid's top K per held-out playlist, with features and labels, and
the metrics of a reranked list.

A playlist's question is its seeds (the first tracks) or its title alone; the retriever's
top K are its candidates, and every held-out track among them is a positive. Validation
playlists are split once, by a seeded draw, into a ``fit`` part (rerankers learn from it)
and a ``select`` part (the ranker choice is measured on it), so no ranker is chosen on
playlists it trained on and the test split stays for the final figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from llarapp.eval import metrics as M
from llarapp.llara.examples import Sources
from llarapp.models.hybrid import params_for
from llarapp.models.retrieval import batches_of, seed_matrix, top_n
from llarapp.rerank.features import CatalogueFeatures, candidate_features


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


def retrieved_lists(sources: Sources, tables: CatalogueFeatures, heldout: pd.DataFrame,
                    k: int, batch_size: int = 256, desc: str = "retrieved lists"
                    ) -> RetrievedLists:
    scorer, parts_of = sources.scorer, []
    for batch in tqdm(list(batches_of(heldout, batch_size)), desc=desc, unit="batch"):
        seeds = [np.asarray(s, np.int64) for s in batch["seeds"]]
        q = scorer.queries(seed_matrix(pd.Series(seeds), sources.num_items),
                           sources.text.titles(batch["pid"].to_numpy()))
        graph, text = scorer.components(q)
        kinds = np.where([len(s) > 0 for s in seeds], "seeded", "title_only")
        hybrid = scorer.hybrid_scores((graph, text), params_for(sources.hybrid_params, kinds),
                                      q.seeds)
        top = top_n(hybrid, q.seeds, k)
        rows, items = np.arange(len(top))[:, None], np.maximum(top, 0)
        features = candidate_features(tables, top, hybrid[rows, items], graph[rows, items],
                                      text[rows, items], seeds)
        labels = np.stack([np.isin(top[i], t) & (top[i] >= 0)
                           for i, t in enumerate(batch["targets"])])
        parts_of.append((top, features, labels.astype(np.int8), q.graph))
    if not parts_of:
        return RetrievedLists(heldout, np.zeros((0, k), np.int64), np.zeros((0, k, 0)),
                              np.zeros((0, k), np.int8), np.zeros((0, 0), np.float32))
    return RetrievedLists(heldout.reset_index(drop=True),
                          *(np.concatenate(column) for column in zip(*parts_of, strict=True)))


def select_mask(heldout: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """True for the validation playlists the ranker choice is measured on."""
    draw = np.random.default_rng(seed).random(len(heldout))
    order = np.argsort(heldout["pid"].to_numpy(), kind="stable")
    mask = np.zeros(len(heldout), bool)
    mask[order] = draw < fraction
    return mask


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
