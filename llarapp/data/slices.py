"""Read one MPD slice: fetch, decompress, parse, validate and clean it.

This is the unit of work that ingest hands to worker processes. Its result is compact and
picklable: the playlists as track-URI lists, plus one cleaned catalogue row per unique
track of the slice.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from llarapp.data import fastpath
from llarapp.data.mpd import (
    FIXES,
    CleanPlaylist,
    NameCleaner,
    Rejection,
    clean_playlist,
    track_row,
)
from llarapp.errors import DataValidationError
from llarapp.storage import parse_uri, read_bytes

# One per process: names recur across slices, so the memo pays off beyond one slice.
_CLEANER = NameCleaner()


@dataclass
class SliceResult:
    """One slice, cleaned. Tracks are numbered locally: ``track_ids`` indexes ``uris`` and
    ``rows``, and holds every playlist's tracks back to back (``lengths`` apart)."""

    uri: str
    name: str
    sha256: str
    size: int
    playlists: list[CleanPlaylist] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    rejections: list[Rejection] = field(default_factory=list)
    challenge: bool = False
    error: str | None = None


def decompress(uri: str, payload: bytes) -> bytes:
    if not uri.endswith(".gz"):
        return payload
    try:
        return gzip.decompress(payload)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataValidationError(
            f"not a valid gzip file (truncated or corrupt): {exc}", file=uri,
            fix="re-download or re-compress the slice",
        ) from exc


def parse_document(uri: str, text: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise DataValidationError(
            f"not valid JSON (truncated or corrupt): {exc}", file=uri,
            fix="re-download or re-export the slice; each file must be one complete JSON object",
        ) from exc
    if not isinstance(document, dict) or not isinstance(document.get("playlists"), list):
        raise DataValidationError(
            "no 'playlists' list", file=uri, field="playlists",
            fix="an MPD slice is an object with 'info' and a 'playlists' list",
        )
    return document


def strict_error(rejection: Rejection, file: str) -> DataValidationError:
    where = f" (track #{rejection.track_index})" if rejection.track_index is not None else ""
    return DataValidationError(
        f"invalid record: {rejection.reason}{where}", file=file, pid=rejection.pid,
        field=rejection.field,
        fix=FIXES.get(rejection.field, "fix the record")
        + "; or ingest without --strict to skip invalid records",
    )


def read_slice(uri: str, strict: bool = False) -> SliceResult:
    """Process one slice. In strict mode the first invalid record raises."""
    payload = read_bytes(uri)
    result = SliceResult(uri, parse_uri(uri).key.rsplit("/", 1)[-1],
                         hashlib.sha256(payload).hexdigest(), len(payload))
    clean = _CLEANER
    local: dict[str, int] = {}
    track_ids: list[int] = []
    lengths: list[int] = []
    try:
        text = decompress(uri, payload)
        del payload
        fast = fastpath.decode(text)
        if fast is not None:
            result.challenge = fastpath.is_challenge(fast)
            cleaned = (fastpath.clean_playlists(fast, clean)
                       if fastpath.fits_fast_path(fast, result.challenge) else None)
            if cleaned is not None:
                result.playlists, result.rows = cleaned.playlists, cleaned.rows
                return _finish(result, cleaned.local, cleaned.track_ids, cleaned.lengths)
        document = parse_document(uri, text)
    except DataValidationError as exc:
        if strict:
            raise
        result.error = str(exc)
        return result
    raw_playlists = document["playlists"]
    result.challenge = document.get("name") == "challenge_set" or any(
        isinstance(p, dict) and "num_holdouts" in p for p in raw_playlists[:1])
    for raw in raw_playlists:
        playlist = clean_playlist(raw, clean, challenge=result.challenge)
        if isinstance(playlist, Rejection):
            if strict:
                raise strict_error(playlist, uri)
            result.rejections.append(playlist)
            continue
        if strict and playlist.rejections:
            raise strict_error(playlist.rejections[0], uri)
        for uri_key, track in zip(playlist.uris, playlist.tracks, strict=True):
            idx = local.get(uri_key)
            if idx is None:
                idx = local[uri_key] = len(result.rows)
                result.rows.append(track_row(track, clean))
            track_ids.append(idx)
        lengths.append(len(playlist.uris))
        playlist.uris, playlist.tracks = [], []  # held by the arrays; keeps the result small
        result.playlists.append(playlist)
    return _finish(result, local, track_ids, lengths)


def _finish(result: SliceResult, local: dict[str, int], track_ids: list[int],
            lengths: list[int]) -> SliceResult:
    result.uris = list(local)
    result.track_ids = np.asarray(track_ids, dtype=np.int32)
    result.lengths = np.asarray(lengths, dtype=np.int32)
    return result
