"""The out-of-fold questions of the reranker-questions benchmark never leak into the graph
model's training edges, and are drawn from the playlists as the split draws held-out ones."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ranker_questions as bench  # noqa: E402


@pytest.fixture(scope="module")
def fold(synthetic_dataset, synthetic_split, tmp_path_factory):
    questions = bench.out_of_fold_questions(synthetic_dataset, synthetic_split, 0.3)
    split = bench.write_fold_split(synthetic_split, questions,
                                   tmp_path_factory.mktemp("fold") / "split")
    return questions, split


def test_fold_playlists_leave_train_and_nothing_else_does(synthetic_split, fold):
    questions, split = fold
    train_pids = set(synthetic_split.train["pid"])
    assert len(questions) > 0 and set(questions["pid"]) <= train_pids
    assert not set(split.train["pid"]) & set(questions["pid"])
    assert set(split.train["pid"]) | set(questions["pid"]) == train_pids
    kept = synthetic_split.train[~synthetic_split.train["pid"].isin(questions["pid"])]
    assert len(split.train) == len(kept)


def test_questions_are_each_playlist_in_order_split_at_its_seeds(synthetic_dataset, fold):
    questions, split = fold
    edges = synthetic_dataset.interactions.sort_values(["pid", "pos"], kind="stable")
    for row in questions.itertuples():
        tracks = edges.loc[edges["pid"] == row.pid, "track_idx"].to_numpy()
        assert len(row.seeds) == row.num_seeds and len(row.targets) >= 1
        np.testing.assert_array_equal(np.r_[row.seeds, row.targets], tracks)
    held = split.heldout_for("oof")
    assert sorted(held["pid"]) == sorted(questions["pid"])
    assert len(split.heldout_for("val")) > 0 and len(split.heldout_for("test")) > 0


def test_the_fold_is_a_fixed_share_by_pid_hash():
    pids = np.arange(100_000)
    inside = bench.fold_of(pids, 0.25)
    assert inside.mean() == pytest.approx(0.25, abs=0.01)
    np.testing.assert_array_equal(inside, bench.fold_of(pids, 0.25))
    assert not bench.fold_of(pids, 1e-9).any()
