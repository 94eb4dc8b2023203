"""The Gowalla benchmark's protocol: all-ranking without training items, a validation
hold-out from train only, and a run that writes its curve on a tiny Gowalla-format split."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from lightgcn_gowalla import AllRanking, hold_out, read_user_items  # noqa: E402

from llarapp.models.graph import GraphVectors  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "lightgcn_gowalla.py"


def vectors(users: np.ndarray, items: np.ndarray) -> GraphVectors:
    return GraphVectors(playlist_pids=np.arange(len(users)), playlists=users, items=items,
                        fold_in_weights=items, item_degree=np.ones(len(items), np.int64))


def test_read_user_items(tmp_path):
    (tmp_path / "train.txt").write_text("0 3 4\n1 2\n")
    frame = read_user_items(tmp_path / "train.txt")
    assert frame.values.tolist() == [[0, 3], [0, 4], [1, 2]]


def test_all_ranking_skips_training_items_and_counts_hits_against_test_items():
    # one user; items 0..3 scored 4, 3, 2, 1; item 0 is a training item
    ranking = AllRanking.build(pd.DataFrame({"pid": [0], "track_idx": [0]}),
                               pd.DataFrame({"pid": [0, 0], "track_idx": [2, 3]}), (1, 4))
    graph = vectors(np.array([[1.0]]), np.array([[4.0], [3.0], [2.0], [1.0]]))
    recall, ndcg = ranking.metrics(graph, k=2)
    assert recall == pytest.approx(0.5)  # top 2 without item 0: items 1, 2; one of 2 targets
    assert ndcg == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert ranking.score(graph, k=100) == pytest.approx(ranking.metrics(graph, 20)[0])


def test_hold_out_takes_validation_edges_from_train_only_for_the_chosen_users():
    train = pd.DataFrame({"pid": np.repeat(np.arange(50), 20),
                          "track_idx": np.tile(np.arange(20), 50)})
    kept, held = hold_out(train, users=10, fraction=0.5, seed=0)
    assert len(kept) + len(held) == len(train)
    assert held["pid"].nunique() <= 10 and 0 < len(held) < 10 * 20
    assert not set(map(tuple, held.values)) & set(map(tuple, kept.values))


def test_benchmark_run_writes_its_curve_and_the_chosen_epoch(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "gowalla"
    data.mkdir()
    for name, count in (("train.txt", 12), ("test.txt", 3)):
        lines = [" ".join(map(str, [user, *rng.choice(60, count, replace=False)]))
                 for user in range(40)]
        (data / name).write_text("\n".join(lines) + "\n")
    subprocess.run([sys.executable, str(BENCH), "--data", str(data), "--minutes", "0.02",
                    "--val-users", "10", "--test-every", "1", "--output-dir", str(tmp_path),
                    "--set", "dim=8", "--set", "batch_size=64", "--set", "negatives=16"],
                   check=True, capture_output=True, text=True, timeout=300)
    result = json.loads((tmp_path / "lightgcn-gowalla.json").read_text())
    assert result["chosen"]["epochs_run"] >= 1 and 0 <= result["chosen"]["recall@20"] <= 1
    assert result["config"]["negatives"] == 16 and result["config"]["dim"] == 8
    assert result["config"]["patience"] == 20  # the benchmark's own stopping rule
    assert (tmp_path / "lightgcn-gowalla.png").stat().st_size > 10_000
