"""The trainer's node order: a permutation it undoes everywhere, that packs neighbours."""

import numpy as np
import pandas as pd
import pytest
import torch

from llarapp.models.lightgcn import LightGCNConfig, LightGCNTrainer
from llarapp.models.node_order import NodeOrder

# Two communities (playlists 0-2 on tracks 0-3, playlists 3-5 on tracks 4-7), their ids
# interleaved so that the input order scatters each community; track 8 is cold.
COMMUNITY = pd.DataFrame({"pid": [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5],
                          "track_idx": [0, 1, 1, 2, 2, 3, 4, 5, 5, 6, 6, 7]})
PLAYLIST_IDS = np.array([0, 2, 4, 1, 3, 5])
TRACK_IDS = np.array([0, 2, 4, 6, 1, 3, 5, 7])
TRAIN = pd.DataFrame({"pid": PLAYLIST_IDS[COMMUNITY["pid"]] + 100,
                      "track_idx": TRACK_IDS[COMMUNITY["track_idx"]]})
NUM_ITEMS = 9


def trainer(node_order: str) -> LightGCNTrainer:
    return LightGCNTrainer(LightGCNConfig(dim=4, layers=2, batch_size=4, epochs=2,
                                          node_order=node_order, device="cpu"),
                           TRAIN, NUM_ITEMS)


def contiguous(positions: np.ndarray) -> bool:
    return positions.max() - positions.min() == len(positions) - 1


@pytest.mark.parametrize("method", ["rcm", "none"])
def test_order_is_a_permutation_that_round_trips(method):
    rows, items = np.repeat(np.arange(6), 2), TRAIN["track_idx"].to_numpy()
    order = NodeOrder.build(method, rows, items, 6, NUM_ITEMS)
    assert sorted(order.playlists) == list(range(6))
    assert sorted(order.items) == list(range(NUM_ITEMS))  # the cold track too
    table = torch.arange(6 + NUM_ITEMS, dtype=torch.float32)[:, None]
    training = torch.cat([table[:6][order.playlists], table[6:][order.items]])
    torch.testing.assert_close(order.to_canonical(training), table)


def test_rcm_packs_neighbours_together():
    rows = np.unique(TRAIN["pid"], return_inverse=True)[1]
    items = TRAIN["track_idx"].to_numpy()
    rcm, none = (NodeOrder.build(m, rows, items, 6, NUM_ITEMS) for m in ("rcm", "none"))
    for community in (COMMUNITY["pid"] < 3, COMMUNITY["pid"] >= 3):
        playlists = np.unique(rows[community.to_numpy()])
        tracks = np.unique(items[community.to_numpy()])
        assert not contiguous(playlists) and not contiguous(tracks)  # as given
        ordered_rows, ordered_tracks = rcm.to_training(playlists, tracks)
        assert contiguous(ordered_rows) and contiguous(ordered_tracks)
        assert none.to_training(playlists, tracks)[0].tolist() == playlists.tolist()


def test_training_order_does_not_change_the_model():
    """The same weights, stored in either order, give the same vectors and saved state."""
    ordered, plain = trainer("rcm"), trainer("none")
    canonical = plain.model.embedding.weight.detach()
    positions = np.concatenate([ordered.order.playlists,
                                ordered.num_playlists + ordered.order.items])
    with torch.no_grad():
        ordered.model.embedding.weight.copy_(canonical[positions])
    a, b = ordered.snapshot(), plain.snapshot()
    np.testing.assert_array_equal(a.playlist_pids, b.playlist_pids)
    for name in ("playlists", "items", "fold_in_weights"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-6)
    np.testing.assert_array_equal(a.item_degree, b.item_degree)


def test_saved_state_is_in_the_callers_order():
    from llarapp.models.lightgcn import Validation

    fitted = trainer("rcm")
    result = fitted.fit(Validation([], []))
    weight = result.state["embedding.weight"]
    torch.testing.assert_close(weight, fitted.order.to_canonical(
        fitted.model.embedding.weight.detach()))
    # the negatives are the warm tracks, wherever training stored them
    assert len(fitted.warm_items) == NUM_ITEMS - 1
    cold = int(np.flatnonzero(fitted.order.items == 8)[0])
    assert cold not in fitted.warm_items.tolist()
