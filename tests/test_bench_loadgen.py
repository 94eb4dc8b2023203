"""The serving benchmark's load generator against a scripted HTTP/1.1 server: it sends the
bodies it was given, reads each response however it is framed, and counts errors."""

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from loadgen import CLIENTS, PREDICT, drive, request_bodies  # noqa: E402

OK = b'{"predictions": []}'


def length_framed(status: int, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return (b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
            % (status, extra, len(OK), OK))


CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\n" + OK[:5] + b"\r\n" + b"%x\r\n" % (len(OK) - 5) + OK[5:] + b"\r\n0\r\n\r\n")

# (response, closes the connection after it, expects errors only)
SERVERS = {
    "content-length": (length_framed(200), False, False),
    "chunked": (CHUNKED, False, False),
    "connection-close": (length_framed(200, close=True), True, False),
    "429": (length_framed(429), False, True),
    "reset": (b"", True, True),
}


async def scripted_run(client: str, response: bytes, closes: bool, concurrency: int,
                       limit: int | None = None):
    received: list[bytes] = []

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(f"POST {PREDICT} HTTP/1.1".encode())
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                received.append(await reader.readexactly(length))
                writer.write(response)
                await writer.drain()
                if closes:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bodies = request_bodies([{"playlist_name": f"p{i}"} for i in range(3)])
    async with server:
        outcome = await CLIENTS[client](f"http://127.0.0.1:{port}", bodies, concurrency, 0.3,
                                        limit)
    return outcome, received, bodies


@pytest.mark.parametrize("name", list(SERVERS))
def test_raw_client_reads_every_framing_and_counts_errors(name):
    response, closes, failing = SERVERS[name]
    (latencies, errors, elapsed), received, bodies = asyncio.run(
        scripted_run("raw", response, closes, concurrency=4))
    assert 0.3 <= elapsed < 5
    assert set(received) == set(bodies)  # every body went out, and nothing else
    assert json.loads(bodies[1]) == {"instances": [{"playlist_name": "p1"}]}
    if failing:
        assert latencies == [] and errors >= len(received)
    else:
        assert errors == 0 and len(latencies) == len(received)
        assert all(0 < latency < 1 for latency in latencies)


def test_httpx_client_counts_the_same_way():
    (latencies, errors, _), received, _ = asyncio.run(
        scripted_run("httpx", length_framed(429), False, concurrency=2))
    assert latencies == [] and errors == len(received) > 0


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_a_limit_sends_exactly_that_many_requests(client):
    (latencies, errors, _), received, bodies = asyncio.run(
        scripted_run(client, length_framed(200), False, concurrency=3, limit=7))
    assert len(received) == len(latencies) == 7 and errors == 0
    assert received.count(bodies[0]) == 3  # cycled in order: 0 1 2 0 1 2 0


def test_unknown_client_names_the_choices():
    with pytest.raises(ValueError, match="choose one of \\['httpx', 'raw'\\]"):
        drive("http://127.0.0.1:1", [b"{}"], 1, 0.1, client="curl")
