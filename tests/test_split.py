import numpy as np
import pandas as pd
import pytest

from llarapp.data.split import CATEGORY_SEEDS, SplitConfig, next_track_rows, run_split
from llarapp.errors import DataValidationError


def test_split_is_deterministic(synthetic_dataset, synthetic_split, tmp_path):
    run_split(SplitConfig(seed=3), synthetic_dataset, tmp_path / "again")
    again = pd.read_parquet(tmp_path / "again" / "heldout.parquet")
    pd.testing.assert_frame_equal(again, synthetic_split.heldout)


def test_heldout_playlists_never_reach_training(synthetic_split):
    heldout = set(synthetic_split.heldout["pid"])
    assert not heldout & set(synthetic_split.train["pid"])
    counts = synthetic_split.heldout["split"].value_counts()
    assert counts["val"] == counts["test"] == 60  # 10% of 600 each


def test_seeds_follow_the_category(synthetic_dataset, synthetic_split):
    by_pid = {pid: g.sort_values("pos")["track_idx"].to_numpy()
              for pid, g in synthetic_dataset.interactions.groupby("pid")}
    for row in synthetic_split.heldout.itertuples():
        expected = CATEGORY_SEEDS[row.category]
        assert len(row.seeds) == row.num_seeds
        if expected >= 0:
            assert row.num_seeds == expected
        full = by_pid[row.pid]
        assert list(row.seeds) == list(full[: row.num_seeds])
        assert list(row.targets) == list(full[row.num_seeds:]) and len(row.targets) >= 1


def test_every_category_is_used(synthetic_split):
    used = set(synthetic_split.heldout["category"])
    assert {"title_only", "first_1", "first_5", "first_10", "first_25", "random_k"} <= used


def test_cold_tracks_are_out_of_training_but_in_targets(synthetic_dataset, synthetic_split):
    cold = set(synthetic_split.cold_tracks["track_idx"])
    assert cold and not cold & set(synthetic_split.train["track_idx"])
    assert cold <= set(synthetic_dataset.tracks["track_idx"])
    targets = set(np.concatenate(synthetic_split.heldout["targets"].to_list()))
    assert cold & targets
    eligible = (synthetic_dataset.tracks["num_playlists"] >= 2).sum()
    assert abs(len(cold) - 0.05 * eligible) <= 5  # one rounding per stratum


def test_cold_sample_spans_popularity_strata(synthetic_split):
    strata = synthetic_split.cold_tracks.groupby("stratum")["num_playlists"].median()
    assert len(strata) == 5 and strata.is_monotonic_increasing


def test_next_track_rows_use_the_last_h_tracks():
    sequences = pd.DataFrame({"pid": [1, 1, 1, 1, 2, 2], "track_idx": [10, 11, 12, 13, 20, 21]})
    pids, history, targets = next_track_rows(sequences, history_len=2)
    assert pids.tolist() == [1, 1, 1, 2]
    assert [h.tolist() for h in history] == [[10], [10, 11], [11, 12], [20]]
    assert targets.tolist() == [11, 12, 13, 21]


def test_next_track_view_covers_train_and_heldout(synthetic_split):
    view = synthetic_split.next_track
    assert set(view["split"]) == {"train", "val", "test"}
    assert view["history"].map(len).max() <= 20
    heldout = synthetic_split.heldout
    assert (view["split"] != "train").sum() == (heldout["num_seeds"] > 0).sum()


def test_too_small_dataset_is_a_clear_error(synthetic_dataset, tmp_path):
    with pytest.raises(DataValidationError, match="too few playlists"):
        run_split(SplitConfig(val_fraction=0.001, test_fraction=0.001), synthetic_dataset,
                   tmp_path / "out")
    assert not (tmp_path / "out").exists()
