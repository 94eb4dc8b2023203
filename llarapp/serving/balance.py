"""Keep-alive connections spread evenly over the worker processes.

The kernel hashes each new connection to one worker's ``SO_REUSEPORT`` socket and it stays
there for as long as it lives. 16 keep-alive connections on two workers landed 8/8 in 4
of 30 tries on this VM, and 5/11 or worse in 6. The worker holding more runs bigger
batches, and its requests wait longer, for as long as the connections live. So:

1. The parent creates a :class:`ConnectionBoard`, one counter slot per worker in a small
   shared file, and tells each worker its slot (``LLARAPP_CONNECTION_BOARD``,
   ``LLARAPP_WORKER_SLOT``).
2. A worker publishes how many connections it holds (uvicorn's own set of open
   connections) each time it starts a response.
3. A worker that holds more than its fair share, ``ceil(total / workers)``, answers that
   response with ``Connection: close``. The client opens a new connection, and the kernel
   hashes it afresh. A worker at or under its share never closes one.
4. A connection being closed stays in uvicorn's set until the event loop has run its
   ``connection_lost``, and a batch answers all its requests before that. So a worker
   compares the connections it is not closing with its share (the total still counts the
   closing ones, whose clients will reconnect): otherwise every response of a batch
   would close one, and the reconnections would unbalance the split again.

gRPC's and Envoy's maximum connection age rebalance the same way, but on a timer,
whether or not the load is uneven.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from collections.abc import Callable
from pathlib import Path

BOARD_VARIABLE = "LLARAPP_CONNECTION_BOARD"
SLOT_VARIABLE = "LLARAPP_WORKER_SLOT"
_SLOT = struct.Struct("<q")


class ConnectionBoard:
    """``workers`` int64 counters in a shared file; a worker writes only its own slot."""

    def __init__(self, path: Path, workers: int):
        self.workers = workers
        with Path(path).open("r+b") as handle:
            self._map = mmap.mmap(handle.fileno(), workers * _SLOT.size)

    @classmethod
    def create(cls, path: Path, workers: int) -> ConnectionBoard:
        Path(path).write_bytes(bytes(workers * _SLOT.size))
        return cls(path, workers)

    @classmethod
    def from_environment(cls) -> tuple[ConnectionBoard, int] | None:
        """(board, this worker's slot), or None in a server without worker processes."""
        path, slot = os.environ.get(BOARD_VARIABLE), os.environ.get(SLOT_VARIABLE)
        if not path or slot is None:
            return None
        workers = Path(path).stat().st_size // _SLOT.size
        return cls(Path(path), workers), int(slot)

    def publish(self, slot: int, connections: int) -> None:
        _SLOT.pack_into(self._map, slot * _SLOT.size, connections)

    def counts(self) -> list[int]:
        return [_SLOT.unpack_from(self._map, i * _SLOT.size)[0] for i in range(self.workers)]

    def over_share(self, slot: int, connections: int, closing: int = 0) -> bool:
        """Publish ``connections`` for ``slot``; whether those not ``closing`` are more than
        a fair share. Closing ones count in the total: their clients will reconnect."""
        self.publish(slot, connections)
        return connections - closing > math.ceil(sum(self.counts()) / self.workers)


class ConnectionBalance:
    """ASGI middleware: ``Connection: close`` on a response from a worker over its share.

    ``open_connections`` gives the client addresses of this worker's open connections
    (uvicorn's server state). Streaming and error responses are handled alike: only the
    headers of the response start change."""

    def __init__(self, app, board: ConnectionBoard, slot: int,
                 open_connections: Callable[[], set[tuple]]):
        self.app, self.board, self.slot = app, board, slot
        self.open_connections = open_connections
        self.closing: set[tuple] = set()  # answered with a close, not yet gone

    def should_close(self, client: tuple | None) -> bool:
        live = self.open_connections()
        self.closing &= live
        if (not self.board.over_share(self.slot, len(live), len(self.closing))
                or client is None or client in self.closing):
            return False
        self.closing.add(client)
        return True

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def start_response(message):
            if message["type"] == "http.response.start" and self.should_close(
                    scope.get("client")):
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"connection", b"close")]}
            await send(message)

        return await self.app(scope, receive, start_response)
