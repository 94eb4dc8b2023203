"""LightGCN's objectives: each against its formula written out by hand, table-driven."""

import math

import pytest
import torch

from llarapp.models.ranking_loss import (
    LOSSES,
    layer0_l2,
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
    weight = WEIGHT.clone().requires_grad_()
    loss = layer0_l2(weight, torch.tensor(rows), batch=2)
    assert loss.item() == pytest.approx(expected)
    # its gradient is the one a gather of every occurrence gives
    gathered = WEIGHT.clone().requires_grad_()
    occurrences = gathered[torch.tensor(rows)].pow(2).sum(1)
    weights = torch.tensor([1.0] * 4 + [2 / (len(rows) - 4)] * (len(rows) - 4))
    (0.5 * (weights * occurrences).sum() / 2).backward()
    loss.backward()
    torch.testing.assert_close(weight.grad, gathered.grad)


def test_cosine_models_serve_unit_item_vectors_and_dot_models_raw_ones():
    items = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    torch.testing.assert_close(serving_items("cosine", items).norm(dim=1), torch.ones(2))
    torch.testing.assert_close(serving_items("dot", items), items)
