"""The LightGCN epoch-time benchmark: every variant trains with the stage's loop."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lightgcn as bench  # noqa: E402

import llarapp.models.lightgcn as stage  # noqa: E402


@pytest.fixture
def graph(tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "propagate", stage.propagate)  # variants swap it; restore
    path = tmp_path / "graph.npz"
    np.savez(path, **bench.synthetic_graph(playlists=60, tracks=200, edges=900))
    return path


@pytest.mark.parametrize("variant", bench.VARIANTS)
def test_each_variant_trains_an_epoch(graph, variant):
    result = bench.measure(str(graph), variant, "cpu", epochs=1, batch_size=128)
    assert result["edges"] == 900 and result["batches_per_epoch"] == 8
    assert result["s_per_epoch"] > 0 and np.isfinite(result["loss"])


def test_the_whole_csr_variant_is_the_same_training_as_ours(graph):
    stages_own = stage.propagate
    ours = bench.measure(str(graph), "ours", "cpu", epochs=2, batch_size=128)
    assert stage.propagate is stages_own
    whole = bench.measure(str(graph), "whole-csr", "cpu", epochs=2, batch_size=128)
    assert stage.propagate is not stages_own  # it did train through the whole CSR
    assert whole["loss"] == pytest.approx(ours["loss"], rel=1e-5)
