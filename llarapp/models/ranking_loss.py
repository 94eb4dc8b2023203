"""LightGCN's training objectives on implicit feedback, one batch of positive edges at a time.

* ``bpr`` (default): LightGCN's own loss, ``−log σ(e_u·e_i − e_u·e_j)`` with ``negatives``
  uniform warm tracks per positive; training runs it as :func:`gathered_bpr`, the same
  value and gradient with the gather and the gradient's scatter written out.
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

from llarapp.models.torch_utils import sparse_csr

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
    # the plain form; training computes the same loss through gathered_bpr
    negative_scores = (user.unsqueeze(1) * negative).sum(-1)
    margin = (user * positive).sum(-1, keepdim=True) - negative_scores
    return -F.logsigmoid(margin).mean()


class _GatheredBPR(torch.autograd.Function):
    """BPR on rows gathered from one table, its gradient added straight back into the table.

    Autograd's own graph for gather → split → BPR allocates, zero-fills and concatenates
    several (B·N × d) tensors per step. Above glibc's 32 MB ``mmap`` ceiling each fresh one
    is page-faulted in again, which cost more than the arithmetic: a third of a Gowalla step
    on the CPU. Here the negatives are gathered into a buffer the caller keeps, the margin's
    derivative ``w = −σ(−m) / (B·N)`` gives the gradients in closed form (``Σ_j w_j (p − n_j)``
    for the playlist, ``Σ_j w_j · u`` for the positive, ``−w_j · u`` for each negative).
    The negatives' part is one sparse product, ``S @ U`` with ``S[row, b] = −Σ w_bj`` over
    draw b's negatives on that row: it writes the whole table (``beta=0``, so no zero fill)
    and replaces a scatter of B·N rows, the step's slowest non-sparse operation (11.5 ms
    on Gowalla's 131,072 rows against about 4 for the sort and the product). The
    playlists' and positives' parts are then ``index_add``-ed. The (1 × d)·(d × N) products
    run as ``einsum``'s batched matrix products.
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, user_rows: torch.Tensor, positive_rows: torch.Tensor,
                negative_rows: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
        user, positive = table.index_select(0, user_rows), table.index_select(0, positive_rows)
        flat = negative_rows.flatten()
        negative = torch.index_select(table, 0, flat, out=buffer[:flat.numel()])
        negative = negative.view(*negative_rows.shape, table.shape[1])
        margin = ((user * positive).sum(-1, keepdim=True)
                  - torch.einsum("bd,bnd->bn", user, negative))
        ctx.save_for_backward(user_rows, positive_rows, flat, user, positive, negative, margin)
        ctx.table_shape = table.shape
        return -F.logsigmoid(margin).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        user_rows, positive_rows, flat, user, positive, negative, margin = ctx.saved_tensors
        weight = torch.sigmoid(-margin).mul_(-grad / margin.numel())  # dloss/dmargin, (B, N)
        total = weight.sum(1, keepdim=True)
        table = torch.empty(ctx.table_shape, dtype=user.dtype, device=user.device)
        torch.addmm(table, _draws_by_row(flat, weight.neg(), ctx.table_shape[0]), user,
                    beta=0, out=table)
        table.index_add_(0, user_rows,
                         total * positive - torch.einsum("bn,bnd->bd", weight, negative))
        table.index_add_(0, positive_rows, total * user)
        return table, None, None, None, None


def _draws_by_row(flat: torch.Tensor, values: torch.Tensor, rows: int) -> torch.Tensor:
    """(rows × B) sparse CSR ``S`` with ``values[b, j]`` at (``flat[b·N + j]``, b), so that
    ``S @ U`` adds each draw's row of ``U`` times its value to every row it drew."""
    draws = values.shape[1]
    order = torch.argsort(flat, stable=True)  # stable: the same sums in the same order
    crow = torch.zeros(rows + 1, dtype=torch.long, device=flat.device)
    crow[1:] = torch.bincount(flat, minlength=rows).cumsum(0)
    return sparse_csr(crow, order.div(draws, rounding_mode="floor"), values.flatten()[order],
                      (rows, len(values)))


def gathered_bpr(table: torch.Tensor, user_rows: torch.Tensor, positive_rows: torch.Tensor,
                 negative_rows: torch.Tensor, buffer: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """``ranking_loss("bpr", …)`` on ``table``'s rows: (B,) playlists and positives, (B, N)
    negatives; the same value and gradient, for a cheaper backward pass. ``buffer``, at least
    (B·N × d), receives the gathered negatives; a trainer passes the same one every step so
    that it is not page-faulted in again."""
    needed = (negative_rows.numel(), table.shape[1])
    if buffer is None or buffer.shape[0] < needed[0] or buffer.shape[1:] != needed[1:]:
        buffer = table.new_empty(needed)
    return _GatheredBPR.apply(table, user_rows, positive_rows, negative_rows, buffer.detach())


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


@torch.no_grad()
def add_layer0_l2(weight: torch.Tensor, rows: torch.Tensor, batch: int, reg: float
                  ) -> torch.Tensor:
    """``reg`` · ½(‖x_u‖² + ‖x_i‖² + mean over negatives of ‖x_j‖²) / B on layer-0 rows: adds
    its gradient to ``weight.grad`` in place (after the loss's backward pass) and returns it.

    ``rows`` are the batch's ``batch`` playlist rows, its ``batch`` positive rows, then its
    negative rows, as gathered for the loss. Each distinct row is summed once, weighted by
    how often it occurs (a negative counts ``B / negatives``): the same value and gradient
    as gathering every occurrence. Outside autograd because through it the gradient came
    back as a second zero-filled (nodes × d) table, summed into the first; here it touches
    the batch's rows only.
    """
    negatives = len(rows) - 2 * batch
    occurrences = torch.ones(len(rows), dtype=weight.dtype, device=weight.device)
    occurrences[2 * batch:] = batch / negatives
    counts = torch.zeros(len(weight), dtype=weight.dtype, device=weight.device)
    counts.index_add_(0, rows, occurrences)
    touched = counts.nonzero().squeeze(1)
    scale = counts[touched].mul_(reg / batch)
    vectors = weight.index_select(0, touched)
    if weight.grad is None:
        weight.grad = torch.zeros_like(weight)
    weight.grad.index_add_(0, touched, vectors * scale.unsqueeze(1))
    return 0.5 * (scale * vectors.pow(2).sum(1)).sum()


def serving_items(similarity: str, items: torch.Tensor) -> torch.Tensor:
    """The item vectors a dot-product scorer should use for a model trained on ``similarity``."""
    return F.normalize(items, dim=-1) if similarity == "cosine" else items
