"""A closed-loop HTTP load generator light enough to share 2 cores with the server it tests.

``drive(url, bodies, concurrency, seconds)`` keeps ``concurrency`` requests in flight for
``seconds`` (or until ``limit`` requests were sent) and returns each successful request's
latency, the error count and the elapsed time. Bodies are JSON-encoded once, up front, and
cycled.

- ``raw`` (the default): one keep-alive HTTP/1.1 connection per in-flight request on
  asyncio streams; each request is pre-encoded bytes, and a response is read by its
  Content-Length (or its chunks). About 0.1 ms of CPU a request.
- ``httpx``: httpx's AsyncClient, as the benchmark used before. At concurrency 64 it
  spends 7 to 9 ms of CPU a request, more than half the server's own cost, and its pool
  delays responses the server has already sent, so on a shared machine it measures itself
  (p99 3.0 s against 0.7 s for ``raw`` on the same server, README).

A connection the server closes (``Connection: close``, a reset) is reopened and the
request counts as an error unless a response was read.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

PREDICT = "/v1/models/llarapp:predict"
Outcome = tuple[list[float], int, float]


def request_bodies(instances: Sequence[dict]) -> list[bytes]:
    """One V1 predict body per instance."""
    return [json.dumps({"instances": [instance]}).encode() for instance in instances]


def raw_requests(url: str, bodies: Sequence[bytes], path: str = PREDICT) -> list[bytes]:
    host = urlsplit(url).netloc
    return [(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
             f"Content-Length: {len(body)}\r\n\r\n").encode() + body for body in bodies]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep-alive) of one HTTP/1.1 response; its body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in
               (line.partition(":") for line in lines[1:] if line)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")  # the empty trailer
    else:
        await reader.readexactly(int(headers.get("content-length", 0)))
    return status, headers.get("connection", "").lower() != "close"


TRANSPORT_ERRORS = (ConnectionError, asyncio.IncompleteReadError, OSError)


async def closed_loop(senders: Sequence[Callable[[int], Awaitable[int]]], seconds: float,
                      limit: int | None) -> Outcome:
    """One worker per sender, each sending request ``i`` (a shared counter) and awaiting
    its status before the next; a transport error counts as an error."""
    stop = math.inf if limit is None else limit
    latencies: list[float] = []
    errors, next_index = 0, 0
    deadline = time.perf_counter() + seconds

    async def worker(send: Callable[[int], Awaitable[int]]) -> None:
        nonlocal errors, next_index
        while time.perf_counter() < deadline and next_index < stop:
            index, next_index = next_index, next_index + 1
            start = time.perf_counter()
            try:
                status = await send(index)
            except TRANSPORT_ERRORS:
                errors += 1
                await asyncio.sleep(0.01)  # a server that is down is not spun on
                continue
            if status == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(send) for send in senders))
    return latencies, errors, time.perf_counter() - start


class RawConnection:
    """One keep-alive connection, (re)opened on demand, sending pre-encoded requests."""

    def __init__(self, url: str, requests: Sequence[bytes]):
        parts = urlsplit(url)
        self.host, self.port, self.requests = parts.hostname, parts.port, requests
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, index: int) -> int:
        try:
            if self.streams is None:
                self.streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self.streams
            writer.write(self.requests[index % len(self.requests)])
            status, keep_alive = await read_response(reader)
        except TRANSPORT_ERRORS:
            self.streams = None
            raise
        if not keep_alive:
            self.close()
        return status

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def drive_raw(url: str, bodies: Sequence[bytes], concurrency: int, seconds: float,
                    limit: int | None = None) -> Outcome:
    requests = raw_requests(url, bodies)
    connections = [RawConnection(url, requests) for _ in range(concurrency)]
    try:
        return await closed_loop([c.send for c in connections], seconds, limit)
    finally:
        for connection in connections:
            connection.close()


async def drive_httpx(url: str, bodies: Sequence[bytes], concurrency: int, seconds: float,
                      limit: int | None = None) -> Outcome:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def send(index: int) -> int:
            answer = await client.post(PREDICT, content=bodies[index % len(bodies)],
                                       headers=headers)
            return answer.status_code

        return await closed_loop([send] * concurrency, seconds, limit)


CLIENTS = {"raw": drive_raw, "httpx": drive_httpx}


def drive(url: str, bodies: Sequence[bytes], concurrency: int, seconds: float,
          client: str = "raw", limit: int | None = None) -> Outcome:
    if client not in CLIENTS:
        raise ValueError(f"unknown load client {client!r}; choose one of {sorted(CLIENTS)}")
    return asyncio.run(CLIENTS[client](url, bodies, concurrency, seconds, limit))
