"""Validate and clean MPD playlist records, one at a time.

A record is one playlist object from an MPD slice (``mpd.slice.*.json``) or from the
RecSys Challenge 2018 ``challenge_set.json``. Cleaning normalises names (Unicode NFKC,
collapsed whitespace), orders tracks by ``pos``, drops duplicate tracks within a playlist
and turns missing or mistyped optional fields into nulls.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

FIXES = {
    "pid": "give every playlist an integer 'pid'",
    "name": "give every playlist a string 'name' (the playlist title)",
    "tracks": "'tracks' must be a list of track objects",
    "track": "each entry of 'tracks' must be an object",
    "track_uri": "each track needs a non-empty string 'track_uri' (spotify:track:...)",
    "track_name": "each track needs a string 'track_name'",
    "artist_name": "each track needs a string 'artist_name'",
    "playlist": "each entry of 'playlists' must be an object",
    "empty": "an MPD playlist needs at least one valid track",
}


@dataclass(frozen=True)
class Rejection:
    reason: str
    field: str
    pid: Any = None
    track_index: int | None = None

    def as_dict(self, file: str) -> dict[str, Any]:
        record = {"file": file, "pid": self.pid, "field": self.field, "reason": self.reason}
        if self.track_index is not None:
            record["track_index"] = self.track_index
        return record


@dataclass
class CleanPlaylist:
    """A valid playlist: ``uris`` in play order, unique, with their raw track objects."""

    pid: int
    name: str | None
    fields: dict[str, Any]
    uris: list[str]
    tracks: list[dict[str, Any]]
    rejections: list[Rejection] = field(default_factory=list)
    duplicate_tracks: int = 0


class NameCleaner:
    """NFKC + whitespace collapse, memoised: the same artist and track names recur often."""

    def __init__(self) -> None:
        self.memo: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        cleaned = self.memo.get(text)
        if cleaned is None:
            if text.isascii():  # NFKC is the identity on ASCII; skip the costly call
                cleaned = " ".join(text.split())
            else:
                cleaned = " ".join(unicodedata.normalize("NFKC", text).split())
            self.memo[text] = cleaned
        return cleaned


def _optional(value: Any, kind: type) -> Any:
    return value if type(value) is kind else None


def parse_collaborative(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def track_row(track: dict[str, Any], clean: NameCleaner) -> tuple:
    """The cleaned catalogue row of a validated track, in ``TRACK_COLUMNS`` order."""
    album = track.get("album_name")
    return (
        track["track_uri"].strip(),
        clean(track["track_name"]),
        clean(track["artist_name"]),
        clean(album) if type(album) is str else None,
        _optional(track.get("artist_uri"), str),
        _optional(track.get("album_uri"), str),
        _optional(track.get("duration_ms"), int),
    )


TRACK_COLUMNS = ("track_uri", "track_name", "artist_name", "album_name", "artist_uri",
                 "album_uri", "duration_ms")


def clean_playlist(raw: Any, clean: NameCleaner, *, challenge: bool = False
                   ) -> CleanPlaylist | Rejection:
    """Return the cleaned playlist, or the reason the whole record is rejected.

    Invalid tracks inside a valid playlist are dropped and listed in ``rejections``.
    In the challenge format a playlist may lack a name and have no tracks. Track metadata
    is only type-checked here; :func:`track_row` normalises it once per unique track.
    """
    if type(raw) is not dict:
        return Rejection("playlist is not an object", "playlist")
    pid = raw.get("pid")
    if type(pid) is not int:
        return Rejection("missing or non-integer pid", "pid", pid)
    name = raw.get("name")
    if type(name) is str:
        name = clean(name)
    elif name is not None or not challenge:
        return Rejection("missing or non-string name", "name", pid)
    tracks = raw.get("tracks")
    if type(tracks) is not list:
        return Rejection(f"tracks is {type(tracks).__name__}, not a list", "tracks", pid)

    rejections: list[Rejection] = []
    kept: list[dict[str, Any]] = []
    uris: list[str] = []
    positions: list[Any] = []
    seen: set[str] = set()
    for index, track in enumerate(tracks):
        if type(track) is not dict:
            rejections.append(Rejection("track is not an object", "track", pid, index))
            continue
        uri = track.get("track_uri")
        if type(uri) is not str or not (uri := uri.strip()):
            rejections.append(Rejection("missing or empty track_uri", "track_uri", pid, index))
            continue
        if type(track.get("track_name")) is not str:
            rejections.append(Rejection("missing track_name", "track_name", pid, index))
            continue
        if type(track.get("artist_name")) is not str:
            rejections.append(Rejection("missing artist_name", "artist_name", pid, index))
            continue
        if uri in seen:
            continue
        seen.add(uri)
        uris.append(uri)
        kept.append(track)
        positions.append(track.get("pos"))
    if all(type(p) is int for p in positions) and positions != sorted(positions):
        order = sorted(range(len(positions)), key=positions.__getitem__)
        uris, kept = [uris[i] for i in order], [kept[i] for i in order]
    if not kept and not challenge:
        return Rejection("playlist has no valid tracks", "empty", pid)
    description = raw.get("description")
    fields = {
        "num_followers": _optional(raw.get("num_followers"), int),
        "modified_at": _optional(raw.get("modified_at"), int),
        "description": clean(description) if type(description) is str else None,
        "collaborative": parse_collaborative(raw.get("collaborative")),
        "num_holdouts": _optional(raw.get("num_holdouts"), int),
    }
    valid = len(tracks) - len(rejections)
    return CleanPlaylist(pid, name, fields, uris, kept, rejections, valid - len(kept))
