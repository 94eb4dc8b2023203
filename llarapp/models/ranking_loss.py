"""LightGCN's training objectives on implicit feedback, one batch of positive edges at a time.

* ``bpr`` (default): LightGCN's own loss, ``−log σ(e_u·e_i − e_u·e_j)`` with ``negatives``
  uniform warm tracks per positive.
* ``softmax``: sampled softmax at temperature τ. The batch shares ``negatives`` uniform
  warm tracks, and each positive (u, i) is classified against them:
  ``−log softmax_i([s(u,i), s(u,j_1), …] / τ)``, where ``s`` is the dot product (default)
  or the cosine (``similarity``). The dot product lets an item's norm carry its
  popularity, as BPR's does; the cosine drops it, which measurably hurt on both MPD and
  Gowalla, whose test items are more popular than a random sample of train. One step sees
  a thousand negatives per positive for one extra matrix product, so it fits validation in
  a few epochs; it is not the default because the dot form overfits within a few epochs
  and the cosine form ranks test items worse than BPR (benchmarks/lightgcn_gowalla.py,
  README "Results").

Both add the paper's L2 on the batch's layer-0 embeddings (not on every parameter, and not
on the propagated vectors), counted once per occurrence in the batch as the reference
implementation does: ``reg · ½(‖x_u‖² + ‖x_i‖² + mean_j ‖x_j‖²) / B``.

A model trained on cosines ranks by cosine, so its item vectors are stored unit length
(:func:`serving_items`); a playlist's own norm never changes its ranking.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("bpr", "softmax")
SIMILARITIES = ("dot", "cosine")


def negative_shape(loss: str, batch: int, negatives: int) -> tuple[int, ...]:
    """``softmax`` shares one set of negatives per batch; ``bpr`` draws them per positive."""
    return (negatives,) if loss == "softmax" else (batch, negatives)


def ranking_loss(loss: str, user: torch.Tensor, positive: torch.Tensor,
                 negative: torch.Tensor, temperature: float, similarity: str = "dot"
                 ) -> torch.Tensor:
    """Mean loss of a batch: ``user``, ``positive`` are (B, d); ``negative`` is (N, d) for
    ``softmax`` and (B, N, d) for ``bpr``."""
    if loss == "softmax":
        if similarity == "cosine":
            user, positive, negative = (F.normalize(x, dim=-1)
                                        for x in (user, positive, negative))
        logits = torch.cat([(user * positive).sum(-1, keepdim=True), user @ negative.T], 1)
        target = torch.zeros(len(user), dtype=torch.long, device=user.device)
        return F.cross_entropy(logits / temperature, target)
    # broadcast products, not einsum: its batched (1 × d)·(d × N) matrix products cost twice
    # as much on the CPU for the few negatives per positive that BPR draws
    negative_scores = (user.unsqueeze(1) * negative).sum(-1)
    margin = (user * positive).sum(-1, keepdim=True) - negative_scores
    return -F.logsigmoid(margin).mean()


def hardest_negatives(vectors: torch.Tensor, playlist: torch.Tensor,
                      candidates: torch.Tensor, item_offset: int) -> torch.Tensor:
    """(B, N) BPR negatives from (B, N, M) candidate items: per slot, the one that the
    current ``vectors`` (items from row ``item_offset``) score highest for its playlist,
    i.e. dynamic negative sampling (Zhang et al. 2013). M = 1 is uniform sampling."""
    if candidates.shape[-1] == 1:
        return candidates[..., 0]
    with torch.no_grad():
        scores = torch.einsum("bd,bnmd->bnm", vectors[playlist],
                              vectors[item_offset + candidates])
        return candidates.gather(-1, scores.argmax(-1, keepdim=True))[..., 0]


def layer0_l2(weight: torch.Tensor, rows: torch.Tensor, batch: int) -> torch.Tensor:
    """½(‖x_u‖² + ‖x_i‖² + mean over negatives of ‖x_j‖²) / B on layer-0 rows.

    ``rows`` are the batch's ``batch`` playlist rows, its ``batch`` positive rows, then its
    negative rows, as gathered for the loss. Each distinct row is summed once, weighted by
    how often it occurs (a negative counts ``B / negatives``): the same value and gradient
    as gathering every occurrence, for one gather of the distinct rows.
    """
    negatives = len(rows) - 2 * batch
    occurrences = torch.ones(len(rows), dtype=weight.dtype, device=weight.device)
    occurrences[2 * batch:] = batch / negatives
    counts = torch.zeros(len(weight), dtype=weight.dtype, device=weight.device)
    counts.index_add_(0, rows, occurrences)
    touched = counts.nonzero().squeeze(1)
    squared = weight.index_select(0, touched).pow(2).sum(1)
    return 0.5 * (counts[touched] * squared).sum() / batch


def serving_items(similarity: str, items: torch.Tensor) -> torch.Tensor:
    """The item vectors a dot-product scorer should use for a model trained on ``similarity``."""
    return F.normalize(items, dim=-1) if similarity == "cosine" else items
