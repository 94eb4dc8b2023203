"""The order in which LightGCN's trainer stores its nodes, for the caches' sake.

Each sparse product ``R̂ x`` gathers, for every playlist row, the rows of its tracks. In the
input's order those rows lie all over the table; the reverse Cuthill–McKee order of the
bipartite graph (``scipy.sparse.csgraph.reverse_cuthill_mckee``, a breadth-first order
from a peripheral node) numbers neighbours close together, so consecutive playlists share
cached track rows and the other way round. The propagation is permutation-equivariant, so
training in that order computes the same model: only which random draw lands on which node
changes (README "Results", "Nodes in a cache-friendly order").

The trainer relabels its edges with :meth:`NodeOrder.to_training` and hands every table
back through :meth:`NodeOrder.to_canonical`, so vectors, saved weights and fold-in weights
keep the caller's playlist and track order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import reverse_cuthill_mckee

NODE_ORDERS = ("rcm", "none")


@dataclass(frozen=True)
class NodeOrder:
    """``playlists[j]`` / ``items[j]``: the caller's row held at training position ``j``."""

    playlists: np.ndarray
    items: np.ndarray

    @classmethod
    def build(cls, method: str, rows: np.ndarray, items: np.ndarray, num_playlists: int,
              num_items: int) -> NodeOrder:
        if method not in NODE_ORDERS:
            raise ValueError(f"node_order must be one of {', '.join(NODE_ORDERS)}, "
                             f"not {method!r}")
        if method == "none":
            return cls(np.arange(num_playlists), np.arange(num_items))
        biadjacency = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, items)),
                                    shape=(num_playlists, num_items))
        graph = sp.bmat([[None, biadjacency], [biadjacency.T, None]], format="csr")
        order = reverse_cuthill_mckee(graph, symmetric_mode=True).astype(np.int64)
        return cls(order[order < num_playlists], order[order >= num_playlists] - num_playlists)

    @property
    def num_playlists(self) -> int:
        return len(self.playlists)

    def to_training(self, rows: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The caller's (playlist row, item) pairs as training positions."""
        return _inverse(self.playlists)[rows], _inverse(self.items)[items]

    def to_canonical(self, table: torch.Tensor) -> torch.Tensor:
        """A (playlists + items) table in training order, back in the caller's order."""
        positions = np.concatenate([_inverse(self.playlists),
                                    self.num_playlists + _inverse(self.items)])
        return table.index_select(0, torch.as_tensor(positions, device=table.device))


def _inverse(permutation: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(permutation)
    inverse[permutation] = np.arange(len(permutation))
    return inverse
