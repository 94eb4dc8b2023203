"""Hybrid retrieval over the whole catalogue: warm tracks by z(graph) + λ·z(text), and a
block of cold-track slots just above rank ``cold_slots_end``.

Queries:
* graph: the LightGCN fold-in of the playlist's warm seeds; a playlist without warm seeds
  (title-only, or only cold seeds) gets the cold mapper's title query instead (the
  nearest training titles' playlist vectors, by default).
* text: the normalised sum of the seeds' item text vectors (mean) and the title vector.

Item vectors: graph scores use LightGCN vectors for warm tracks and the cold mapper's
vectors for cold ones; text scores use the item text embeddings. Each score row is
standardised (z-scored) before mixing, so λ means the same for a 1-seed and a 100-seed
playlist; graph scores are standardised separately over warm and over cold tracks, since
the two come from different models (LightGCN, the mapper).

The list (:meth:`HybridScorer.hybrid_scores`, per playlist and :class:`HybridParams`):
1. warm tracks ranked by z(graph) + λ·z(text);
2. cold tracks ranked by z(graph) + λ_cold·z(text) (text carries more of a cold track's
   evidence: its graph vector is only mapped from text);
3. the best ``cold_slots`` cold tracks take ranks ``cold_slots_end − cold_slots`` …
   ``cold_slots_end − 1`` (seeds not counted), every other cold track ranks below every
   warm one.
A cold track thus never displaces the top of the warm list, where most warm targets are
found, but still reaches Recall@100. Placing cold tracks by a score offset instead (the
old β) put confident cold tracks at rank 1 and cost more warm accuracy for the same cold
reach (README "Results"). The result is a score matrix whose descending order is that
list, so serving, the LLaRA candidates and evaluation all rank with ``top_n``.

Three models come out of one pass: ``lightgcn`` (graph only, warm tracks only — what
LightGCN alone can rank), ``text`` (text only) and ``hybrid``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from llarapp.models.graph import GraphVectors
from llarapp.models.recommendations import kept_entries, top_n

if TYPE_CHECKING:  # torch-free at run time: the serving engine scores with this class
    from llarapp.models.cold_mapper import ColdMapper
    from llarapp.models.text_embed import TextEmbeddings

MODELS = ("lightgcn", "text", "hybrid")


def standardise(scores: np.ndarray) -> np.ndarray:
    """Row-wise z-score."""
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.maximum(std, 1e-6)


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _per_row(value: float | np.ndarray) -> np.ndarray:
    """A scalar or one value per playlist, as a column that broadcasts over items."""
    return np.asarray(value, dtype=np.float32).reshape(-1, 1)


@dataclass(frozen=True)
class HybridParams:
    """One query type's mix, as tuned by the retrieve stage (``hybrid_params`` in its
    manifest and in the serving bundle)."""

    lam: float  # text weight for warm tracks
    cold_lambda: float  # text weight for cold tracks
    cold_slots: int  # how many cold tracks get a slot
    cold_slots_end: int  # the slots end just above this rank (0-based, seeds not counted)

    @classmethod
    def from_dict(cls, values: dict) -> HybridParams:
        return cls(float(values["lambda"]), float(values["cold_lambda"]),
                   int(values["cold_slots"]), int(values["cold_slots_end"]))

    def to_dict(self) -> dict[str, float | int]:
        return {"lambda": self.lam, "cold_lambda": self.cold_lambda,
                "cold_slots": self.cold_slots, "cold_slots_end": self.cold_slots_end}


def params_for(hybrid_params: dict[str, dict], kinds: Iterable[str]) -> list[HybridParams]:
    """Per playlist, the params of its query type (``seeded`` or ``title_only``)."""
    by_kind = {kind: HybridParams.from_dict(values) for kind, values in hybrid_params.items()}
    return [by_kind[kind] for kind in kinds]


@dataclass
class Queries:
    graph: np.ndarray  # playlists × graph dim
    text: np.ndarray  # playlists × text dim, unit rows
    seeds: sp.csr_matrix


class HybridScorer:
    """``item_graph``: graph vectors of every track (cold ones mapped from text);
    ``title_to_graph``: title embeddings → graph queries (the cold mapper's title query)."""

    def __init__(self, item_text: np.ndarray, graph: GraphVectors, item_graph: np.ndarray,
                 title_to_graph: Callable[[np.ndarray], np.ndarray], title_weight: float = 1.0):
        self.item_text = item_text
        self.item_graph = item_graph
        self.lightgcn_items = graph.items
        self.warm = graph.warm
        self.graph = graph
        self.title_to_graph = title_to_graph
        self.title_weight = title_weight

    @classmethod
    def from_artifacts(cls, text: TextEmbeddings, graph: GraphVectors, mapper: ColdMapper,
                       title_weight: float = 1.0) -> HybridScorer:
        return cls(text.items, graph, mapper.item_graph, mapper.title_vectors, title_weight)

    def queries(self, seeds: sp.csr_matrix, title_vectors: np.ndarray,
                extra_text: np.ndarray | None = None, extra_counts: np.ndarray | None = None
                ) -> Queries:
        """``extra_text``: per playlist, the summed text vectors of seeds outside the
        catalogue (``extra_counts`` of them); they join the text query as cold seeds do."""
        graph_q = self.graph.fold_in(seeds)
        no_warm_seed = kept_entries(seeds, self.warm[seeds.indices]).getnnz(axis=1) == 0
        if no_warm_seed.any():
            graph_q[no_warm_seed] = self.title_to_graph(title_vectors[no_warm_seed])
        seed_text, counts = np.asarray(seeds @ self.item_text), np.asarray(seeds.sum(axis=1))
        if extra_text is not None:
            seed_text, counts = seed_text + extra_text, counts + np.reshape(extra_counts, (-1, 1))
        seed_text = normalise_rows(seed_text / np.maximum(counts, 1.0))
        text_q = normalise_rows(seed_text + self.title_weight * title_vectors)
        # float32 like the item matrices: a float64 query would upcast the whole catalogue
        return Queries(graph_q.astype(np.float32), text_q.astype(np.float32), seeds)

    def components(self, q: Queries) -> tuple[np.ndarray, np.ndarray]:
        """(standardised graph scores, standardised text scores), playlists × items."""
        graph = q.graph @ self.item_graph.T
        for group in (self.warm, ~self.warm):
            if group.any():
                graph[:, group] = standardise(graph[:, group])
        return graph, standardise(q.text @ self.item_text.T)

    def recommend(self, q: Queries, model: str, params: HybridParams | Sequence[HybridParams],
                  n: int, parts: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Top ``n`` per playlist, seeds excluded; ``params``: one for all rows, or per row."""
        if model == "lightgcn":
            scores = q.graph @ self.lightgcn_items.T
            scores[:, ~self.warm] = -np.inf  # LightGCN alone cannot rank cold tracks
            return top_n(scores, q.seeds, n)
        parts = parts if parts is not None else self.components(q)
        if model == "text":
            return top_n(parts[1], q.seeds, n)
        if isinstance(params, HybridParams):
            params = [params] * q.seeds.shape[0]
        return top_n(self.hybrid_scores(parts, params, q.seeds), q.seeds, n)

    def hybrid_scores(self, parts: tuple[np.ndarray, np.ndarray],
                      params: Sequence[HybridParams], exclude: sp.csr_matrix) -> np.ndarray:
        """Playlists × items scores whose descending order is the hybrid's list (module
        docstring); ``exclude`` (the seeds) does not count when placing the cold slots."""
        graph, text = parts
        cold = ~self.warm
        scores = graph + _per_row([p.lam for p in params]) * text
        if not cold.any():
            return scores
        cold_lambda = _per_row([p.cold_lambda for p in params])
        cold_scores = graph[:, cold] + cold_lambda * text[:, cold]
        # every cold track below every warm one, in its own order
        shift = scores[:, self.warm].min(axis=1, keepdims=True) - cold_scores.max(
            axis=1, keepdims=True) - 1.0 if self.warm.any() else 0.0
        scores[:, cold] = cold_scores + shift
        slots = np.array([p.cold_slots for p in params])
        if slots.any():
            self._fill_slots(scores, slots, np.array([p.cold_slots_end for p in params]),
                             exclude)
        return scores

    def _fill_slots(self, scores: np.ndarray, slots: np.ndarray, ends: np.ndarray,
                    exclude: sp.csr_matrix) -> None:
        """Give each row's best ``slots`` cold tracks scores between its warm tracks at
        ranks ``end − slots − 1`` and ``end − slots``."""
        # every cold track already ranks below every warm one, so the top of the whole
        # row is the top of its warm tracks (a cold one only where warm tracks run out)
        top = top_n(scores, exclude, int(ends.max()))  # -1 pads rows that run out
        ranked = np.where((top >= 0) & self.warm[top],
                          np.take_along_axis(scores, top, axis=1), -np.inf)
        cold = np.flatnonzero(~self.warm)
        top_cold = top_n(scores[:, cold], exclude[:, cold], int(slots.max()))
        for row in np.flatnonzero(slots):
            best_cold = top_cold[row, :slots[row]]
            picked = cold[best_cold[best_cold >= 0]]  # fewer when cold tracks run out
            count, above_rank = len(picked), ends[row] - slots[row]
            below = ranked[row, above_rank] if above_rank < ranked.shape[1] else -np.inf
            above = ranked[row, above_rank - 1] if above_rank > 0 else np.inf
            if not np.isfinite(above):  # the block opens the list
                above = (below if np.isfinite(below) else 0.0) + count + 1.0
            if not np.isfinite(below):  # fewer warm tracks than the block's rank
                below = above - count - 1.0
            scores[row, picked] = np.linspace(above, below, count + 2)[1:-1]
