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


@pytest.mark.parametrize("negative", [
    torch.tensor([[1.0, 1.0], [3.0, 0.0]]),  # softmax: shared by the batch of 2
    torch.tensor([[[1.0, 1.0]], [[3.0, 0.0]]]),  # bpr: one per positive
])
def test_layer0_l2_counts_each_occurrence_like_the_reference(negative):
    # ½(‖u‖² + ‖i‖² + mean_j ‖j‖² per positive) / B; here ‖u‖² 5, ‖i‖² 6
    per_positive_negatives = {2: (2.0 + 9.0) / 2 * 2, 3: 2.0 + 9.0}[negative.dim()]
    expected = 0.5 * (5.0 + 6.0 + per_positive_negatives) / 2
    assert layer0_l2(USER, POSITIVE, negative).item() == pytest.approx(expected)


def test_cosine_models_serve_unit_item_vectors_and_dot_models_raw_ones():
    items = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    torch.testing.assert_close(serving_items("cosine", items).norm(dim=1), torch.ones(2))
    torch.testing.assert_close(serving_items("dot", items), items)
