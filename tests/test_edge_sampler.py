"""EdgeSampler: what each LightGCN step trains on, per sampling mode."""

import numpy as np
import pytest
import torch

from llarapp.models.edge_sampler import EdgeSampler

# playlist 0 has one track, playlist 1 has nine: edge sampling weighs them 1:9,
# playlist sampling 1:1
ROWS = np.array([0] + [1] * 9)
ITEMS = np.array([7, 0, 1, 2, 3, 4, 5, 6, 8, 9])
EDGES = set(zip(ROWS.tolist(), ITEMS.tolist(), strict=True))


def draws(sampling: str, epochs: int, batch_size: int = 3) -> list[tuple[int, int]]:
    sampler = EdgeSampler(ROWS, ITEMS, 2, sampling, torch.Generator().manual_seed(0))
    return [(int(p), int(i)) for _ in range(epochs)
            for playlist, item in sampler.epoch(batch_size)
            for p, i in zip(playlist, item, strict=True)]


@pytest.mark.parametrize("sampling, share_of_playlist_0", [("edge", 0.1), ("playlist", 0.5)])
def test_each_draw_is_a_training_edge_with_the_mode_s_playlist_weights(sampling,
                                                                        share_of_playlist_0):
    drawn = draws(sampling, epochs=400)
    assert set(drawn) <= EDGES
    assert len(drawn) == 400 * len(ROWS)  # an epoch makes one draw per training edge
    share = np.mean([playlist == 0 for playlist, _ in drawn])
    assert share == pytest.approx(share_of_playlist_0, abs=0.02)


def test_playlist_sampling_draws_each_track_of_a_playlist_alike():
    tracks = [item for playlist, item in draws("playlist", epochs=400) if playlist == 1]
    counts = np.bincount(tracks, minlength=10)[ITEMS[1:]]
    assert counts.min() > 0.8 * counts.mean()


def test_edge_sampling_visits_every_edge_once_per_epoch():
    assert sorted(draws("edge", epochs=1)) == sorted(EDGES)


@pytest.mark.parametrize("sampling", ["edge", "playlist"])
def test_same_seed_same_draws(sampling):
    assert draws(sampling, epochs=2) == draws(sampling, epochs=2)


def test_unknown_sampling_names_the_valid_ones():
    with pytest.raises(ValueError, match="playlist, edge"):
        EdgeSampler(ROWS, ITEMS, 2, "user", torch.Generator())
