"""Playlists to recommend for: every playlist of an MPD slice or a challenge set, read
from a file or a folder of ``*.json``/``*.json.gz``, local or ``s3://``.

Each record is cleaned as ingest cleans it (:func:`llarapp.data.mpd.clean_playlist`, the
challenge form allowed: no name, no tracks). Its tracks become the request's seeds, by URI
and with their metadata, so a track the bundle's catalogue lacks takes serving's
cold-start path. With ``holdout_last`` N the last N tracks are held out as targets.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from llarapp.data.ingest import IngestConfig, discover_sources
from llarapp.data.mpd import NameCleaner, Rejection, clean_playlist
from llarapp.data.slices import decompress, parse_document
from llarapp.errors import DataValidationError
from llarapp.serving.engine import Request, TrackMeta
from llarapp.storage import read_bytes


@dataclass
class InputPlaylist:
    pid: int
    name: str
    seeds: list[TrackMeta]
    targets: list[str] = field(default_factory=list)

    def request(self, k: int) -> Request:
        return Request(self.name, [t.track_uri for t in self.seeds], k, True, list(self.seeds))


def raw_playlists(uri: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file, record) for every playlist record, files found as ingest finds slices."""
    for file in discover_sources(IngestConfig(input=str(uri))):
        document = parse_document(file, decompress(file, read_bytes(file)))
        for raw in document["playlists"]:
            yield file, raw


def with_targets(playlists: list[InputPlaylist], uri: str) -> list[InputPlaylist]:
    """Targets from the full playlists in ``uri`` (MPD records, matched by pid): each
    playlist's tracks that are not among its seeds, in order. A pid absent there has none,
    so it is recommended for but not scored."""
    full = {p.pid: [t.track_uri for t in p.seeds] for p in read_playlists(uri)}
    out = []
    for playlist in playlists:
        seeds = {t.track_uri for t in playlist.seeds}
        out.append(replace(playlist, targets=[u for u in full.get(playlist.pid, [])
                                              if u not in seeds]))
    return out


def read_playlists(uri: str, holdout_last: int = 0) -> list[InputPlaylist]:
    return playlists_from(raw_playlists(uri), holdout_last)


def playlists_from(records: Iterable[tuple[str, dict[str, Any]]], holdout_last: int = 0
                   ) -> list[InputPlaylist]:
    """(file, record) pairs cleaned and checked: an invalid record or a repeated pid is an
    error naming the file."""
    clean = NameCleaner()
    out: list[InputPlaylist] = []
    seen: set[int] = set()
    for file, raw in records:
        playlist = clean_playlist(raw, clean, challenge=True)
        if isinstance(playlist, Rejection):
            raise DataValidationError(f"invalid playlist: {playlist.reason}", file=file,
                                      pid=playlist.pid, field=playlist.field,
                                      fix="fix the record; recommend skips none")
        if playlist.pid in seen:
            raise DataValidationError(f"pid {playlist.pid} appears twice", file=file,
                                      pid=playlist.pid, field="pid",
                                      fix="give every playlist its own pid")
        seen.add(playlist.pid)
        tracks = [TrackMeta(clean(t["track_name"]), clean(t["artist_name"]),
                            clean(t.get("album_name") or ""), uri_)
                  for t, uri_ in zip(playlist.tracks, playlist.uris, strict=True)]
        cut = max(len(tracks) - holdout_last, 0)
        out.append(InputPlaylist(playlist.pid, playlist.name or "", tracks[:cut],
                                 [t.track_uri for t in tracks[cut:]]))
    return out
