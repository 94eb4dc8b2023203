"""What one client may ask of the server, and the typed errors that say no.

Each limit answers before the work it guards: the body size before the body is read
(413), the request's cost before anything is queued (400), the queue's length before a
request joins it (429 with ``Retry-After``), and the deadline while it waits or runs (504).
:mod:`llarapp.serving.http` maps each error to its status code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from llarapp.errors import InvalidRequestError, LlaraError

CONTROL_TOKEN_VARIABLE = "LLARAPP_CONTROL_TOKEN"  # model load/unload over HTTP: off if unset


class BodyTooLarge(LlaraError):
    """413: the body is larger than ``max_body_bytes``."""

    status = 413

    def __init__(self, size: int | None, limit: int):
        seen = f"{size} bytes" if size is not None else "more than that"
        super().__init__(f"the request body may be at most {limit} bytes, got {seen}; send "
                         "fewer instances per request (or raise --max_body_bytes)")


class Overloaded(LlaraError):
    """429: the batch queue is full; retry after ``retry_after`` seconds."""

    status = 429

    def __init__(self, queued: int, limit: int, retry_after: int):
        super().__init__(f"the server is at capacity ({queued} of at most {limit} "
                         f"instances waiting); retry after {retry_after} s")
        self.retry_after = retry_after


class DeadlineExceeded(LlaraError):
    """504: the request was not answered within ``deadline_ms``."""

    status = 504

    def __init__(self, deadline_ms: float):
        super().__init__(f"no answer within the server's deadline of {deadline_ms:.0f} ms; "
                         "retry later, or send fewer instances per request")


class ControlRefused(LlaraError):
    """403 when model control over HTTP is off, 401 when the token is missing or wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Costed(Protocol):
    playlist_name: str
    tracks: Sequence[object]
    k: int


def check_cost(instances: Sequence[Costed], max_texts: int, max_recommendations: int) -> None:
    """Refuse (400, naming the limit) a request that would encode more than ``max_texts``
    texts (titles and tracks sent with metadata) or return more than
    ``max_recommendations`` rows (instances × k)."""
    texts = sum(bool(i.playlist_name) + len(i.tracks) for i in instances)
    if texts > max_texts:
        raise InvalidRequestError(
            f"this request has {texts} texts to encode (playlist names plus tracks sent with "
            f"metadata) but one request may have at most {max_texts}; split it into several "
            "requests, or send known tracks by track_uris", field="instances")
    rows = sum(i.k for i in instances)
    if rows > max_recommendations:
        raise InvalidRequestError(
            f"this request asks for {rows} recommendations in all (the sum of k over its "
            f"instances) but one request may ask for at most {max_recommendations}; lower k "
            "or split the request", field="instances")
