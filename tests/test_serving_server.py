"""The KServe model server, started for real on localhost: V1, V2, cold start, readiness,
bad input (a 400 naming the field), batching and metrics."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal

import httpx
import psutil
import pytest

from llarapp.serving.launch import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def warm_seeds(bundle):
    catalogue = bundle.catalogue
    return catalogue.loc[catalogue["warm"], "track_uri"].head(6).tolist()


def v1(server, *instances, status=200):
    answer = httpx.post(f"{server.url}/v1/models/llarapp:predict",
                        json={"instances": list(instances)}, timeout=60)
    assert answer.status_code == status, answer.text
    return answer.json()


def v2(server, inputs, request_id=None, status=200):
    body = {"inputs": inputs} | ({"id": request_id} if request_id else {})
    answer = httpx.post(f"{server.url}/v2/models/llarapp/infer", json=body, timeout=60)
    assert answer.status_code == status, answer.text
    return answer.json()


def check_recommendations(prediction, k, version, exclude=()):
    recs = prediction["recommendations"]
    assert len(recs) == k and prediction["model_version"] == version
    assert {"track_uri", "track_name", "artist_name", "score", "reason"} <= set(recs[0])
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    assert all(r["reason"] for r in recs)
    assert not {r["track_uri"] for r in recs} & set(exclude)


def test_v1_seeded_and_title_only_in_one_request(server, bundle, warm_seeds):
    seeded, titled = v1(server, {"playlist_name": "summer", "track_uris": warm_seeds, "k": 7},
                        {"playlist_name": "road trip country", "k": 4})["predictions"]
    check_recommendations(seeded, 7, bundle.version, exclude=warm_seeds)
    assert seeded["cold_start"] == "none" and seeded["warnings"] == []
    assert "in the playlist" in seeded["recommendations"][0]["reason"]
    check_recommendations(titled, 4, bundle.version)
    assert titled["cold_start"] == "title_only"


def test_v1_exclude_seen_false_may_return_seeds(server, warm_seeds):
    kept = v1(server, {"track_uris": warm_seeds, "k": 50, "exclude_seen": False})
    dropped = v1(server, {"track_uris": warm_seeds, "k": 50})
    uris = {r["track_uri"] for r in kept["predictions"][0]["recommendations"]}
    assert uris & set(warm_seeds)
    assert not {r["track_uri"] for r in dropped["predictions"][0]["recommendations"]} \
        & set(warm_seeds)


def test_unknown_tracks_with_metadata_go_through_the_cold_path(server, bundle):
    track = {"track_name": "Whiskey Road", "artist_name": "Jake Stone", "album_name": "Dirt",
             "track_uri": "spotify:track:brand-new"}
    with_meta, without_meta = v1(
        server, {"track_uris": ["spotify:track:brand-new"], "tracks": [track], "k": 5},
        {"track_uris": ["spotify:track:unheard-of"], "k": 5})["predictions"]
    check_recommendations(with_meta, 5, bundle.version)
    assert with_meta["cold_start"] == "unknown_tracks" and with_meta["warnings"] == []
    assert "'Whiskey Road' by Jake Stone" in with_meta["recommendations"][0]["reason"]
    # without metadata the track is reported, never silently dropped
    assert without_meta["cold_start"] == "unknown_tracks"
    assert any("spotify:track:unheard-of" in w for w in without_meta["warnings"])


def test_metadata_changes_the_answer(server):
    """The cold path is used: different unknown tracks give different recommendations."""
    def uris(name, artist):
        answer = v1(server, {"tracks": [{"track_name": name, "artist_name": artist}], "k": 10})
        return [r["track_uri"] for r in answer["predictions"][0]["recommendations"]]

    assert uris("Whiskey Road", "Jake Stone") != uris("Techno Rave", "DJ Neon")


def test_v2_infer(server, bundle, warm_seeds):
    answer = v2(server, [
        {"name": "track_uris", "shape": [len(warm_seeds)], "datatype": "BYTES",
         "data": warm_seeds},
        {"name": "playlist_name", "shape": [1], "datatype": "BYTES", "data": ["summer"]},
        {"name": "k", "shape": [1], "datatype": "INT32", "data": [6]}], request_id="req-42")
    assert answer["id"] == "req-42" and answer["model_version"] == bundle.version
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["track_uris"]["shape"] == [6] and outputs["scores"]["datatype"] == "FP32"
    assert not set(outputs["track_uris"]["data"]) & set(warm_seeds)
    assert outputs["cold_start"]["data"] == ["none"] and outputs["warnings"]["shape"] == [0]
    assert len(outputs["reasons"]["data"]) == 6


def test_v2_without_an_id_gets_one_and_title_only_works(server):
    answer = v2(server, [{"name": "playlist_name", "shape": [1], "datatype": "BYTES",
                          "data": ["chill"]}])
    assert answer["id"]
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["cold_start"]["data"] == ["title_only"]
    assert outputs["track_uris"]["shape"] == [10]


V1_BAD = [
    ({"instances": []}, "instances"),
    ({"instances": [{"k": 5}]}, "instances.0"),
    ({"instances": [{"playlist_name": "x", "k": 501}]}, "instances.0.k"),
    ({"instances": [{"playlist_name": "x", "k": "10"}]}, "instances.0.k"),
    ({"instances": [{"playlist_name": "x" * 301}]}, "instances.0.playlist_name"),
    ({"instances": [{"track_uris": ["u"] * 501}]}, "instances.0.track_uris"),
    ({"instances": [{"track_uris": [""]}]}, "instances.0.track_uris.0"),
    ({"instances": [{"tracks": [{"artist_name": "A"}]}]}, "instances.0.tracks.0.track_name"),
    ({"instances": [{"playlist_name": "x", "colour": "red"}]}, "instances.0.colour"),
    ({"instances": [{"playlist_name": "x"}] * 65}, "instances"),
    ({"inputs": []}, "instances"),
    ([1, 2], "body"),
]


@pytest.mark.parametrize("body, field", V1_BAD)
def test_v1_bad_input_is_a_400_naming_the_field(server, body, field):
    answer = httpx.post(f"{server.url}/v1/models/llarapp:predict", json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(f"{field}:"), answer.text


def test_v1_non_json_body_is_a_400(server):
    answer = httpx.post(f"{server.url}/v1/models/llarapp:predict", content=b"\xff{",
                        headers={"content-type": "application/json"}, timeout=30)
    assert answer.status_code == 400


TITLE = {"name": "playlist_name", "shape": [1], "datatype": "BYTES", "data": ["x"]}
V2_BAD = [
    ([TITLE, {"name": "k", "shape": [1], "datatype": "FP32", "data": [3.0]}],
     "inputs.k.datatype"),
    ([TITLE, {"name": "k", "shape": [2], "datatype": "INT32", "data": [3, 4]}], "inputs.k"),
    ([TITLE, {"name": "k", "shape": [1], "datatype": "INT32", "data": [0]}], "inputs.k"),
    ([TITLE, {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]}],
     "inputs.colour"),
    ([TITLE, TITLE], "inputs.playlist_name"),
    ([{"name": "track_uris", "shape": [501], "datatype": "BYTES", "data": ["u"] * 501}],
     "inputs.track_uris"),
    ([{"name": "k", "shape": [1], "datatype": "INT32", "data": [3]}], "inputs"),
]


@pytest.mark.parametrize("inputs, field", V2_BAD)
def test_v2_bad_input_is_a_400_naming_the_field(server, inputs, field):
    answer = v2(server, inputs, status=400)
    assert answer["error"].startswith(f"{field}:") or answer["error"].startswith(f"{field}."), \
        answer


def test_concurrent_requests_are_coalesced(server):
    def batches():
        text = httpx.get(f"{server.url}/metrics", timeout=30).text
        return float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith("llarapp_batch_size_count")))

    async def burst(n):
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(
                f"{server.url}/v1/models/llarapp:predict",
                json={"instances": [{"playlist_name": f"mix {i}", "k": 3}]}) for i in range(n)))

    before = batches()
    answers = asyncio.run(burst(16))
    assert all(a.status_code == 200 for a in answers)
    names = [a.json()["predictions"][0]["recommendations"] for a in answers]
    assert all(len(n) == 3 for n in names)
    assert batches() - before < 16  # at least two requests shared one engine call


def test_metrics(server, bundle):
    v1(server, {"playlist_name": "metrics check", "k": 2},
       {"track_uris": ["spotify:track:none-such"], "k": 2})
    httpx.post(f"{server.url}/v1/models/llarapp:predict", json={"instances": []}, timeout=30)
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in text.splitlines() if line and not line.startswith("#")}
    for stage in ("encode", "retrieve", "rerank"):
        assert samples[f'llarapp_stage_seconds_count{{stage="{stage}"}}'] >= 1
    assert samples['llarapp_cold_start_requests_total{kind="title_only"}'] >= 1
    assert samples['llarapp_cold_start_requests_total{kind="unknown_tracks"}'] >= 1
    assert samples['llarapp_unknown_tracks_total{with_metadata="false"}'] >= 1
    assert samples['llarapp_invalid_requests_total{protocol="v1"}'] >= 1
    assert samples["llarapp_batch_size_count"] >= 1
    assert samples["llarapp_requests_in_flight"] == 0  # every answered request has left
    info = next(k for k in samples if k.startswith("llarapp_model_info"))
    assert f'model_version="{bundle.version}"' in info and 'precision="int8"' in info
    assert any(k.startswith("request_predict_seconds_count") for k in samples)  # KServe's


def test_two_workers_load_the_indexed_bundle_count_every_request_and_survive_a_crash(
        bundle, warm_seeds):
    assert bundle.index  # the tests' bundle ships its HNSW index
    with ServerProcess(bundle.folder, "--workers", "2") as server:
        single = v1(server, {"track_uris": warm_seeds[:3], "k": 4})["predictions"][0]
        check_recommendations(single, 4, bundle.version, exclude=warm_seeds[:3])
        for i in range(9):
            v1(server, {"playlist_name": f"worker mix {i}", "k": 2})
        text = httpx.get(f"{server.url}/metrics", timeout=30).text
        workers = set(re.findall(r"worker (\d+) serving", server.log))
        os.kill(int(min(workers)), signal.SIGKILL)  # a crashed worker is replaced
        server.wait_until(lambda: len(re.findall(r"worker (\d+) serving", server.log)) == 3,
                          120, "replacing the killed worker")
        for i in range(6):  # whichever socket a connection lands on, it is served
            v1(server, {"playlist_name": f"after the crash {i}", "k": 2})
    assert len(workers) == 2  # each loaded its own sessions and index
    counts = dict(re.findall(r'^llarapp_cold_start_requests_total\{kind="(\w+)"\} (\S+)',
                             text, re.M))
    assert float(counts["title_only"]) == 9  # summed over the workers, whichever served
    assert float(counts["none"]) == 1


def held_connections(pid: int, port: int) -> int:
    return sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
               for c in psutil.Process(pid).connections("tcp"))


def test_two_workers_even_out_keep_alive_connections(bundle):
    """Twelve keep-alive clients: the kernel's hash splits them 6/6 only about one time in
    five; a worker over its share closes connections until each holds six, then none."""
    body = {"instances": [{"playlist_name": "even split", "k": 1}]}
    with ServerProcess(bundle.folder, "--workers", "2") as server:
        clients = [httpx.Client(base_url=server.url, timeout=60) for _ in range(12)]
        server.wait_until(lambda: len(set(re.findall(r"worker (\d+) serving", server.log))) == 2,
                          120, "both workers serving")
        pids = {int(pid) for pid in re.findall(r"worker (\d+) serving", server.log)}
        try:
            splits = []
            for _ in range(30):
                for client in clients:  # each reconnects when its connection was closed
                    client.post("/v1/models/llarapp:predict", json=body).raise_for_status()
                splits.append(sorted(held_connections(pid, server.port) for pid in pids))
                if splits[-3:] == [[6, 6]] * 3:
                    break
        finally:
            for client in clients:
                client.close()
    assert splits[-3:] == [[6, 6]] * 3, splits  # even, and it stays even


def test_a_corrupt_bundle_never_becomes_ready(bundle, tmp_path):
    broken = shutil.copytree(bundle.folder, tmp_path / "bundle")
    data = bytearray((broken / "ranker.int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / "ranker.int8.onnx").write_bytes(bytes(data))
    server = ServerProcess(broken).start()
    try:
        server.wait_listening()
        server.wait_until(lambda: "will NOT become ready" in server.log, 60, "logging the failure")
        assert server.status("/v1/models/llarapp") == 503
        assert server.status("/v2/models/llarapp/ready") == 503
        answer = httpx.post(f"{server.url}/v1/models/llarapp:predict",
                            json={"instances": [{"playlist_name": "x"}]}, timeout=30)
        assert answer.status_code == 503
        assert "ranker.int8.onnx does not match its sha256" in server.log
    finally:
        server.stop()


def test_a_version_mismatch_is_refused(bundle):
    server = ServerProcess(bundle.folder, env={"LLARAPP_MODEL_VERSION": "llara-other"})
    server.start()
    try:
        server.wait_listening()
        server.wait_until(lambda: "will NOT become ready" in server.log, 60, "logging the failure")
        assert "llara-other was asked for" in server.log
        assert server.status("/v1/models/llarapp") == 503
    finally:
        server.stop()
