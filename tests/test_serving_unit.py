"""Serving pieces without HTTP: the batcher, the server config, readiness, catalogue add,
and the predictor image's torch-free dependency closure."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llarapp.errors import BundleError, ConfigError, DataValidationError
from llarapp.serving.batching import Batcher, BatchingConfig
from llarapp.serving.config import KSERVE_MODEL_DIR, ServeConfig, latest_local_bundle
from llarapp.serving.limits import Overloaded
from tests.conftest import REPO


def run_batcher(items, config, fail_on=None):
    """Submit ``items`` concurrently; return (results, the batches the engine saw)."""
    seen = []

    def engine(batch):
        seen.append(list(batch))
        if fail_on is not None and fail_on in batch:
            raise RuntimeError("engine failed")
        return [x * 10 for x in batch]

    async def main():
        batcher = Batcher(engine, config)
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in items),
                                        return_exceptions=True)
        finally:
            batcher.close()

    return asyncio.run(main()), seen


@pytest.mark.parametrize("size, wait, expect_max", [(1, 0, 1), (4, 5, 4), (64, 20, 64)])
def test_batcher_keeps_order_and_respects_the_size(size, wait, expect_max):
    results, seen = run_batcher(list(range(20)), BatchingConfig(size, wait))
    assert results == [i * 10 for i in range(20)]
    assert max(len(b) for b in seen) <= expect_max
    assert sorted(x for b in seen for x in b) == list(range(20))
    if size > 1:
        assert len(seen) < 20  # concurrent submissions were coalesced


def test_batcher_failure_reaches_every_caller_of_that_batch_only():
    results, seen = run_batcher(list(range(6)), BatchingConfig(3, 50), fail_on=4)
    failed = {i for i, r in enumerate(results) if isinstance(r, RuntimeError)}
    bad_batch = next(b for b in seen if 4 in b)
    assert failed == set(bad_batch)
    assert all(results[i] == i * 10 for i in range(6) if i not in failed)


def batches_seen(requests, config, cost=lambda item: 1.0):
    """Submit ``requests`` (lists of items) in order while the engine is busy with a first
    item; return the batches the engine ran after it, and each request's outcome."""
    seen, gate = [], threading.Event()

    def engine(batch):
        gate.wait(10)
        seen.append(list(batch))
        return batch

    async def main():
        batcher = Batcher(engine, config, cost)
        try:
            blocker = asyncio.ensure_future(batcher.submit("busy"))
            await asyncio.sleep(0.05)  # the engine holds "busy"; the rest queue up
            calls = [asyncio.ensure_future(batcher.submit_all(r)) for r in requests]
            await asyncio.sleep(0.05)
            gate.set()
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            await blocker
            return outcomes
        finally:
            batcher.close()

    outcomes = asyncio.run(main())
    return seen[1:], outcomes


def test_a_later_single_request_overtakes_the_bulk_of_a_large_one():
    bulk = [f"bulk {i}" for i in range(12)]
    batches, outcomes = batches_seen([bulk, ["single"]], BatchingConfig(4, 0))
    assert outcomes == [bulk, ["single"]]
    first_batch = batches[0]
    assert "bulk 0" in first_batch and "single" in first_batch  # round 0 of each request
    assert [x for b in batches for x in b if x.startswith("bulk")] == bulk  # in order


def test_bulk_runs_on_credit_while_others_arrive():
    heavy = [f"heavy {i}" for i in range(8)]
    singles = [[f"one {i}"] for i in range(8)]
    batches, _ = batches_seen([heavy, *singles], BatchingConfig(32, 0),
                              cost=lambda item: 2.0 if item.startswith("heavy") else 1.0)
    first = batches[0]
    # 9 first items earn 0.25 × 10 = 2.5 of credit: one heavy bulk item (cost 2) joins
    assert sorted(first) == sorted(["heavy 0", "heavy 1", *(s[0] for s in singles)])


def test_a_full_queue_refuses_the_whole_request():
    batches, outcomes = batches_seen([["a", "b", "c"], ["d", "e"]],
                                     BatchingConfig(8, 0, max_queued=4))
    assert outcomes[0] == ["a", "b", "c"]
    assert isinstance(outcomes[1], Overloaded) and outcomes[1].retry_after >= 1
    assert "d" not in {x for b in batches for x in b}  # nothing of it was queued


@pytest.mark.parametrize("bad, message", [
    ({"max_batch_size": 0}, "max_batch_size"), ({"max_wait_ms": -1}, "max_wait_ms"),
    ({"precision": "int4"}, "precision"), ({"http_port": 70000}, "http_port"),
    ({"providers": ["tpu"]}, "unknown provider"), ({"model_name": " "}, "model_name"),
    ({"workers": 0}, "workers"), ({"colour": 1}, "unknown key"),
    ({"deadline_ms": 10}, "deadline_ms"), ({"max_queued": 0}, "max_queued"),
    ({"max_body_bytes": 10}, "max_body_bytes"), ({"max_texts": 0}, "max_texts"),
    ({"grace_period_s": 0}, "grace_period_s"),
])
def test_serve_config_is_validated(bad, message):
    with pytest.raises(ConfigError, match=message):
        ServeConfig.from_dict(bad)


def serve_cli_flags() -> set[str]:
    """The ``--flags`` of ``llarapp serve``, as typer builds them."""
    import typer.main

    from llarapp.cli import app

    command = typer.main.get_command(app).commands["serve"]
    return {name for p in command.params for name in p.opts if name.startswith("--")}


def test_both_server_commands_take_every_setting_spelled_the_same():
    import dataclasses

    from llarapp.serving.server import parser

    settings = {f"--{f.name}" for f in dataclasses.fields(ServeConfig)} - {"--control_token"}
    module_flags = {a.option_strings[0] for a in parser()._actions if a.option_strings}
    assert settings <= module_flags and "--control_token" not in module_flags  # a secret
    assert serve_cli_flags() == settings | {"--runs", "--config", "--set", "--show-config"}


@pytest.mark.parametrize("argv, expected", [
    ([], {}),  # nothing given: every default is the dataclass's
    (["--max_batch_size", "4", "--warmup", "false", "--providers", "rocm,cpu"],
     {"max_batch_size": 4, "warmup": False, "providers": ["rocm", "cpu"]}),
    (["--deadline_ms", "250", "--enable_latency_logging", "true", "--grpc_port", "9"],
     {"deadline_ms": 250.0, "enable_latency_logging": True}),  # kserve's own flags pass
])
def test_flags_set_only_what_they_name(monkeypatch, argv, expected):
    from llarapp.serving.server import config_from_args

    monkeypatch.delenv("LLARAPP_PROVIDERS", raising=False)
    assert config_from_args(argv) == ServeConfig(**expected)


def test_show_config_masks_the_control_token(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from llarapp.cli import app

    monkeypatch.setenv("LLARAPP_CONTROL_TOKEN", "s3cret-token")
    result = CliRunner().invoke(app, ["serve", "--model_dir", str(tmp_path), "--show-config"])
    assert result.exit_code == 0 and "control_token: <set>" in result.output
    assert "s3cret-token" not in result.output
    assert ServeConfig().control_token == "s3cret-token"  # masked only when shown


@pytest.mark.parametrize("argv, message", [
    (["--max_batch_size", "four"], "--max_batch_size takes an integer"),
    (["--warmup", "maybe"], "--warmup takes true or false"),
    (["--max_batch_size", "0"], "max_batch_size"),
])
def test_a_bad_flag_is_one_clear_error_from_either_command(tmp_path, argv, message):
    from typer.testing import CliRunner

    from llarapp.cli import app
    from llarapp.serving.server import config_from_args

    with pytest.raises((SystemExit, ConfigError)):
        config_from_args(argv)
    result = CliRunner().invoke(app, ["serve", "--model_dir", str(tmp_path), *argv,
                                      "--show-config"])
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize("workers, threads, cores, expected", [
    (1, 0, 2, 2), (2, 0, 2, 1), (3, 0, 2, 1), (2, 0, 16, 8), (2, 3, 16, 3),
])
def test_worker_threads_share_the_cores(monkeypatch, workers, threads, cores, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    assert ServeConfig(workers=workers, threads=threads).worker_threads == expected


def test_bundle_location_precedence(monkeypatch):
    monkeypatch.delenv("STORAGE_URI", raising=False)
    assert ServeConfig().bundle_location() == KSERVE_MODEL_DIR
    monkeypatch.setenv("STORAGE_URI", "s3://models/llarapp/v3")
    assert ServeConfig().bundle_location() == "s3://models/llarapp/v3"
    assert ServeConfig(model_dir="/b").bundle_location() == "/b"
    monkeypatch.setenv("LLARAPP_PROVIDERS", "rocm,cpu")
    assert ServeConfig.from_dict({}).providers == ["rocm", "cpu"]


def test_latest_local_bundle(tmp_path):
    with pytest.raises(BundleError, match="run `make run` first"):
        latest_local_bundle(tmp_path)
    older, newer = (tmp_path / f"{n}/export/bundle" for n in ("a", "b"))
    for folder in (older, newer):
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
    os.utime(older / "manifest.json", (1, 1))
    assert latest_local_bundle(tmp_path) == newer


def test_model_is_ready_only_after_load_and_warm_up(bundle, tmp_path):
    from kserve.errors import ModelNotReady

    from llarapp.serving.server import LlaraModel

    model = LlaraModel(ServeConfig(model_dir=str(bundle.folder)))
    model.start()  # kserve calls this at registration; it must not mark the model ready
    assert not model.ready
    with pytest.raises(ModelNotReady, match="still loading"):
        asyncio.run(model.predict({"instances": [{"playlist_name": "x"}]}))
    assert model.load() and model.ready
    assert gc.get_freeze_count() > 0  # the loaded engine is out of the collector's scans
    answer = asyncio.run(model.predict({"instances": [{"playlist_name": "x", "k": 2}]}))
    assert len(answer["predictions"][0]["recommendations"]) == 2
    model.stop()
    assert gc.get_freeze_count() == 0
    missing = LlaraModel(ServeConfig(model_dir=str(tmp_path / "nothing")))
    assert not missing.load() and not missing.ready
    assert "has no manifest.json" in missing.load_error


NEW_TRACKS = [{"track_uri": "spotify:track:new-1", "track_name": "Whiskey Road Again",
               "artist_name": "Jake Stone", "album_name": "Dirt II"},
              {"track_uri": "spotify:track:new-2", "track_name": "Neon Rave",
               "artist_name": "DJ Neon"}]


def test_catalogue_add_makes_new_tracks_servable(bundle, tmp_path):
    from llarapp.serving.bundle import Bundle
    from llarapp.serving.catalogue import add_tracks
    from llarapp.serving.engine import Engine, Request

    existing = bundle.catalogue.iloc[0]
    tracks = pd.DataFrame(NEW_TRACKS + [{"track_uri": existing["track_uri"],
                                         "track_name": "dup", "artist_name": "",
                                         "album_name": ""}])
    before = Engine(bundle).recommend([Request("", ["spotify:track:new-1"], k=3)])[0]
    assert before.cold_start == "unknown_tracks" and before.warnings
    result = add_tracks(bundle.folder, tracks, tmp_path / "bigger")
    assert result["added"] == 2 and result["skipped_existing"] == 1
    grown = Bundle.load(tmp_path / "bigger")  # every file re-hashed
    assert grown.version == result["model_version"] != bundle.version
    assert len(grown.catalogue) == len(bundle.catalogue) + 2
    assert not grown.catalogue["warm"].iloc[-2:].any()
    assert grown.array("weights/item_degree.npy")[-2:].tolist() == [0, 0]
    after = Engine(grown).recommend([Request("", ["spotify:track:new-1"], k=3)])[0]
    assert after.cold_start == "none" and after.warnings == []
    assert Bundle.load(bundle.folder).version == bundle.version  # the source is untouched


def test_catalogue_add_cli_and_bad_files(bundle, tmp_path):
    from typer.testing import CliRunner

    from llarapp.cli import app
    from llarapp.serving.catalogue import read_tracks

    path = tmp_path / "new.json"
    path.write_text(json.dumps({"tracks": NEW_TRACKS}))
    result = CliRunner().invoke(app, ["catalogue", "add", str(bundle.folder), str(path),
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert '"added": 2' in result.output
    for name, content, message in [
        ("dup.json", json.dumps(NEW_TRACKS * 2), "appear twice"),
        ("nouri.json", json.dumps([{"track_name": "x"}]), "has no track_uri"),
        ("bad.json", json.dumps([{"track_uri": "u", "track_name": ""}]), "track 0 is invalid"),
        ("tracks.txt", "x", "unsupported file type"),
    ]:
        (tmp_path / name).write_text(content)
        with pytest.raises(DataValidationError, match=message):
            read_tracks(tmp_path / name)
    csv = tmp_path / "new.csv"
    pd.DataFrame(NEW_TRACKS).to_csv(csv, index=False)
    assert read_tracks(csv)["album_name"].tolist() == ["Dirt II", ""]


def test_unknown_track_vectors_come_from_text_then_the_cold_mapper(bundle):
    from llarapp.models.mlp_numpy import apply_numpy
    from llarapp.serving.engine import Engine, Request, TrackMeta

    engine = Engine(bundle)
    track = TrackMeta("Whiskey Road", "Jake Stone", "Dirt")
    seeds = engine.seeds(Request(tracks=[track]))
    titles, extra_text, extra_graph = engine._encode([Request(tracks=[track])], [seeds])
    expected_text = engine.text.encode(["Whiskey Road — Jake Stone — Dirt"])
    np.testing.assert_allclose(extra_text[0], expected_text, atol=1e-6)
    np.testing.assert_allclose(extra_graph[0], apply_numpy(engine.item_mapper, expected_text),
                               atol=1e-5)
    assert not titles.any()  # no title: a zero title vector


def test_a_title_encodes_the_same_whatever_it_is_sent_with(bundle):
    """The int8 text encoder quantizes per call: batching titles would change their vectors
    (by up to 0.03 per coordinate, measured), so a request's answer would depend on its
    neighbours in the server's batch and on what the cache held."""
    from llarapp.serving.engine import Engine, Request, Seeds

    titles = ["summer road trip", "chill", "gym hits", "sad songs", "wedding", "rainy day"]
    alone, _, _ = Engine(bundle)._encode([Request(titles[0])], [Seeds()])
    together, _, _ = Engine(bundle)._encode([Request(t) for t in titles[::-1]],
                                            [Seeds() for _ in titles])
    np.testing.assert_array_equal(alone[0], together[-1])


REQUIREMENT = re.compile(r"^([A-Za-z0-9_.\-]+)")


def test_predictor_image_has_no_torch(bundle):
    """kserve/requirements.txt's dependency closure (from installed metadata) holds no
    torch, and the server imports with torch unimportable."""
    from importlib import metadata

    from packaging.requirements import Requirement

    wanted = [REQUIREMENT.match(line).group(1) for line in
              (REPO / "kserve/requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    closure, todo = set(), list(wanted)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in closure:
            continue
        closure.add(name)
        for raw in metadata.requires(name) or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    assert closure.isdisjoint({"torch", "transformers", "peft", "torch-geometric", "mlflow",
                               "kfp"}), closure
    code = ("import sys\nfor m in ('torch', 'transformers', 'mlflow', 'kfp'): sys.modules[m] = None"
            "\nimport llarapp.serving.server, llarapp.serving.catalogue")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dockerfile = (REPO / "kserve/Dockerfile").read_text()
    final_stage = dockerfile.rsplit("FROM ", 1)[1]
    assert re.search(r"^USER 1000$", final_stage, re.M) and "HEALTHCHECK" in final_stage
    assert "llarapp.serving" in final_stage and "torch" not in wanted
    assert Path(REPO / "kserve/__init__.py").exists() is False  # never shadows `kserve`


@pytest.mark.parametrize("values, postings", [
    ([0, 5, 9, 10, 11], [0, 3, 9, 10]),  # both ends, a gap, past the end
    ([7, 7, 2, 1], [1, 7]),  # unsorted values, repeats
    ([4], []),  # a word no item has
    ([], [2, 4]),
    (np.random.default_rng(0).integers(0, 1000, 300),
     np.unique(np.random.default_rng(1).integers(0, 1000, 400))),
])
def test_membership_by_binary_search_is_isin(values, postings):
    from llarapp.serving.reasons import in_sorted

    values, postings = np.asarray(values, np.int64), np.asarray(postings, np.int32)
    assert in_sorted(values, postings).tolist() == np.isin(values, postings).tolist()


def test_title_word_reasons_match_the_regex_definition(bundle):
    """The inverted indexes give the reason a regex per item would: the first title word
    that is a tag of the track, else a whole word of its name or artist."""
    import random

    from llarapp.serving.reasons import Explainer, title_words

    catalogue = bundle.catalogue.copy()
    catalogue.loc[0, "track_name"] = "Rock_n Roll (Live)"  # "_" joins: no whole word "rock"
    graph = np.zeros((len(catalogue), 4), np.float32)
    explainer = Explainer(catalogue, graph, np.zeros((len(catalogue), 8), np.float32))
    searchable = (catalogue["track_name"].fillna("") + " "
                  + catalogue["artist_name"].fillna("")).str.lower().tolist()
    tags = [list(t) if t is not None else [] for t in catalogue.get("tags", [None] * len(
        catalogue))]

    def by_regex(item, words):
        for word in words:
            if word in tags[item]:
                return f"the title word '{word}' is one of its tags"
            if re.search(rf"\b{re.escape(word)}\b", searchable[item]):
                return f"the title word '{word}' is in its name or artist"
        return ""

    rng = random.Random(0)
    vocabulary = sorted({w for text in searchable for w in re.findall(r"\w+", text)}
                        | {t for item in tags for t in item}) + ["rock", "nothingmatches"]
    items = np.arange(len(catalogue))
    for _ in range(40):
        words = title_words(" ".join(rng.sample(vocabulary, 3)).title())
        expected = [by_regex(i, words) for i in items.tolist()]
        assert explainer.title_matches(items, words) == expected, words
    assert any(explainer.title_matches(items, title_words("rock roll")))
