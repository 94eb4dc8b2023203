"""The lightgcn artifact and LightGCN fold-in, in numpy only (serving needs no torch).

Fold-in gives a playlist that was not in the training graph a vector from its seed
tracks. LightGCN propagates ``x_u^(l) = Σ_{i∈N(u)} x_i^(l-1) / sqrt(|N(u)|·d_i)`` and
combines layers as ``e_u = Σ_l α_l x_u^(l)``. Joining a new playlist node ``u`` to its
seed tracks ``S`` (warm ones, training degree ``d_i > 0``) and giving it no layer-0
embedding of its own (``x_u^(0) = 0``) yields, exactly,

    e_u = |S|^(-1/2) · Σ_{i∈S} f_i,    f_i = d_i^(-1/2) · Σ_{l=1..L} α_l x_i^(l-1)

``f`` (``fold_in_weights.npy``) is precomputed once per model, so fold-in is one sparse-dense
product. For a training playlist, folding in its own training tracks reproduces its
trained embedding minus ``α_0 x_u^(0)``; the tests check this identity. The new node's
effect on the other nodes is ignored, as in every LightGCN fold-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from llarapp.data.dataset import StageArtifact
from llarapp.models.recommendations import kept_entries


def fold_in_weights(layer_items: list[np.ndarray], alpha: np.ndarray, degree: np.ndarray
                    ) -> np.ndarray:
    """``f`` above. ``layer_items[l]``: the items' layer-l embeddings, l = 0..L."""
    num_layers = len(layer_items) - 1
    combined = sum(alpha[layer] * layer_items[layer - 1] for layer in range(1, num_layers + 1))
    scale = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1)), 0.0)
    return (combined * scale[:, None]).astype(np.float32)


def fold_in(seeds: sp.csr_matrix, weights: np.ndarray, degree: np.ndarray) -> np.ndarray:
    """Playlist vectors for the rows of ``seeds`` (playlists × items, binary)."""
    warm = kept_entries(seeds, degree[seeds.indices] > 0)
    counts = np.asarray(warm.sum(axis=1)).ravel()
    scale = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1.0)), 0.0)
    return (np.asarray(warm @ weights) * scale[:, None]).astype(np.float32)


@dataclass
class TitleNeighbours:
    """A graph query for a title-only playlist: the softmax(cos/τ)-weighted mean of the
    LightGCN vectors of the ``k`` training playlists with the most similar titles.

    A non-parametric title mapper: titles often repeat exactly ("Country", an artist's
    name), and an exact match should win, which a regression smooths away."""

    titles: np.ndarray  # training playlists × text dim, unit rows
    vectors: np.ndarray  # training playlists × graph dim
    k: int = 100
    temperature: float = 0.1

    def query(self, title_embeddings: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        out = np.zeros((len(title_embeddings), self.vectors.shape[1]), dtype=np.float32)
        k = min(self.k, len(self.titles))
        for start in range(0, len(title_embeddings), batch_size):
            similarity = title_embeddings[start:start + batch_size] @ self.titles.T
            nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(similarity, nearest, axis=1)
            weights = np.exp((top - top.max(axis=1, keepdims=True)) / self.temperature)
            weights /= weights.sum(axis=1, keepdims=True)
            out[start:start + batch_size] = np.einsum("bk,bkd->bd", weights,
                                                      self.vectors[nearest])
        return out


@dataclass
class GraphVectors:
    """LightGCN's output in numpy: what fold-in, the mappers and retrieval need."""

    FILES: ClassVar[tuple[str, ...]] = ("playlist_pids", "playlists", "items",
                                        "fold_in_weights", "item_degree")
    playlist_pids: np.ndarray  # training playlists, in row order
    playlists: np.ndarray  # their trained vectors
    items: np.ndarray  # final item vectors, track_idx order
    fold_in_weights: np.ndarray  # f above
    item_degree: np.ndarray  # training degree; 0 for cold tracks

    @property
    def warm(self) -> np.ndarray:
        return self.item_degree > 0

    def fold_in(self, seeds: sp.csr_matrix) -> np.ndarray:
        return fold_in(seeds, self.fold_in_weights, self.item_degree)

    def save(self, folder: Path) -> None:
        for name in self.FILES:
            np.save(folder / f"{name}.npy", getattr(self, name))


@dataclass
class GraphEmbeddings(StageArtifact):
    """The lightgcn artifact: its :class:`GraphVectors`, weights, curves."""

    KIND: ClassVar[str] = "lightgcn"

    @cached_property
    def vectors(self) -> GraphVectors:
        return GraphVectors(**{name: np.load(self.folder / f"{name}.npy")
                               for name in GraphVectors.FILES})
