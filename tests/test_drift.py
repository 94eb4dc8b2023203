"""Input drift: PSI per request feature, the bundle's reference, the live gauge, the report."""

from __future__ import annotations

import json
import math

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from llarapp.cli import app
from llarapp.errors import BundleError, ConfigError
from llarapp.online.replay import replay_stream
from llarapp.serving.drift import (
    FEATURES,
    REFERENCE_FILE,
    Binned,
    DriftMonitor,
    Reference,
    psi,
    request_features,
)


def _rows(cold: np.ndarray, history: np.ndarray) -> list[dict[str, float]]:
    return [{"history_length": float(h), "cold_start": float(c),
             "seed_popularity": math.nan if c else float(h) / 3, "embedding_norm": 1.0 + h}
            for c, h in zip(cold, history, strict=True)]


@pytest.mark.parametrize("expected, actual, low, high", [
    ([0.5, 0.5], [0.5, 0.5], 0.0, 1e-12),
    ([0.5, 0.5], [0.6, 0.4], 0.01, 0.1),
    ([0.9, 0.1], [0.1, 0.9], 1.0, 10.0),
    ([1.0, 0.0], [0.0, 1.0], 5.0, 50.0),  # an empty bin is floored, PSI stays finite
])
def test_psi(expected, actual, low, high):
    assert low <= psi(np.array(expected), np.array(actual)) <= high


def test_binned_discrete_and_continuous():
    cold = Binned.fit(np.r_[np.zeros(95), np.ones(5)], bins=10)
    assert cold.edges == [0.5] and cold.expected == pytest.approx([0.95, 0.05])
    spread = Binned.fit(np.random.default_rng(0).normal(size=5000), bins=10)
    assert len(spread.expected) == 10 and max(spread.expected) < 0.11


def test_reference_round_trip_and_shift(tmp_path):
    rng = np.random.default_rng(0)
    base = _rows(rng.random(2000) < 0.15, rng.integers(0, 100, 2000))
    reference = Reference.fit(base, source="test")
    reference.save(tmp_path / "ref.json")
    loaded = Reference.load(tmp_path / "ref.json")
    assert loaded == reference and set(loaded.features) == set(FEATURES)
    same = reference.psi(_rows(rng.random(2000) < 0.15, rng.integers(0, 100, 2000)))
    assert max(same.values()) < 0.05
    shifted = reference.psi(_rows(rng.random(2000) < 0.8, rng.integers(0, 10, 2000)))
    assert all(shifted[f] > 0.2 for f in FEATURES)
    title_only = reference.psi(_rows(np.ones(50, bool), np.zeros(50, int)))
    assert "seed_popularity" not in title_only  # no known seed: nothing to compare
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(BundleError, match="re-run `llarapp export`"):
        Reference.load(tmp_path / "bad.json")


def test_monitor_waits_for_enough_requests():
    reference = Reference.fit(_rows(np.zeros(100, bool), np.arange(100)))
    monitor = DriftMonitor(reference, window=20, min_requests=10)
    monitor.observe(_rows(np.ones(9, bool), np.zeros(9, int)))
    assert monitor.psi() == {}
    monitor.observe(_rows(np.ones(1, bool), np.zeros(1, int)))
    assert monitor.psi()["cold_start"] > 1
    monitor.observe(_rows(np.zeros(20, bool), np.arange(20) * 5))  # the window slides
    assert monitor.psi()["cold_start"] == pytest.approx(0.0)
    with pytest.raises(ConfigError):
        DriftMonitor(reference, window=5, min_requests=10)


def test_request_features():
    degree = np.array([0, 3, 7])
    seeded = request_features([1, 2], 3, np.array([3.0, 4.0]), degree)
    assert seeded == {"history_length": 3.0, "cold_start": 0.0,
                      "seed_popularity": pytest.approx(np.log1p([3, 7]).mean()),
                      "embedding_norm": 5.0}
    assert math.isnan(request_features([], 0, np.zeros(2), degree)["seed_popularity"])


def test_export_fits_the_reference_on_validation_playlists(bundle, synthetic_split):
    assert REFERENCE_FILE in bundle.manifest["files"]  # hashed and verified like the rest
    reference = Reference.load(bundle.path(REFERENCE_FILE))
    assert set(reference.features) == set(FEATURES)
    val = synthetic_split.heldout_for("val")
    assert reference.requests == len(val)
    title_only = float((val["num_seeds"] == 0).mean())
    assert reference.features["cold_start"].expected[-1] == pytest.approx(title_only, abs=0.02)


def _write(path, instances):
    path.write_text("".join(json.dumps(i) + "\n" for i in instances))
    return path


def test_drift_report_cli(bundle, synthetic_dataset, synthetic_split, tmp_path):
    val = [r.instance for r in replay_stream(synthetic_dataset, synthetic_split, "val")]
    runner = CliRunner()
    same = runner.invoke(app, ["drift", "report", "-b", str(bundle.folder), "--requests",
                               str(_write(tmp_path / "val.jsonl", val)), "-o",
                               str(tmp_path / "same"), "--fail-on-drift"])
    assert same.exit_code == 0, same.output
    assert max(json.loads((tmp_path / "same/drift.json").read_text())["psi"].values()) < 1e-6
    titles = [{"playlist_name": i["playlist_name"]} for i in val]
    body = {"instances": titles}  # a whole V1 body per line also works
    shifted = runner.invoke(app, ["drift", "report", "-b", str(bundle.folder), "--requests",
                                  str(_write(tmp_path / "titles.jsonl", [body])), "-o",
                                  str(tmp_path / "shifted"), "--fail-on-drift"])
    assert shifted.exit_code == 3, shifted.output
    assert "significant drift on cold_start" in shifted.output
    assert {p.name for p in (tmp_path / "shifted").iterdir()} == {"drift.json", "drift.md",
                                                                  "drift.png"}
    bad = runner.invoke(app, ["drift", "report", "-b", str(bundle.folder), "--requests",
                              str(_write(tmp_path / "bad.jsonl", val[:2] + [{"k": 0}])),
                              "-o", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "line 3" in bad.output and not (tmp_path / "bad").exists()


def _psi_gauges(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {s.labels["feature"]: s.value for family in text_string_to_metric_families(text)
            if family.name == "llarapp_drift_psi" for s in family.samples}


def test_server_exports_psi_over_its_window(bundle, synthetic_dataset, synthetic_split):
    from llarapp.serving.launch import ServerProcess

    val = [r.instance for r in replay_stream(synthetic_dataset, synthetic_split, "val",
                                             limit=16)]
    with ServerProcess(bundle.folder, "--drift_window", "16", "--drift_min_requests",
                       "16") as live:
        predict = f"{live.url}/v1/models/llarapp:predict"
        titles = [{"playlist_name": i["playlist_name"], "k": 2} for i in val]
        httpx.post(predict, json={"instances": titles[:8]}, timeout=60).raise_for_status()
        assert _psi_gauges(live.url) == {}  # fewer than drift_min_requests so far
        httpx.post(predict, json={"instances": titles[8:]}, timeout=60).raise_for_status()
        assert _psi_gauges(live.url)["cold_start"] > 1.0
        httpx.post(predict, json={"instances": val}, timeout=60).raise_for_status()
        assert _psi_gauges(live.url)["cold_start"] < 0.2
