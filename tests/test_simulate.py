"""``llarapp simulate``: replay held-out playlists, score per model version, push counters."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from fakes import FakeCanary, FakePushgateway
from typer.testing import CliRunner

from llarapp.cli import app
from llarapp.errors import ConfigError, DataValidationError, DeployError
from llarapp.online.replay import Replay, replay_stream
from llarapp.online.report import score, summarise, write_report
from llarapp.online.simulate import ERROR_VERSION, SimulateConfig, simulate


def _replays(n: int, targets: list[str]) -> list[Replay]:
    return [Replay(i, "first_5" if i % 2 else "title_only",
                   {"playlist_name": f"p{i}", "track_uris": [], "k": 10}, targets)
            for i in range(n)]


def test_replay_stream_holds_targets_out(synthetic_dataset, synthetic_split):
    replays = replay_stream(synthetic_dataset, synthetic_split, "test", limit=7, k=5)
    heldout = synthetic_split.heldout_for("test").set_index("pid")
    uris = synthetic_dataset.tracks["track_uri"].to_numpy()
    assert len(replays) == 7 and len({r.pid for r in replays}) == 7
    for replay in replays:
        row = heldout.loc[replay.pid]
        assert replay.instance["track_uris"] == uris[row["seeds"]].tolist()
        assert replay.targets == uris[row["targets"]].tolist()
        assert replay.instance["k"] == 5 and replay.category == row["category"]
    assert [r.pid for r in replay_stream(synthetic_dataset, synthetic_split, limit=7)] == \
        [r.pid for r in replay_stream(synthetic_dataset, synthetic_split, limit=7)]
    with pytest.raises(DataValidationError, match="no 'holdout' playlists"):
        replay_stream(synthetic_dataset, synthetic_split, "holdout")


@pytest.mark.parametrize("change, message", [
    ({"url": "localhost:8080"}, "url must be http"),
    ({"k": 0}, "k must be in"),
    ({"concurrency": 0}, "concurrency"),
    ({"limit": -1}, "limit"),
    ({"rate": -1.0}, "rate"),
])
def test_config_is_validated(change, message):
    with pytest.raises(ConfigError, match=message):
        SimulateConfig(**change)


def test_score_hit_and_ndcg():
    rows = pd.DataFrame({
        "status": [200, 200, 200, 503], "latency_ms": [1.0, 2.0, 3.0, 4.0],
        "model_version": ["a", "a", "b", ERROR_VERSION], "category": ["x"] * 4,
        "recommended": [["t1", "u1"], ["u1", "u2", "t2"], ["u3"], []],
        "targets": [["t1"], ["t2", "t9"], ["t1"], ["t1"]]})
    scored = score(rows, k=3)
    assert scored["hit"].iloc[:3].tolist() == [1.0, 1.0, 0.0] and math.isnan(scored["hit"][3])
    ideal_two = 1 + 1 / np.log2(3)
    assert scored["ndcg"].iloc[:3].tolist() == pytest.approx([1.0, 0.5 / ideal_two, 0.0])
    by_version, _ = summarise(scored)
    row = by_version.set_index("model_version")
    assert row.loc["a", "hit_rate"] == 1.0 and row.loc[ERROR_VERSION, "errors"] == 1


def test_a_b_split_is_scored_per_version_and_pushed(tmp_path):
    targets = [f"spotify:track:t{i}" for i in range(3)]
    canary = FakeCanary({"stable": targets, "canary": ["spotify:track:other"]})
    gateway = FakePushgateway()
    try:
        cfg = SimulateConfig(url=canary.url, concurrency=1, pushgateway=gateway.url,
                             push_namespace="llarapp-prod")
        replays = _replays(10, targets)
        scored = score(simulate(cfg, replays), cfg.k)
        summary = write_report(tmp_path / "report", scored, replays, cfg.to_dict())
    finally:
        canary.close()
        gateway.close()
    by_version = {r["model_version"]: r for r in summary["by_version"]}
    assert by_version["stable"]["requests"] == by_version["canary"]["requests"] == 5
    assert (by_version["stable"]["hit_rate"], by_version["canary"]["hit_rate"]) == (1.0, 0.0)
    assert by_version["stable"]["ndcg"] == pytest.approx(1.0)
    pushes = [r for r in gateway.requests if r["method"] == "PUT"]
    assert pushes[-1]["path"] == "/metrics/job/llarapp-simulate/namespace/llarapp-prod"
    assert 'llarapp_online_hits_total{model_version="stable"} 5.0' in pushes[-1]["body"]
    assert 'llarapp_online_requests_total{model_version="canary"} 5.0' in pushes[-1]["body"]
    report = tmp_path / "report"
    assert {p.name for p in report.iterdir()} >= {"report.md", "online.png", "summary.json",
                                                  "results.parquet", "requests.jsonl"}
    assert len((report / "requests.jsonl").read_text().splitlines()) == 10


def test_unreachable_server_names_the_fix():
    with pytest.raises(DeployError, match="make serve"):
        simulate(SimulateConfig(url="http://127.0.0.1:9"), _replays(1, ["t"]))


def test_simulate_against_a_local_server(server, bundle, synthetic_dataset, synthetic_split,
                                         tmp_path):
    """The acceptance: the CLI against a locally served model prints the hit rate per version."""
    out = tmp_path / "sim"
    result = CliRunner().invoke(app, [
        "simulate", "-d", str(synthetic_dataset.folder), "--splits", str(synthetic_split.folder),
        "--url", server.url, "--limit", "24", "--concurrency", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    version = bundle.version
    assert f"model_version {version}: online hit rate" in result.output
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == 24 and (results["status"] == 200).all()
    hits = [bool(set(r) & set(t)) for r, t in zip(results["recommended"], results["targets"],
                                                  strict=True)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["by_version"][0]["hit_rate"] == pytest.approx(np.mean(hits))
    assert {r["category"] for r in summary["by_category"]} <= set(results["category"])
