"""Fast path for clean slices: decode and validate in C with typed msgspec structs.

Most slices are valid. For those, decoding straight into structs checks every required
field and type in one pass and skips building a dict per track. Any slice that does not
match the schema (a missing pid, a track without a URI, a wrong type, an empty MPD
playlist) returns ``None`` here and goes through the lenient record-by-record path in
:mod:`llarapp.data.slices`, which decides what to reject. Both paths give equal results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec

from llarapp.data.mpd import CleanPlaylist, NameCleaner, parse_collaborative

# Non-empty here; surrounding whitespace is checked once per distinct URI (a regex in the
# schema would cost a third of the decode time).
Uri = Annotated[str, msgspec.Meta(min_length=1)]


class Track(msgspec.Struct):
    track_uri: Uri
    track_name: str
    artist_name: str
    album_name: str | None = None
    artist_uri: str | None = None
    album_uri: str | None = None
    duration_ms: int | None = None
    pos: int | None = None


class Playlist(msgspec.Struct):
    pid: int
    tracks: list[Track]
    name: str | None = None
    num_followers: int | None = None
    modified_at: int | None = None
    description: str | None = None
    collaborative: str | bool | None = None
    num_holdouts: int | None = None


class Slice(msgspec.Struct):
    playlists: list[Playlist]
    name: str | None = None


_decoder = msgspec.json.Decoder(Slice)


def decode(payload: bytes) -> Slice | None:
    try:
        return _decoder.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def is_challenge(document: Slice) -> bool:
    return document.name == "challenge_set" or (
        bool(document.playlists) and document.playlists[0].num_holdouts is not None)


def fits_fast_path(document: Slice, challenge: bool) -> bool:
    """MPD playlists need a name and at least one track; the careful path rejects others."""
    return challenge or all(p.name is not None and p.tracks for p in document.playlists)


@dataclass
class FastResult:
    playlists: list[CleanPlaylist]
    local: dict[str, int]
    rows: list[tuple]
    track_ids: list[int]
    lengths: list[int]


def clean_playlists(document: Slice, clean: NameCleaner) -> FastResult | None:
    """Same output as the careful path; ``None`` when a URI needs stripping."""
    playlists: list[CleanPlaylist] = []
    local: dict[str, int] = {}
    rows: list[tuple] = []
    track_ids: list[int] = []
    lengths: list[int] = []
    memo = clean.memo
    for raw in document.playlists:
        tracks = raw.tracks
        positions = [t.pos for t in tracks]
        if None not in positions and positions != sorted(positions):
            tracks = [tracks[i] for i in sorted(range(len(tracks)),
                                                key=positions.__getitem__)]
        seen: set[str] = set()
        for track in tracks:
            uri = track.track_uri
            if uri in seen:
                continue
            seen.add(uri)
            idx = local.get(uri)
            if idx is None:
                if uri[0].isspace() or uri[-1].isspace():
                    return None
                idx = local[uri] = len(rows)
                album = track.album_name
                title, artist = track.track_name, track.artist_name
                rows.append((uri, memo.get(title) or clean(title),
                             memo.get(artist) or clean(artist),
                             None if album is None else memo.get(album) or clean(album),
                             track.artist_uri, track.album_uri, track.duration_ms))
            track_ids.append(idx)
        lengths.append(len(seen))
        fields = {
            "num_followers": raw.num_followers,
            "modified_at": raw.modified_at,
            "description": clean(raw.description) if raw.description is not None else None,
            "collaborative": parse_collaborative(raw.collaborative),
            "num_holdouts": raw.num_holdouts,
        }
        name = clean(raw.name) if raw.name is not None else None
        playlists.append(CleanPlaylist(raw.pid, name, fields, [], [], [],
                                       len(raw.tracks) - len(seen)))
    return FastResult(playlists, local, rows, track_ids, lengths)
