"""``llarapp simulate``: replay held-out playlists against a live server, score each answer.

Requests go out concurrently (optionally at a fixed rate) to the V1 ``:predict`` route of
a local server or, through the ingress with ``host_header``, of an InferenceService. Each
answer says which ``model_version`` produced it, so under a canary split the scores come
out per version: the A/B view. With ``pushgateway`` set, the running counts are pushed as
``llarapp_online_requests_total`` / ``llarapp_online_hits_total`` by model version, which
``llarapp rollout auto`` reads as the online hit rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd
from prometheus_client import CollectorRegistry, Counter, push_to_gateway
from tqdm import tqdm

from llarapp.config import StageConfig, require
from llarapp.errors import DeployError
from llarapp.online.replay import Replay

ERROR_VERSION = "<error>"  # model_version of a failed request


@dataclass
class SimulateConfig(StageConfig):
    url: str = "http://127.0.0.1:8080"
    model_name: str = "llarapp"
    host_header: str = ""  # the InferenceService's host, when url is the cluster ingress
    split: str = "test"
    limit: int = 500  # playlists to replay; 0: all
    k: int = 10
    concurrency: int = 8
    rate: float = 0.0  # requests per second; 0: as fast as the server answers
    timeout_s: float = 60.0
    seed: int = 0
    pushgateway: str = ""  # e.g. http://pushgateway.monitoring:9091
    push_namespace: str = "llarapp"  # the namespace label rollout auto filters on
    push_interval_s: float = 10.0

    def validate(self) -> None:
        require(self.url.startswith(("http://", "https://")),
                f"url must be http(s)://HOST:PORT of the model server, got {self.url!r}")
        require(self.limit >= 0, "limit must be >= 0 (0 replays every held-out playlist)")
        require(1 <= self.k <= 500, "k must be in 1..500 (the server's limit)")
        require(self.concurrency >= 1, "concurrency must be at least 1")
        require(self.rate >= 0, "rate must be >= 0 (0: no pacing)")
        require(self.timeout_s > 0 and self.push_interval_s > 0,
                "timeout_s and push_interval_s must be positive")

    @property
    def predict_path(self) -> str:
        return f"/v1/models/{self.model_name}:predict"

    @property
    def headers(self) -> dict[str, str]:
        return {"Host": self.host_header} if self.host_header else {}


class OnlineCounters:
    """The online hit counts by model version, in their own registry for the Pushgateway."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("llarapp_online_requests", "Replayed requests answered",
                                ["model_version"], registry=self.registry)
        self.hits = Counter("llarapp_online_hits",
                            "Answers with at least one held-out track in the top k",
                            ["model_version"], registry=self.registry)

    def count(self, version: str, hit: bool) -> None:
        self.requests.labels(version).inc()
        if hit:
            self.hits.labels(version).inc()

    def push(self, gateway: str, namespace: str) -> None:
        try:
            push_to_gateway(gateway, job="llarapp-simulate", registry=self.registry,
                            grouping_key={"namespace": namespace}, timeout=10)
        except OSError as exc:
            raise DeployError(f"cannot push to the Pushgateway at {gateway} ({exc}); check "
                              "the address or leave pushgateway empty") from exc


def _row(replay: Replay, status: int, seconds: float, body: Any) -> dict[str, Any]:
    row = {"pid": replay.pid, "category": replay.category, "status": status,
           "latency_ms": seconds * 1000, "model_version": ERROR_VERSION, "cold_start": "",
           "recommended": [], "targets": replay.targets}
    if status == 200:
        prediction = body["predictions"][0]
        row |= {"model_version": prediction["model_version"],
                "cold_start": prediction["cold_start"],
                "recommended": [r["track_uri"] for r in prediction["recommendations"]]}
    return row


async def _replay_all(cfg: SimulateConfig, replays: Sequence[Replay],
                      counters: OnlineCounters) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    queue: asyncio.Queue[Replay] = asyncio.Queue()
    for replay in replays:
        queue.put_nowait(replay)
    limits = httpx.Limits(max_connections=cfg.concurrency)
    progress = tqdm(total=len(replays), desc="replaying", unit="req", leave=False)
    start = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            replay = queue.get_nowait()
            if cfg.rate:  # request i leaves no earlier than i / rate seconds in
                due = start + (len(replays) - queue.qsize() - 1) / cfg.rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            sent = time.perf_counter()
            try:
                answer = await client.post(cfg.predict_path, json={"instances": [replay.instance]})
                row = _row(replay, answer.status_code, time.perf_counter() - sent,
                           answer.json() if answer.status_code == 200 else None)
            except httpx.TransportError:
                row = _row(replay, 0, time.perf_counter() - sent, None)
            if row["status"] == 200:
                counters.count(row["model_version"],
                               bool(set(row["recommended"]) & set(replay.targets)))
            rows.append(row)
            progress.update()

    async def pusher() -> None:
        while True:
            await asyncio.sleep(cfg.push_interval_s)
            await asyncio.to_thread(counters.push, cfg.pushgateway, cfg.push_namespace)

    async with httpx.AsyncClient(base_url=cfg.url, headers=cfg.headers, limits=limits,
                                 timeout=cfg.timeout_s) as client:
        background = asyncio.create_task(pusher()) if cfg.pushgateway else None
        try:
            await asyncio.gather(*(worker(client) for _ in range(cfg.concurrency)))
        finally:
            if background:
                background.cancel()
            progress.close()
    if cfg.pushgateway:
        counters.push(cfg.pushgateway, cfg.push_namespace)
    return rows


def check_server(cfg: SimulateConfig) -> None:
    """Fail fast, naming the fix, when the server is down or the model not ready."""
    try:
        answer = httpx.get(f"{cfg.url}/v1/models/{cfg.model_name}", headers=cfg.headers, timeout=10)
    except httpx.TransportError as exc:
        raise DeployError(f"no model server at {cfg.url} ({exc}); start one with `make serve` "
                          "or pass --url") from exc
    if answer.status_code != 200:
        raise DeployError(f"model {cfg.model_name!r} at {cfg.url} is not ready (HTTP "
                          f"{answer.status_code}: {answer.text[:200]}); wait for readiness or "
                          "check --model-name")


def simulate(cfg: SimulateConfig, replays: Sequence[Replay]) -> pd.DataFrame:
    """One row per replayed playlist: version, status, latency, recommended and targets."""
    check_server(cfg)
    rows = asyncio.run(_replay_all(cfg, replays, OnlineCounters()))
    return pd.DataFrame(rows)
