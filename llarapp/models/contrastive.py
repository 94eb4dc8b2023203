"""A cross-layer contrastive term for LightGCN's training (XSimGCL, Yu et al. 2022).

Training only; what is served is the plain propagation. Each step propagates the graph once
with noise added after every layer, ``x^(k) = Â x^(k-1) + ε · sign(x^(k-1)') · u/‖u‖``
(``u`` uniform, one direction per row, the sign that of the propagated row). The batch's
playlists and positive tracks then see two views of themselves: the final (noisy)
embedding and the noisy layer ``contrast_layer``. InfoNCE at temperature τ pulls a row's two
views together and pushes it from the other sampled rows' views, which spreads the
embeddings more uniformly and is reported to make LightGCN converge in far fewer epochs.

The noise has no gradient (``sign``'s derivative is zero), so the propagation stays linear
in ``x^(0)``: one autograd node whose backward pass propagates the final embeddings'
gradient plus ``Â^c`` times the contrasted layer's, in Horner form so that it costs the
forward pass's products and no more (:mod:`llarapp.models.propagation` for why ``Âᵀ = Â``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llarapp.models.propagation import BipartiteAdjacency, _propagate


def _noisy_layers(adjacency: BipartiteAdjacency, x: torch.Tensor, alpha: tuple[float, ...],
                  noise: float, layer: int, generator: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    contrasted = []

    def add_noise(k: int, playlists: torch.Tensor, tracks: torch.Tensor) -> None:
        for half in (playlists, tracks):
            direction = torch.rand(half.shape, generator=generator, dtype=half.dtype,
                                   device=half.device)
            scale = torch.linalg.vector_norm(direction, dim=1, keepdim=True).div_(noise)
            half.add_(direction.div_(scale).mul_(torch.sign(half)))
        if k == layer:
            contrasted.append(torch.cat([playlists, tracks]))

    return _propagate(adjacency, x, alpha, add_noise), contrasted[0]


def _horner(adjacency: BipartiteAdjacency, grad: torch.Tensor, alpha: tuple[float, ...],
            grad_layer: torch.Tensor, layer: int) -> torch.Tensor:
    """``Σ_k α_k Âᵏ g + Â^c g_c`` as ``α_0 g + Â(α_1 g + … + Â(α_L g))`` with ``g_c`` added at
    level c: as many products as the forward pass."""
    split, levels = adjacency.num_playlists, len(alpha) - 1
    total = grad * alpha[levels]
    if layer == levels:
        total.add_(grad_layer)
    playlists, tracks = total[:split], total[split:]
    for k in range(levels - 1, -1, -1):
        playlists, tracks = adjacency.step(playlists, tracks, slot=k % 2)
        playlists.add_(grad[:split], alpha=alpha[k])
        tracks.add_(grad[split:], alpha=alpha[k])
        if k == layer:
            playlists.add_(grad_layer[:split])
            tracks.add_(grad_layer[split:])
    return torch.cat([playlists, tracks])


class _NoisyPropagation(torch.autograd.Function):
    """(``Σ_k α_k x^(k)``, ``x^(c)``) with the noise above; gradient
    ``Σ_k α_k Âᵏ g + Â^c g_c``."""

    @staticmethod
    def forward(ctx, adjacency: BipartiteAdjacency, x: torch.Tensor, alpha: tuple[float, ...],
                noise: float, layer: int, generator: torch.Generator | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.adjacency, ctx.alpha, ctx.layer = adjacency, alpha, layer
        return _noisy_layers(adjacency, x, alpha, noise, layer, generator)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor, grad_layer: torch.Tensor
                 ) -> tuple[None, torch.Tensor, None, None, None, None]:
        return None, _horner(ctx.adjacency, grad, ctx.alpha, grad_layer, ctx.layer), None, \
            None, None, None


def noisy_propagate(weight: torch.Tensor, alpha: tuple[float, ...],
                    adjacency: BipartiteAdjacency, noise: float, layer: int,
                    generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(final embeddings, layer ``layer``), both with noise ``noise`` after every layer."""
    return _NoisyPropagation.apply(adjacency, weight, alpha, noise, layer, generator)


def info_nce(view: torch.Tensor, other: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean InfoNCE of rows' two views: row i of ``view`` against every row of ``other``."""
    view, other = F.normalize(view, dim=1), F.normalize(other, dim=1)
    logits = view @ other.T / temperature
    return F.cross_entropy(logits, torch.arange(len(view), device=view.device))


def contrastive_loss(final: torch.Tensor, layer: torch.Tensor,
                     row_sets: tuple[torch.Tensor, ...], temperature: float, limit: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Sum over ``row_sets`` (the batch's playlists, its positive tracks) of InfoNCE between
    the two views of at most ``limit`` random distinct rows of each: the other rows of the
    same set are the negatives, as in XSimGCL, at a cost of ``limit``² dot products."""
    total = final.new_zeros(())
    for rows in row_sets:
        rows = torch.unique(rows)
        if len(rows) > limit:
            rows = rows[torch.randperm(len(rows), generator=generator)[:limit].to(rows.device)]
        total = total + info_nce(final.index_select(0, rows), layer.index_select(0, rows),
                                 temperature)
    return total
