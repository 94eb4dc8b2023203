"""LightGCN's propagation over a pre-normalised, symmetric playlist–track adjacency.

The adjacency ``Â = D^-1/2 A D^-1/2`` of the bipartite graph is built once with PyG's
``gcn_norm`` and kept as a sparse CSR tensor, so each layer is one ``torch.sparse.mm`` and
``LGConv`` never re-normalises. ``Â`` is symmetric, so every backward pass is the same
product (``Âᵀ = Â``) instead of autograd's transpose of the CSR tensor, which costs several
times the forward pass on the CPU. Training propagates all layers as one autograd node
(:func:`propagate`); :func:`layer_embeddings` gives each layer for snapshots and fold-in.
Both multiply by ``Â`` through its two off-diagonal blocks (:class:`BipartiteAdjacency`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch_geometric.nn.conv import LGConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.models import LightGCN
from torch_geometric.utils import to_torch_csr_tensor

from llarapp.models.torch_utils import sparse_csr


def normalized_adjacency(playlist_rows: np.ndarray, items: np.ndarray, num_playlists: int,
                         num_items: int) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph as a (nodes × nodes) sparse CSR tensor."""
    rows = torch.as_tensor(playlist_rows, dtype=torch.long)
    cols = torch.as_tensor(items, dtype=torch.long) + num_playlists
    edge_index = torch.stack([torch.cat([rows, cols]), torch.cat([cols, rows])])
    num_nodes = num_playlists + num_items
    edge_index, weight = gcn_norm(edge_index, None, num_nodes, add_self_loops=False)
    with warnings.catch_warnings():  # torch flags sparse CSR as beta; it is what we want
        warnings.simplefilter("ignore", UserWarning)
        return to_torch_csr_tensor(edge_index, weight, size=(num_nodes, num_nodes))


@dataclass(frozen=True)
class BipartiteAdjacency:
    """``Â = [[0, R̂], [R̂ᵀ, 0]]`` kept as its blocks ``R̂`` (playlists × tracks) and ``R̂ᵀ``.

    ``Â x`` is ``[R̂ x_tracks; R̂ᵀ x_playlists]``: the same sums in the same order as the
    (nodes × nodes) product, but each block gathers from one side's rows only, and with
    32-bit indices MKL needs no per-call index conversion. One product on Gowalla on 2
    cores: 13-20 ms against 17-24 ms for the whole CSR (the VM is noisy; interleaved runs).
    """

    playlists_from_tracks: torch.Tensor  # R̂, sparse CSR
    tracks_from_playlists: torch.Tensor  # R̂ᵀ, sparse CSR
    # scratch outputs of step(…, slot=s): (dtype, width, slot) -> (playlist rows, track rows)
    _scratch: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_adjacency(cls, adjacency: torch.Tensor, num_playlists: int) -> BipartiteAdjacency:
        """Split :func:`normalized_adjacency`'s CSR: playlist rows only hold track columns."""
        crow, col, values = (adjacency.crow_indices(), adjacency.col_indices(),
                             adjacency.values())
        num_nodes, cut = adjacency.shape[0], int(crow[num_playlists])
        return cls(sparse_csr(crow[:num_playlists + 1], col[:cut] - num_playlists, values[:cut],
                              (num_playlists, num_nodes - num_playlists)),
                   sparse_csr(crow[num_playlists:] - cut, col[cut:], values[cut:],
                              (num_nodes - num_playlists, num_playlists)))

    @property
    def num_playlists(self) -> int:
        return self.playlists_from_tracks.shape[0]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for block in self.blocks
                   for t in (block.crow_indices(), block.col_indices(), block.values()))

    @property
    def blocks(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.playlists_from_tracks, self.tracks_from_playlists

    def to(self, device: torch.device | str) -> BipartiteAdjacency:
        return BipartiteAdjacency(*(block.to(device) for block in self.blocks))

    def step(self, playlists: torch.Tensor, tracks: torch.Tensor, slot: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One product with ``Â`` on x given as its (playlist rows, track rows).

        With ``slot`` (0 or 1) the result is written into scratch tensors this adjacency
        keeps, valid until the next step into the same slot: a propagation alternates the
        two. ``addmm`` with ``beta=0`` into a kept output skips ``sparse.mm``'s zero-filled,
        freshly page-faulted result and the copy after it (a Gowalla product 8-10 → 5.5-6 ms).
        """
        if slot is None:
            return (torch.sparse.mm(self.playlists_from_tracks, tracks),
                    torch.sparse.mm(self.tracks_from_playlists, playlists))
        key = (tracks.dtype, tracks.shape[1], slot)
        if key not in self._scratch:
            self._scratch[key] = tuple(
                torch.empty(block.shape[0], tracks.shape[1], dtype=tracks.dtype,
                            device=tracks.device) for block in self.blocks)
        out_playlists, out_tracks = self._scratch[key]
        return (torch.addmm(out_playlists, self.playlists_from_tracks, tracks, beta=0,
                            out=out_playlists),
                torch.addmm(out_tracks, self.tracks_from_playlists, playlists, beta=0,
                            out=out_tracks))

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        """``Â @ x`` for x of (playlists + tracks) rows."""
        split = self.num_playlists
        return torch.cat(self.step(x[:split], x[split:]))


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ X`` for a symmetric sparse ``A``: the gradient ``Aᵀ @ G`` is ``A @ G``."""

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, torch.sparse.mm(ctx.adjacency, grad)


class SymmetricLGConv(LGConv):
    """``LGConv`` on a pre-normalised symmetric sparse adjacency."""

    def __init__(self) -> None:
        super().__init__(normalize=False)

    def message_and_aggregate(self, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _SymmetricSpMM.apply(adj_t, x)


def build_model(num_nodes: int, dim: int, layers: int, symmetric: bool = True) -> LightGCN:
    """PyG LightGCN for a pre-normalised adjacency; ``symmetric`` swaps in the cheap backward."""
    model = LightGCN(num_nodes, dim, layers, normalize=False)
    if symmetric:
        model.convs = torch.nn.ModuleList(SymmetricLGConv() for _ in range(layers))
    return model


class _Propagation(torch.autograd.Function):
    """``Σ_k α_k Âᵏ x`` as one autograd node. ``Â`` is symmetric, so the gradient
    ``Σ_k α_k Âᵏ g`` is the same propagation: no per-layer graph, nothing stored, and fewer
    full-graph temporaries than PyG's ``get_embedding`` under autograd (a Gowalla step with
    4 negatives: 0.19 -> 0.16 s)."""

    @staticmethod
    def forward(ctx, adjacency: BipartiteAdjacency, x: torch.Tensor, alpha: tuple[float, ...]
                ) -> torch.Tensor:
        ctx.adjacency, ctx.alpha = adjacency, alpha
        return _propagate(adjacency, x, alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        return None, _propagate(ctx.adjacency, grad, ctx.alpha), None


LayerHook = Callable[[int, torch.Tensor, torch.Tensor], None]


def _propagate(adjacency: BipartiteAdjacency, x: torch.Tensor, alpha: tuple[float, ...],
               after_layer: LayerHook | None = None) -> torch.Tensor:
    """``Σ_k α_k Âᵏ x``; ``after_layer(k, playlists, tracks)`` may change layer k in place
    before it is summed (the contrastive term's noise)."""
    split = adjacency.num_playlists
    out = x * alpha[0]
    playlists, tracks = x[:split], x[split:]
    for k, weight in enumerate(alpha[1:], start=1):  # each layer stays in its two halves
        playlists, tracks = adjacency.step(playlists, tracks, slot=k % 2)
        if after_layer is not None:
            after_layer(k, playlists, tracks)
        out[:split].add_(playlists, alpha=weight)
        out[split:].add_(tracks, alpha=weight)
    return out


def propagate(model: LightGCN, adjacency: BipartiteAdjacency) -> torch.Tensor:
    """The same final embeddings as PyG's ``model.get_embedding(adjacency)``."""
    return _Propagation.apply(adjacency, model.embedding.weight, tuple(model.alpha.tolist()))


def layer_embeddings(model: LightGCN, adjacency: BipartiteAdjacency) -> list[torch.Tensor]:
    """x^(0) … x^(L) for every node."""
    layers = [model.embedding.weight]
    for _ in model.convs:
        layers.append(adjacency.mm(layers[-1]))
    return layers
