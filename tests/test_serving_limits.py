"""The server under hostile or heavy clients, over real HTTP: each limit answers its status
code (413, 400, 429 with Retry-After, 504), health tells the truth, model control needs a
token, and SIGTERM drains in-flight requests."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time
from collections import Counter

import httpx
import numpy as np
import pytest

from llarapp.serving.launch import ServerProcess

pytestmark = pytest.mark.slow

PREDICT = "/v1/models/llarapp:predict"
TOKEN = "s3cret-token"
TIGHT = ("--max_body_bytes", "4096", "--max_texts", "8", "--max_recommendations", "100",
         "--max_queued", "8")


@pytest.fixture(scope="module")
def tight(bundle):
    """A server with small limits, and model control enabled by a token."""
    with ServerProcess(bundle.folder, *TIGHT, env={"LLARAPP_CONTROL_TOKEN": TOKEN}) as live:
        yield live


def chunks(size: int):
    """A body of ``size`` bytes sent without Content-Length (chunked)."""
    yield b'{"instances": [{"playlist_name": "'
    for _ in range(size // 1000):
        yield b"x" * 1000
    yield b'"}]}'


def track(i: int) -> dict:
    return {"track_name": f"Song {i}", "artist_name": f"Artist {i}"}


LIMITS = [  # (what, request arguments, status, words the answer must hold)
    ("body over the limit, by Content-Length", {"content": b"{" + b" " * 5000 + b"}"}, 413,
     "at most 4096 bytes, got 5002"),
    ("body over the limit, chunked", {"content": chunks(20_000)}, 413, "at most 4096 bytes"),
    ("too many texts to encode", {"json": {"instances": [
        {"playlist_name": "a", "tracks": [track(i) for i in range(4)]},
        {"playlist_name": "b", "tracks": [track(i) for i in range(3)]}]}}, 400,
     "has 9 texts to encode"),
    ("too many recommendations", {"json": {"instances": [{"playlist_name": "a", "k": 60},
                                                         {"playlist_name": "b", "k": 41}]}},
     400, "asks for 101 recommendations"),
    ("at the limits", {"json": {"instances": [
        {"playlist_name": "a", "k": 50, "tracks": [track(i) for i in range(3)]},
        {"playlist_name": "b", "k": 50, "tracks": [track(i) for i in range(3)]}]}}, 200, ""),
]


@pytest.mark.parametrize("what, request_args, status, words", LIMITS,
                         ids=[case[0] for case in LIMITS])
def test_each_limit_answers_its_status(tight, what, request_args, status, words):
    headers = {"content-type": "application/json"}
    answer = httpx.post(tight.url + PREDICT, headers=headers, timeout=60, **request_args)
    assert answer.status_code == status, answer.text
    assert words in answer.text


def test_a_full_queue_answers_429_with_retry_after(tight):
    async def flood():
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(tight.url + PREDICT, json={
                "instances": [{"playlist_name": f"flood {i}", "k": 3}] * 4})
                for i in range(24)))

    answers = asyncio.run(flood())
    codes = Counter(a.status_code for a in answers)
    assert set(codes) == {200, 429} and codes[200] >= 2, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert "at capacity" in refused.json()["error"]
    metrics = httpx.get(tight.url + "/metrics", timeout=30).text
    assert f'llarapp_refused_requests_total{{reason="queue_full"}} {codes[429]}.0' in metrics


def test_a_request_past_its_deadline_answers_504(bundle):
    # the batcher waits a full second for company, so a lone request cannot meet 300 ms
    with ServerProcess(bundle.folder, "--max_wait_ms", "1000", "--deadline_ms", "300") as live:
        start = time.monotonic()
        answer = httpx.post(live.url + PREDICT, json={"instances": [{"playlist_name": "x"}]},
                            timeout=60)
        assert answer.status_code == 504 and "deadline of 300 ms" in answer.text
        assert time.monotonic() - start < 0.9  # answered at the deadline, not after the run


def test_model_control_needs_the_token_and_health_tells_the_truth(bundle, server, tight):
    unload = "/v2/repository/models/llarapp/unload"
    off = httpx.post(server.url + unload, timeout=30)  # no token configured: control is off
    assert off.status_code == 403 and "LLARAPP_CONTROL_TOKEN" in off.text
    assert httpx.post(tight.url + unload, timeout=30).status_code == 401
    wrong = httpx.post(tight.url + unload, headers={"authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401
    assert server.status("/v1/models/llarapp") == 200  # nothing was unloaded
    for path in ("/", "/v2/health/live", "/v2/health/ready"):
        assert tight.status(path) == 200
    done = httpx.post(tight.url + unload, headers={"authorization": f"Bearer {TOKEN}"},
                      timeout=30)
    assert done.status_code == 200, done.text
    # the model is gone: not ready, and not live, so Kubernetes restarts the pod
    for path in ("/", "/v2/health/live", "/v2/health/ready"):
        assert tight.status(path) == 503, path


def test_readiness_waits_for_the_model_but_liveness_does_not(bundle, tmp_path):
    broken = tmp_path / "missing-bundle"
    server = ServerProcess(broken).start()
    try:
        server.wait_listening()
        server.wait_until(lambda: "will NOT become ready" in server.log, 60, "logging the failure")
        assert server.status("/v2/health/ready") == 503
        assert server.status("/v2/health/live") == 200  # a failed load stalls the rollout
    finally:
        server.stop()


def requests_in_flight(server: ServerProcess) -> int:
    """``llarapp_requests_in_flight`` on /metrics (summed over the workers)."""
    text = httpx.get(server.url + "/metrics", timeout=5).text
    found = re.search(r"^llarapp_requests_in_flight(?:\{[^}]*\})? (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_finishes_requests_in_flight_and_refuses_new_ones(bundle, workers):
    # each request waits 1 s in the batcher for company: in flight through the SIGTERM
    server = ServerProcess(bundle.folder, "--max_wait_ms", "1000", "--workers", workers).start()
    server.wait_ready()
    answers: list[int] = []

    def ask(i: int) -> None:
        answer = httpx.post(server.url + PREDICT, timeout=60,
                            json={"instances": [{"playlist_name": f"drain {i}", "k": 2}]})
        answers.append(answer.status_code)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    held: list[int] = []

    def all_three_accepted() -> bool:  # by the model, not waiting in a listen backlog
        held.append(requests_in_flight(server))
        return held[-1] + len(answers) == 3

    server.wait_until(all_three_accepted, 30, "holding the three requests")
    assert held[-1] >= 1  # so the SIGTERM below meets requests in flight
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # the listeners close; the three are still in flight
    with pytest.raises(httpx.TransportError):
        httpx.post(server.url + PREDICT, json={"instances": [{"playlist_name": "late"}]},
                   timeout=5)
    for thread in threads:
        thread.join(60)
    assert answers == [200, 200, 200]
    assert server.process.wait(30) is not None
    assert "Waiting for" in server.log or "Shutting down" in server.log


def test_the_worst_request_allowed_leaves_ordinary_latency_within_twice_normal(bundle):
    """Under the default limits: the schema's worst case is refused, and the worst request
    the limits allow completes within the deadline while ordinary requests keep their
    p99 within 2× of what they see alone."""
    catalogue = bundle.catalogue
    uris = catalogue.loc[catalogue["warm"], "track_uri"].tolist()
    schema_worst = {"instances": [{"playlist_name": "w" * 300, "k": 500, "tracks": [
        {"track_name": "t" * 300, "artist_name": "a" * 300} for _ in range(500)]}] * 64}
    allowed_worst = json.dumps({"instances": [{"playlist_name": f"heavy {i}", "k": 78,
                                               "track_uris": uris[:400]} for i in range(64)]})
    assert len(allowed_worst) < 1 << 20  # within the body limit
    with ServerProcess(bundle.folder) as live:
        refused = httpx.post(live.url + PREDICT, json=schema_worst, timeout=60)
        assert refused.status_code in (400, 413), refused.text

        async def ordinary(n: int, concurrency: int) -> list[float]:
            async with httpx.AsyncClient(timeout=60) as client:
                async def one(i: int) -> float:
                    start = time.perf_counter()
                    answer = await client.post(live.url + PREDICT, json={"instances": [
                        {"playlist_name": "", "track_uris": uris[i % 50:i % 50 + 5], "k": 10}]})
                    assert answer.status_code == 200, answer.text
                    return time.perf_counter() - start

                out: list[float] = []
                for start in range(0, n, concurrency):
                    out += await asyncio.gather(*(one(i) for i in range(start,
                                                                         start + concurrency)))
                return out

        async def under_load() -> tuple[list[float], list[float]]:
            stop, heavy = asyncio.Event(), []

            async def hammer():
                async with httpx.AsyncClient(timeout=60) as client:
                    while not stop.is_set():
                        start = time.perf_counter()
                        answer = await client.post(  # encoded once: the client's loop
                            live.url + PREDICT, content=allowed_worst,  # stays free
                            headers={"content-type": "application/json"})
                        assert answer.status_code == 200, answer.text
                        heavy.append(time.perf_counter() - start)

            task = asyncio.create_task(hammer())
            await asyncio.sleep(0.2)
            try:
                return await ordinary(120, 4), heavy
            finally:
                stop.set()
                await task

        asyncio.run(ordinary(40, 4))  # warm-up
        normal, loaded, heavy = [], [], []
        for _ in range(3):  # interleaved, so that a noisy moment falls on both sides
            normal += asyncio.run(ordinary(120, 4))
            beside, slow = asyncio.run(under_load())
            loaded, heavy = loaded + beside, heavy + slow
        alone = np.percentile(normal, 99)
    assert heavy and max(heavy) < 5.0  # within the default deadline
    assert np.percentile(loaded, 99) <= 2 * alone, (
        f"ordinary p50/p99 {np.percentile(loaded, [50, 99])} s beside the heavy request, "
        f"{np.percentile(normal, [50, 99])} s alone")
