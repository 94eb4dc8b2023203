"""Hybrid retrieval over the whole catalogue: score = z(graph) + λ·z(text) (+ β on cold).

Queries:
* graph: the LightGCN fold-in of the playlist's warm seeds; a playlist without warm seeds
  (title-only, or only cold seeds) gets the cold mapper's title query instead (the
  nearest training titles' playlist vectors, by default).
* text: the normalised sum of the seeds' item text vectors (mean) and the title vector.

Item vectors: graph scores use LightGCN vectors for warm tracks and the cold mapper's
vectors for cold ones; text scores use the item text embeddings. Each score row is
standardised (z-scored) before mixing, so λ means the same for a 1-seed and a 100-seed
playlist. Graph scores are standardised separately over warm and over cold tracks: the
two come from different models (LightGCN, the mapper) whose score scales differ, and the
mapper's regression-to-the-mean would otherwise bury every cold track. A cold offset β
then sets how far cold tracks are promoted. λ and β are chosen on the validation split.
Scoring is a matrix product per batch, then ``argpartition``
(:func:`~llarapp.models.retrieval.top_n`); seeds are excluded.

Three models come out of one pass: ``lightgcn`` (graph only, warm tracks only — what
LightGCN alone can rank), ``text`` (text only) and ``hybrid``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from llarapp.models.graph import GraphVectors
from llarapp.models.retrieval import top_n

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
        no_warm_seed = ~np.asarray(seeds[:, self.warm].sum(axis=1) > 0).ravel()
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

    def recommend(self, q: Queries, model: str, lam: float | np.ndarray, n: int,
                  parts: tuple[np.ndarray, np.ndarray] | None = None,
                  cold_offset: float | np.ndarray = 0.0) -> np.ndarray:
        """Top ``n`` per playlist; ``lam`` and ``cold_offset`` are scalars or per-row arrays."""
        if model == "lightgcn":
            scores = q.graph @ self.lightgcn_items.T
            scores[:, ~self.warm] = -np.inf  # LightGCN alone cannot rank cold tracks
            return top_n(scores, q.seeds, n)
        parts = parts if parts is not None else self.components(q)
        if model == "text":
            return top_n(parts[1], q.seeds, n)
        return top_n(self.hybrid_scores(parts, lam, cold_offset), q.seeds, n)

    def hybrid_scores(self, parts: tuple[np.ndarray, np.ndarray], lam: float | np.ndarray,
                      cold_offset: float | np.ndarray = 0.0) -> np.ndarray:
        """z(graph) + λ·z(text), plus β on cold tracks: playlists × items."""
        graph, text = parts
        scores = graph + _per_row(lam) * text
        scores[:, ~self.warm] += _per_row(cold_offset)
        return scores
