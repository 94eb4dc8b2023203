"""XSimGCL's noisy propagation and cross-layer InfoNCE (llarapp.models.contrastive)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llarapp.models.contrastive import contrastive_loss, info_nce, noisy_propagate
from llarapp.models.lightgcn import LightGCNConfig, LightGCNTrainer
from llarapp.models.propagation import BipartiteAdjacency, normalized_adjacency, propagate
from tests.test_lightgcn import NUM_ITEMS, TRAIN

PLAYLISTS, TRACKS = np.array([0, 0, 1, 2, 2, 2, 3]), np.array([0, 1, 1, 4, 3, 0, 2])
ALPHA = (0.25, 0.25, 0.25, 0.25)


def blocks(dtype=torch.float64) -> BipartiteAdjacency:
    adjacency = normalized_adjacency(PLAYLISTS, TRACKS, 4, 6)
    return BipartiteAdjacency.from_adjacency(adjacency.to(dtype), 4)


@pytest.mark.parametrize("noise, layer", [(0.0, 1), (0.1, 1), (0.3, 2), (0.1, 3)])
def test_gradient_matches_finite_differences(noise, layer):
    adjacency = blocks()
    seeds = torch.randn(10, 3, dtype=torch.float64)

    def views(x):  # the same noise at every call: the sign of a propagated row does not flip
        generator = torch.Generator().manual_seed(7)
        final, contrasted = noisy_propagate(x, ALPHA, adjacency, noise, layer, generator)
        return final * seeds[:, :1], contrasted * seeds[:, 1:2]

    x = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(views, (x,))


def test_without_noise_the_final_view_is_the_plain_propagation():
    from llarapp.models.propagation import build_model

    adjacency = blocks(torch.float32)
    model = build_model(10, 3, 3)
    final, first = noisy_propagate(model.embedding.weight, tuple(model.alpha.tolist()),
                                   adjacency, 0.0, 1)
    torch.testing.assert_close(final, propagate(model, adjacency))
    torch.testing.assert_close(first, adjacency.mm(model.embedding.weight))


def test_noise_has_the_set_norm_and_the_propagated_sign():
    adjacency = blocks()
    x = torch.randn(10, 3, dtype=torch.float64)
    _, clean = noisy_propagate(x, ALPHA, adjacency, 0.0, 1)
    _, noisy = noisy_propagate(x, ALPHA, adjacency, 0.2, 1, torch.Generator().manual_seed(0))
    added = noisy - clean
    # track 5 is cold: its propagated row is zero, has no sign and gets no noise
    expected = torch.full((10,), 0.2, dtype=torch.float64)
    expected[9] = 0.0
    torch.testing.assert_close(added.norm(dim=1), expected)
    assert torch.all(added * torch.sign(clean) >= 0)


def test_info_nce_is_cross_entropy_over_cosines():
    view, other = torch.randn(5, 4), torch.randn(5, 4)
    cosines = F.normalize(view, dim=1) @ F.normalize(other, dim=1).T
    expected = -torch.log_softmax(cosines / 0.5, dim=1).diagonal().mean()
    torch.testing.assert_close(info_nce(view, other, 0.5), expected)
    # identical, well-separated views: near-zero loss at a low temperature
    assert info_nce(torch.eye(4), torch.eye(4), 0.01) < 1e-6


@pytest.mark.parametrize("limit, expected_rows", [(10, 3), (3, 3), (2, 2)])
def test_contrastive_loss_uses_distinct_rows_up_to_the_limit(limit, expected_rows):
    final, layer = torch.randn(8, 4), torch.randn(8, 4)
    rows = torch.tensor([1, 5, 1, 6, 5])
    loss = contrastive_loss(final, layer, (rows,), 0.2, limit, torch.Generator().manual_seed(0))
    if expected_rows == 3:
        distinct = torch.tensor([1, 5, 6])
        torch.testing.assert_close(loss, info_nce(final[distinct], layer[distinct], 0.2))
    else:  # a random 2 of the 3
        candidates = [info_nce(final[torch.tensor(pair)], layer[torch.tensor(pair)], 0.2)
                      for pair in ([1, 5], [5, 1], [1, 6], [6, 1], [5, 6], [6, 5])]
        assert any(torch.allclose(loss, c) for c in candidates)


def test_trainer_with_the_contrastive_term_is_seeded_and_changes_the_weights():
    def trained(weight):
        cfg = LightGCNConfig(dim=8, layers=2, batch_size=4, contrast_weight=weight,
                             device="cpu")
        trainer = LightGCNTrainer(cfg, TRAIN, NUM_ITEMS)
        losses = [trainer.train_epoch() for _ in range(3)]
        return trainer.model.embedding.weight.detach().clone(), losses

    plain, _ = trained(0.0)
    first, losses = trained(0.5)
    second, _ = trained(0.5)
    assert torch.equal(first, second)
    assert not torch.allclose(first, plain)
    assert all(np.isfinite(losses))


@pytest.mark.parametrize("key, value", [("contrast_weight", -0.1), ("contrast_noise", -1.0),
                                        ("contrast_temperature", 0.0), ("contrast_layer", 0),
                                        ("contrast_layer", 4), ("contrast_rows", 1)])
def test_config_rejects_bad_contrastive_settings(key, value):
    from llarapp.errors import ConfigError

    with pytest.raises(ConfigError, match=key):
        LightGCNConfig(**{key: value})
