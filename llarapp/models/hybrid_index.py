"""The tuned hybrid score as one inner product per item group, so a faiss index can serve it.

:class:`~llarapp.models.hybrid.HybridScorer` scores a query (graph vector g, text vector t)
against every item (graph vector v, text vector x) as

    z_G(g·v) + λ_G · z_T(t·x)

where z_G standardises the graph scores over the item's group G (warm or cold tracks,
separately), z_T the text scores over the whole catalogue, and λ_G is λ for warm tracks
and λ_cold for cold ones (the cold offset β only moves the cold group as a block).

The mean and variance of a linear function of the items are that function of the items'
mean μ and covariance Σ (population, as ``np.std``): over a set S of vectors u,

    mean(q·u) = q·μ_S        var(q·u) = qᵀ Σ_S q

so z(q·u) = a·(q·u) + b with a = 1 / max(√(qᵀΣ_S q), 1e-6) and b = −a · q·μ_S, the same
floor as :func:`~llarapp.models.hybrid.standardise`. Inside a group, then,

    z_G(g·v) + λ_G z_T(t·x) = [a_G g, λ_G a_T t] · [v, x] + (b_G + λ_G b_T)

an inner product of a per-query vector with a fixed per-item vector [v, x], plus a
per-query constant. One index per group holds the items' [v, x]; the constant puts the
two groups' scores on the scale the scorer uses. The moments are float64, so the identity
holds to float32 rounding of the inner products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STD_FLOOR = 1e-6  # as llarapp.models.hybrid.standardise


@dataclass(frozen=True)
class Moments:
    """Mean vector and population covariance of a set of item vectors."""

    mean: np.ndarray  # (d,) float64
    covariance: np.ndarray  # (d, d) float64

    @classmethod
    def of(cls, vectors: np.ndarray) -> Moments:
        vectors = np.asarray(vectors, np.float64)
        mean = vectors.mean(axis=0)
        centred = vectors - mean
        return cls(mean, centred.T @ centred / max(len(vectors), 1))

    def zscore(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) per query (B,): z-scores of ``queries @ vectors.T`` are a·score + b."""
        queries = np.asarray(queries, np.float64)
        variance = np.einsum("bd,de,be->b", queries, self.covariance, queries)
        scale = 1.0 / np.maximum(np.sqrt(np.maximum(variance, 0.0)), STD_FLOOR)
        return scale, -scale * (queries @ self.mean)


@dataclass(frozen=True)
class GroupForm:
    """One item group (warm or cold): its items' [graph, text] rows and graph moments."""

    items: np.ndarray  # catalogue indices of the group's tracks
    vectors: np.ndarray  # (n, graph dim + text dim) float32: [v, x] per item
    graph: Moments

    def queries(self, graph_q: np.ndarray, text_q: np.ndarray, lam: np.ndarray,
                text: Moments) -> tuple[np.ndarray, np.ndarray]:
        """(query vectors (B, graph dim + text dim) float32, constants (B,)) whose inner
        products with :attr:`vectors`, plus the constant, are the hybrid scores."""
        lam = np.asarray(lam, np.float64).reshape(-1)
        graph_a, graph_b = self.graph.zscore(graph_q)
        text_a, text_b = text.zscore(text_q)
        weights = np.hstack([graph_a[:, None] * graph_q,
                             (lam * text_a)[:, None] * text_q]).astype(np.float32)
        return weights, graph_b + lam * text_b


@dataclass(frozen=True)
class HybridForm:
    """The catalogue's two groups and the text moments over all tracks."""

    warm: GroupForm
    cold: GroupForm
    text: Moments

    @classmethod
    def build(cls, item_graph: np.ndarray, item_text: np.ndarray, warm: np.ndarray
              ) -> HybridForm:
        """``item_graph`` as the scorer's (LightGCN for warm, mapped for cold tracks)."""
        warm = np.asarray(warm, bool)
        joined = np.hstack([item_graph, item_text]).astype(np.float32)

        def group(mask: np.ndarray) -> GroupForm:
            items = np.flatnonzero(mask)
            return GroupForm(items, np.ascontiguousarray(joined[items]),
                             Moments.of(item_graph[items]))

        return cls(group(warm), group(~warm), Moments.of(item_text))
