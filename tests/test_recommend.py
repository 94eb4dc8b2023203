"""`llarapp recommend`: batch recommendations with the server's engine, held-out metrics
equal to evaluate's, and the RecSys Challenge submission and its validator."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import write_slice
from typer.testing import CliRunner

from llarapp.cli import app
from llarapp.errors import ConfigError
from llarapp.eval.evaluate import per_playlist_metrics
from llarapp.recommend.batch import run_recommend
from llarapp.recommend.challenge import check_submission
from llarapp.recommend.config import RecommendConfig
from llarapp.recommend.playlists import read_playlists


@pytest.fixture(scope="module")
def slice_file(synthetic_slices):
    return next(p for p in sorted(synthetic_slices.glob("*.json")) if "manifest" not in p.name)


def test_parquet_output_and_holdout_metrics_equal_evaluates(bundle, slice_file, tmp_path):
    cfg = RecommendConfig(k=100, batch_size=16, holdout_last=5)
    out = tmp_path / "recs.parquet"
    summary = run_recommend(cfg, str(bundle.folder), str(slice_file), str(out))
    table = pd.read_parquet(out)
    playlists = read_playlists(str(slice_file), holdout_last=5)
    assert list(table.columns) == ["pid", "rank", "track_uri", "score", "reason"]
    assert set(table["pid"]) == {p.pid for p in playlists}
    assert summary["playlists"] == len(playlists) and summary["playlists_per_s"] > 0
    for playlist in playlists[:20]:
        recs = table[table["pid"] == playlist.pid]
        assert recs["rank"].tolist() == list(range(1, 101))
        assert recs["track_uri"].is_unique
        assert not set(recs["track_uri"]) & {t.track_uri for t in playlist.seeds}
        assert recs["reason"].str.len().min() > 0
    # evaluate's per-playlist metrics on the same lists and targets
    row = {uri: i for i, uri in enumerate(bundle.catalogue["track_uri"])}
    heldout = pd.DataFrame({"pid": [p.pid for p in playlists], "category": "all",
                            "targets": [np.array([row[u] for u in p.targets]) for p in playlists]})
    recs = table.groupby("pid")["track_uri"].apply(lambda u: np.array([row[x] for x in u]))
    frame = pd.DataFrame({"model": "llarapp", "pid": recs.index, "recs": recs.to_numpy()})
    warm = np.ones(len(row), bool)
    artists = pd.factorize(bundle.catalogue["artist_name"])[0]
    expected = per_playlist_metrics(heldout, frame, warm, artists, (10,))
    expected = expected[expected["segment"] == "all"]
    got = summary["metrics"]
    assert got["playlists"] == len(expected)
    for metric in ("r_precision", "ndcg", "clicks"):
        assert got[metric] == pytest.approx(expected[metric].mean(), abs=1e-9), metric


def challenge_set(slice_file, folder):
    """A challenge-format file: names dropped or kept, 0 to 5 seed tracks per playlist."""
    raw = json.loads(slice_file.read_text())["playlists"][:24]
    playlists = []
    for i, p in enumerate(raw):
        seeds = p["tracks"][:[0, 1, 5][i % 3]]
        record = {"pid": p["pid"], "tracks": seeds, "num_holdouts": len(p["tracks"]) - len(seeds),
                  "num_samples": len(seeds), "num_tracks": len(p["tracks"])}
        if i % 4:
            record["name"] = p["name"]
        playlists.append(record)
    return write_slice(folder, "challenge_set.json", playlists)


def test_challenge_submission_is_valid_and_each_corruption_is_named(bundle, slice_file,
                                                                     tmp_path):
    challenge = challenge_set(slice_file, tmp_path)
    out = tmp_path / "submission.csv"
    run_recommend(RecommendConfig(format="challenge"), str(bundle.folder), str(challenge),
                  str(out))
    playlists = read_playlists(str(challenge))
    text = out.read_text()
    assert text.startswith("team_info,") and len(text.splitlines()) == 1 + len(playlists)
    assert check_submission(text, playlists) == []
    runner = CliRunner()
    ok = runner.invoke(app, ["recommend", "--input", str(challenge), "--check", str(out)])
    assert ok.exit_code == 0, ok.output

    lines = text.splitlines()
    seeded = next(i for i, p in enumerate(playlists, 1) if p.seeds)
    cells = lines[seeded].split(", ")
    cells[1] = playlists[seeded - 1].seeds[0].track_uri  # a seed track
    lines[seeded] = ", ".join(cells)
    cells = lines[seeded + 1].split(", ")
    lines[seeded + 1] = ", ".join([*cells[:2], cells[1], *cells[3:]])  # a duplicate
    lines[seeded + 2] = ", ".join(lines[seeded + 2].split(", ")[:-1])  # 499 tracks
    missing = lines.pop(seeded + 3).split(",")[0]  # a pid without a line
    faults = check_submission("\n".join(lines), playlists)
    assert len(faults) == 4, faults
    joined = "\n".join(faults)
    for words in ("one of the playlist's seeds", "appears twice", "exactly 500 tracks: 1×",
                  f"has no line: 1× (pid {missing})"):
        assert words in joined, (words, faults)
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines))
    bad = runner.invoke(app, ["recommend", "--input", str(challenge), "--check", str(broken)])
    assert bad.exit_code == 1 and "appears twice" in bad.output


@pytest.mark.parametrize("overrides, message", [
    ({"format": "csv"}, "format must be one of"),
    ({"format": "challenge", "k": 100}, "challenge format needs k 500"),
    ({"team_info": "just a name"}, "team_info"),
    ({"holdout_last": -1}, "holdout_last"),
])
def test_config_errors_name_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        RecommendConfig(**overrides)


def test_bundle_from_the_registry_alias(bundle, slice_file, tmp_path, monkeypatch):
    from llarapp.registry.register import RegisterConfig, run_register

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    run_register(RegisterConfig(tracking_uri=tracking), bundle.folder, tmp_path / "registered")
    challenge = challenge_set(slice_file, tmp_path)
    summary = run_recommend(RecommendConfig(k=10), "models:/llarapp@candidate", str(challenge),
                            str(tmp_path / "recs.parquet"))
    assert summary["model_version"] == bundle.version and summary["playlists"] == 24
    assert summary["cold_start"]["title_only"] == 8  # a third of them have no seed track


def test_worker_processes_give_the_same_output_as_one(bundle, slice_file, tmp_path):
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    first = run_recommend(RecommendConfig(k=30, holdout_last=5), str(bundle.folder),
                          str(slice_file), str(one))
    second = run_recommend(RecommendConfig(k=30, holdout_last=5, processes=2),
                           str(bundle.folder), str(slice_file), str(two))
    pd.testing.assert_frame_equal(pd.read_parquet(one), pd.read_parquet(two))
    assert first["metrics"] == second["metrics"] and first["cold_start"] == second["cold_start"]


def test_a_worker_that_cannot_load_fails_the_run_with_its_error(slice_file, tmp_path):
    from llarapp.errors import BundleError

    with pytest.raises(BundleError, match="not a serving bundle"):
        run_recommend(RecommendConfig(processes=2), str(tmp_path), str(slice_file),
                      str(tmp_path / "out.parquet"))


def test_targets_given_separately_score_as_the_same_holdout(bundle, slice_file, tmp_path):
    """Seeds in one file and the full playlists in another score as --holdout-last does."""
    raw = json.loads(slice_file.read_text())["playlists"]
    seeds = write_slice(tmp_path / "in", "seeds.json",
                        [{**p, "tracks": p["tracks"][:-5],
                          "num_tracks": len(p["tracks"]) - 5} for p in raw])
    held = run_recommend(RecommendConfig(k=50, holdout_last=5), str(bundle.folder),
                         str(slice_file), str(tmp_path / "held.parquet"))
    given = run_recommend(RecommendConfig(k=50, targets=str(slice_file)), str(bundle.folder),
                          str(seeds), str(tmp_path / "given.parquet"))
    assert given["metrics"]["playlists"] == len(raw)
    for metric in ("r_precision", "ndcg", "clicks"):
        assert given["metrics"][metric] == pytest.approx(held["metrics"][metric], abs=1e-9)
    with pytest.raises(ConfigError, match="not both"):
        RecommendConfig(holdout_last=5, targets=str(slice_file))
