"""The full-MPD projection benchmark: its synthetic graph and a run at a tiny scale."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from full_mpd import synthetic_edges  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "full_mpd.py"


def test_synthetic_edges_are_distinct_in_range_and_popularity_skewed():
    keys = synthetic_edges(playlists=200, tracks=1000, edges=5000)
    assert len(keys) == len(np.unique(keys)) == 5000
    tracks = keys % 1000
    assert keys.max() < 200 * 1000
    counts = np.bincount(tracks, minlength=1000)
    assert counts[:10].sum() > counts[-10:].sum() * 3  # Zipf: the head is far heavier


def test_run_at_a_tiny_scale_projects_epoch_time_and_device_memory(tmp_path):
    out = tmp_path / "full.json"
    subprocess.run([sys.executable, str(BENCH), "--scale", "0.0002", "--steps", "1",
                    "--texts", "32", "--output", str(out)],
                   check=True, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    graph = result["lightgcn"]
    assert graph["counts"]["edges"] == int(66_346_428 * 0.0002)
    assert graph["s_per_step"] > 0 and graph["steps_per_epoch"] >= 1
    parts = graph["device_gib"]
    assert abs(parts["total"] - sum(v for k, v in parts.items() if k != "total")) < 1e-9
    assert result["text_embed"]["texts_per_s_cpu"] > 0 and result["fits_mi100"] is True
