"""LightGCN's objectives: each against its formula written out by hand, table-driven."""

import math

import pytest
import torch

from llarapp.models.ranking_loss import (
    LOSSES,
    add_layer0_l2,
    gathered_bpr,
    negative_shape,
    ranking_loss,
    serving_items,
)

USER = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
POSITIVE = torch.tensor([[2.0, 0.0], [1.0, 1.0]])


def cosine(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


def dot(a, b):
    return float(a @ b)


@pytest.mark.parametrize("similarity, score", [("dot", dot), ("cosine", cosine)])
def test_softmax_is_cross_entropy_of_the_positive_among_shared_negatives(similarity, score):
    negative = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
    tau = 0.5
    expected = []
    for user, positive in zip(USER, POSITIVE, strict=True):
        logits = [score(user, item) / tau for item in (positive, *negative)]
        expected.append(-(logits[0] - math.log(sum(math.exp(v) for v in logits))))
    loss = ranking_loss("softmax", USER, POSITIVE, negative, tau, similarity)
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-5)


def test_bpr_is_the_mean_log_sigmoid_of_each_margin():
    negative = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    margins = [[2.0 - 0.0, 2.0 - 1.0], [2.0 - 0.0, 2.0 - 0.0]]
    expected = sum(math.log1p(math.exp(-m)) for row in margins for m in row) / 4
    loss = ranking_loss("bpr", USER, POSITIVE, negative, temperature=1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loss", LOSSES)
def test_a_better_ranked_positive_lowers_the_loss(loss):
    generator = torch.Generator().manual_seed(0)
    negative = torch.randn(*negative_shape(loss, 2, 4), 2, generator=generator)
    good = ranking_loss(loss, USER, USER * 3, negative, 0.1)
    bad = ranking_loss(loss, USER, -USER * 3, negative, 0.1)
    assert good < bad


@pytest.mark.parametrize("loss, shape", [("softmax", (5,)), ("bpr", (2, 5))])
def test_negative_shape(loss, shape):
    assert negative_shape(loss, batch=2, negatives=5) == shape


# layer-0 rows: playlists 0-1, tracks 2-4; ‖row‖² = 5, 1, 4, 2, 9
WEIGHT = torch.tensor([[1.0, 2.0], [1.0, 0.0], [2.0, 0.0], [1.0, 1.0], [3.0, 0.0]])


@pytest.mark.parametrize("rows, expected", [
    # bpr, one negative per positive: ½(‖u‖² + ‖i‖² + ‖j‖² per positive) / B
    ([0, 1, 2, 3, 3, 4], 0.5 * (5 + 1 + 4 + 2 + 2 + 9) / 2),
    # softmax, three negatives shared by the batch of 2: each counts B/3 times
    ([0, 1, 2, 3, 2, 3, 4], 0.5 * (5 + 1 + 4 + 2 + (4 + 2 + 9) * 2 / 3) / 2),
    # bpr, two negatives per positive, one row drawn twice: each counts 2/4
    ([0, 0, 2, 2, 4, 4, 4, 3], 0.5 * (5 + 5 + 4 + 4 + (9 + 9 + 9 + 2) / 2) / 2),
])
def test_layer0_l2_counts_each_occurrence_like_the_reference(rows, expected):
    reg, earlier = 0.5, torch.full_like(WEIGHT, 0.25)  # e.g. the loss's own gradient
    weight = WEIGHT.clone().requires_grad_()
    weight.grad = earlier.clone()
    value = add_layer0_l2(weight, torch.tensor(rows), batch=2, reg=reg)
    assert value.item() == pytest.approx(reg * expected)
    # the gradient added is the one a gather of every occurrence gives
    gathered = WEIGHT.clone().requires_grad_()
    occurrences = gathered[torch.tensor(rows)].pow(2).sum(1)
    weights = torch.tensor([1.0] * 4 + [2 / (len(rows) - 4)] * (len(rows) - 4))
    (reg * 0.5 * (weights * occurrences).sum() / 2).backward()
    torch.testing.assert_close(weight.grad, earlier + gathered.grad)


def test_layer0_l2_creates_the_gradient_when_backward_left_none():
    weight = WEIGHT.clone().requires_grad_()
    add_layer0_l2(weight, torch.tensor([0, 1, 2, 3, 3, 4]), batch=2, reg=1.0)
    assert weight.grad is not None and weight.grad[1].abs().sum() > 0


def test_cosine_models_serve_unit_item_vectors_and_dot_models_raw_ones():
    items = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    torch.testing.assert_close(serving_items("cosine", items).norm(dim=1), torch.ones(2))
    torch.testing.assert_close(serving_items("dot", items), items)


def gather_then_bpr(table, users, positives, negatives):
    """The reference: autograd through one gather, a split and ``ranking_loss``."""
    rows = torch.cat([users, positives, negatives.flatten()])
    user, positive, negative = table.index_select(0, rows).split(
        (len(users), len(positives), negatives.numel()))
    return ranking_loss("bpr", user, positive, negative.reshape(*negatives.shape, -1), 1.0)


@pytest.mark.parametrize("batch, negatives, rows, buffer_rows", [
    (1, 1, 4, None),     # the smallest batch
    (5, 3, 12, None),    # rows drawn many times: the gradients must add up
    (16, 8, 40, 128),    # a buffer of exactly B·N rows, as the trainer keeps
    (4, 2, 30, 64),      # a larger buffer (the epoch's last, shorter batch)
    (4, 2, 30, 3),       # a buffer too small is replaced
])
def test_gathered_bpr_matches_autograd_through_the_gather(batch, negatives, rows, buffer_rows):
    generator = torch.Generator().manual_seed(batch)
    table = torch.randn(rows, 6, generator=generator, dtype=torch.float64)
    users = torch.randint(rows // 2, (batch,), generator=generator)
    positives = torch.randint(rows // 2, rows, (batch,), generator=generator)
    negative_rows = torch.randint(rows // 2, rows, (batch, negatives), generator=generator)
    buffer = None if buffer_rows is None else torch.empty(buffer_rows, 6, dtype=torch.float64)
    ours, reference = table.clone().requires_grad_(), table.clone().requires_grad_()
    loss = gathered_bpr(ours, users, positives, negative_rows, buffer)
    expected = gather_then_bpr(reference, users, positives, negative_rows)
    (3 * loss).backward()  # an upstream gradient other than 1
    (3 * expected).backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(ours.grad, reference.grad)


def test_gathered_bpr_gathers_into_the_callers_buffer_and_leaves_it_intact():
    table = torch.randn(10, 4, requires_grad=True)
    users, positives = torch.tensor([0, 1]), torch.tensor([5, 6])
    negatives = torch.tensor([[7, 8], [9, 5]])
    buffer = torch.empty(4, 4)
    loss = gathered_bpr(table, users, positives, negatives, buffer)
    torch.testing.assert_close(buffer, table.detach()[negatives.flatten()])
    loss.backward(retain_graph=True)
    first = table.grad.clone()
    # the backward pass reads the gathered rows and does not write over them
    torch.testing.assert_close(buffer, table.detach()[negatives.flatten()])
    loss.backward()
    torch.testing.assert_close(table.grad, 2 * first)
