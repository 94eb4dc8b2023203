"""Keep-alive connections evened out over worker processes (llarapp.serving.balance)."""

from __future__ import annotations

import asyncio

import pytest

from llarapp.serving.balance import (
    BOARD_VARIABLE,
    SLOT_VARIABLE,
    ConnectionBalance,
    ConnectionBoard,
)


@pytest.mark.parametrize("counts, slot, held, over", [
    ([0, 0], 0, 1, False),      # the first connection anywhere
    ([8, 8], 0, 8, False),      # an even split stays
    ([8, 7], 0, 9, True),       # 16 in all: one over the fair 8
    ([8, 9], 0, 7, False),      # the other worker is over, not this one
    ([8, 7], 0, 8, False),      # 15 in all: ceil(7.5) = 8 is a fair share
    ([12, 4], 1, 4, False),     # the under-loaded worker never closes
    ([4, 4, 0], 2, 6, True),    # three workers, 14 in all: the share is 5
    ([5, 5, 0], 2, 5, False),   # 15 in all: exactly the share
])
def test_a_worker_is_over_its_share_only_above_the_ceiling_of_the_mean(
        tmp_path, counts, slot, held, over):
    board = ConnectionBoard.create(tmp_path / "board", len(counts))
    for i, count in enumerate(counts):
        board.publish(i, count)
    assert board.over_share(slot, held) is over
    assert board.counts()[slot] == held  # the check publishes this worker's count


def test_workers_see_each_others_counts_through_the_file(tmp_path, monkeypatch):
    path = tmp_path / "board"
    ConnectionBoard.create(path, 2).publish(1, 5)
    monkeypatch.setenv(BOARD_VARIABLE, str(path))
    monkeypatch.setenv(SLOT_VARIABLE, "0")
    board, slot = ConnectionBoard.from_environment()
    assert (board.workers, slot, board.counts()) == (2, 0, [0, 5])
    monkeypatch.delenv(SLOT_VARIABLE)
    assert ConnectionBoard.from_environment() is None  # a single-process server


def clients(n: int) -> set[tuple]:
    return {("127.0.0.1", 40000 + i) for i in range(n)}


def respond(middleware: ConnectionBalance, client: tuple) -> list[dict]:
    """The messages the wrapped app sends for one request on ``client``'s connection."""
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    asyncio.run(middleware({"type": "http", "client": client}, None, send))
    return sent


async def json_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.parametrize("other, held, closes", [(8, 8, False), (7, 9, True), (10, 6, False)])
def test_a_response_from_a_worker_over_its_share_closes_its_connection(
        tmp_path, other, held, closes):
    board = ConnectionBoard.create(tmp_path / "board", 2)
    board.publish(1, other)
    live = clients(held)
    start, body = respond(ConnectionBalance(json_app, board, 0, lambda: live), min(live))
    assert ((b"connection", b"close") in start["headers"]) is closes
    assert (b"content-type", b"application/json") in start["headers"]
    assert body == {"type": "http.response.body", "body": b"{}"}
    assert board.counts()[0] == held  # published as held until its connection is gone


def test_a_batch_of_responses_closes_only_the_excess(tmp_path):
    """A batch answers all its requests before any closed connection has left uvicorn's
    set: with 10 against 6, two of the batch's connections close, not all ten, and once
    they have moved nothing more closes."""
    board = ConnectionBoard.create(tmp_path / "board", 2)
    board.publish(1, 6)
    live = clients(10)
    middleware = ConnectionBalance(json_app, board, 0, lambda: live)
    closed = [client for client in sorted(live)
              if (b"connection", b"close") in respond(middleware, client)[0]["headers"]]
    assert len(closed) == 2 and board.counts() == [10, 6]
    live -= set(closed)  # the loop has run their connection_lost,
    board.publish(1, 8)  # and their clients reconnected to the other worker
    assert not any((b"connection", b"close") in respond(middleware, c)[0]["headers"]
                   for c in sorted(live))
    assert middleware.closing == set() and board.counts() == [8, 8]
