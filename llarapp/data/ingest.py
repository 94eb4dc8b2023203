"""Ingest MPD slices into versioned Parquet tables.

Reads ``*.json`` / ``*.json.gz`` slices (MPD or challenge-set format) from a folder or an
``s3://`` prefix. Slices are parsed and cleaned by worker processes, at most
``workers + 1`` in flight, so memory is bounded by a few slices plus the track dictionary.
Writes ``playlists``, ``tracks`` and ``interactions`` Parquet tables and a manifest with
counts, a content hash of the inputs, the sources and the rejected records.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import multiprocessing
import os
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from llarapp.config import StageConfig, require
from llarapp.data import lyrics as lyrics_join
from llarapp.data.mpd import TRACK_COLUMNS, Rejection
from llarapp.data.slices import SliceResult, read_slice, strict_error
from llarapp.errors import DataValidationError
from llarapp.manifest import write_manifest
from llarapp.storage import atomic_dir, list_uris

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_LISTED_REJECTIONS = 1000

PLAYLISTS_SCHEMA = pa.schema([
    ("pid", pa.int64()), ("name", pa.string()), ("num_tracks", pa.int32()),
    ("num_followers", pa.int64()), ("modified_at", pa.int64()), ("description", pa.string()),
    ("collaborative", pa.bool_()), ("num_holdouts", pa.int32()), ("source", pa.string()),
])
INTERACTIONS_SCHEMA = pa.schema([
    ("pid", pa.int64()), ("track_idx", pa.int32()), ("pos", pa.int32()),
])
TRACKS_SCHEMA = pa.schema([
    ("track_idx", pa.int32()), ("track_uri", pa.string()), ("track_name", pa.string()),
    ("artist_name", pa.string()), ("album_name", pa.string()), ("artist_uri", pa.string()),
    ("album_uri", pa.string()), ("duration_ms", pa.int64()), ("num_playlists", pa.int32()),
    ("lyrics", pa.string()),
])


@dataclass
class IngestConfig(StageConfig):
    input: str = ""
    strict: bool = False
    include: list[str] = field(default_factory=lambda: ["*.json", "*.json.gz"])
    exclude: list[str] = field(default_factory=lambda: ["manifest.json", "*.manifest.json"])
    lyrics: str = "auto"  # a CSV path/URI, "auto" (lyrics.csv beside the slices) or "none"
    workers: int = 0  # slice-parsing processes; 0 = one per core, at most 4

    def validate(self) -> None:
        require(bool(self.include), "include needs at least one file pattern")
        require(self.workers >= 0, "workers must be >= 0")

    @property
    def num_workers(self) -> int:
        return self.workers or min(4, os.cpu_count() or 1)


def discover_sources(cfg: IngestConfig) -> list[str]:
    """The slice files under ``cfg.input``, sorted; an error when there are none."""
    require(bool(cfg.input), "ingest needs an input: a folder, a file or an s3:// prefix")
    found = []
    for uri in list_uris(cfg.input):
        name = uri.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatch(name, p) for p in cfg.include) and not any(
                fnmatch.fnmatch(name, p) for p in cfg.exclude):
            found.append(uri)
    if not found:
        raise DataValidationError(
            f"no MPD slices found in {cfg.input} (looked for {', '.join(cfg.include)})",
            fix="point --input at a folder or s3:// prefix holding mpd.slice.*.json[.gz] files",
        )
    return found


def _read_in_order(sources: list[str], cfg: IngestConfig) -> Iterator[SliceResult]:
    """Slice results in source order, parsed ahead by a bounded pool of workers."""
    if cfg.num_workers == 1 or len(sources) == 1:
        yield from (read_slice(uri, cfg.strict) for uri in sources)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(cfg.num_workers, mp_context=context) as pool:
        pending: deque = deque()
        for uri in sources:
            pending.append(pool.submit(read_slice, uri, cfg.strict))
            if len(pending) > cfg.num_workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class TableBuilder:
    """Builds the tables: tracks in memory (one row per URI), the rest written per slice."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.track_index: dict[str, int] = {}
        self.track_rows: list[tuple] = []
        self.track_counts = np.zeros(0, dtype=np.int64)
        self.playlist_writer = pq.ParquetWriter(folder / "playlists.parquet", PLAYLISTS_SCHEMA)
        self.interaction_writer = pq.ParquetWriter(folder / "interactions.parquet",
                                                   INTERACTIONS_SCHEMA)
        self.num_playlists = 0
        self.num_interactions = 0

    def add_slice(self, result: SliceResult, keep: np.ndarray) -> None:
        """Append the playlists of ``result`` selected by the boolean mask ``keep``."""
        index, rows = self.track_index, self.track_rows
        to_global = np.fromiter(map(index.get, result.uris, repeat(-1)), dtype=np.int64,
                                count=len(result.uris))
        new = np.flatnonzero(to_global < 0)
        if len(new):
            to_global[new] = np.arange(len(rows), len(rows) + len(new))
            index.update(zip([result.uris[i] for i in new], to_global[new].tolist(),
                             strict=True))
            rows.extend(result.rows[i] for i in new)
        lengths = result.lengths[keep]
        track_ids = to_global[result.track_ids[np.repeat(keep, result.lengths)]]
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        kept = [p for p, k in zip(result.playlists, keep, strict=True) if k]
        pids = np.array([p.pid for p in kept], dtype=np.int64)
        playlist_columns = {
            "pid": pids, "name": [p.name for p in kept], "num_tracks": lengths,
            **{key: [p.fields[key] for p in kept] for key in
               ("num_followers", "modified_at", "description", "collaborative", "num_holdouts")},
            "source": [result.name] * len(kept),
        }
        self.playlist_writer.write_table(pa.table(playlist_columns, schema=PLAYLISTS_SCHEMA))
        self.interaction_writer.write_table(pa.table({
            "pid": np.repeat(pids, lengths), "track_idx": track_ids,
            "pos": np.arange(len(track_ids), dtype=np.int32) - starts,
        }, schema=INTERACTIONS_SCHEMA))
        counts = np.bincount(track_ids, minlength=len(rows))
        counts[: len(self.track_counts)] += self.track_counts
        self.track_counts = counts
        self.num_playlists += len(kept)
        self.num_interactions += len(track_ids)

    def finish(self, lyrics: dict[str, str] | None) -> pa.Table:
        self.playlist_writer.close()
        self.interaction_writer.close()
        columns = dict(zip(TRACK_COLUMNS, zip(*self.track_rows, strict=True), strict=True))
        texts = lyrics_join.match(lyrics or {}, columns["artist_name"], columns["track_name"])
        table = pa.table({
            "track_idx": np.arange(len(self.track_rows), dtype=np.int32),
            **{name: list(values) for name, values in columns.items()},
            "num_playlists": self.track_counts,
            "lyrics": texts,
        }, schema=TRACKS_SCHEMA)
        pq.write_table(table, self.folder / "tracks.parquet")
        return table


@dataclass
class IngestReport:
    """What ingest saw, for the manifest: sources, counts and rejections."""

    sources: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rejected_by_reason: Counter = field(default_factory=Counter)
    duplicate_tracks_dropped: int = 0
    content_hash: Any = field(default_factory=hashlib.sha256)

    def reject(self, rejection: Rejection, file: str) -> None:
        self.rejected_by_reason[rejection.reason] += 1
        if len(self.rejected) < MAX_LISTED_REJECTIONS:
            self.rejected.append(rejection.as_dict(file))
        log.warning("rejected record in %s: %s (pid=%s)", file, rejection.reason, rejection.pid)


def _accept(result: SliceResult, cfg: IngestConfig, report: IngestReport,
            pid_source: dict[int, str]) -> np.ndarray:
    """Mask of the slice's playlists that pass the checks that need every slice (unique pid)."""
    report.content_hash.update(f"{result.name}\0{result.sha256}\n".encode())
    source = {"uri": result.uri, "bytes": result.size, "sha256": result.sha256}
    if result.error:
        report.reject(Rejection(result.error, "file"), result.uri)
        report.sources.append({**source, "playlists": 0, "error": result.error})
        return np.zeros(0, dtype=bool)
    for rejection in result.rejections:
        report.reject(rejection, result.uri)
    keep = np.ones(len(result.playlists), dtype=bool)
    for position, playlist in enumerate(result.playlists):
        if playlist.pid in pid_source:
            duplicate = Rejection(f"duplicate pid, first seen in {pid_source[playlist.pid]}",
                                  "pid", playlist.pid)
            if cfg.strict:
                raise strict_error(duplicate, result.uri)
            report.reject(duplicate, result.uri)
            keep[position] = False
            continue
        for rejection in playlist.rejections:
            report.reject(rejection, result.uri)
        pid_source[playlist.pid] = result.uri
        report.duplicate_tracks_dropped += playlist.duplicate_tracks
    report.sources.append({**source, "playlists": int(keep.sum()),
                           "format": "challenge" if result.challenge else "mpd"})
    return keep


def run_ingest(cfg: IngestConfig, output: str | os.PathLike[str]) -> dict[str, Any]:
    """Ingest ``cfg.input`` into the artifact folder ``output``; return the manifest."""
    sources = discover_sources(cfg)
    lyrics = lyrics_join.load(cfg.lyrics, cfg.input)
    report = IngestReport()
    pid_source: dict[int, str] = {}
    with atomic_dir(output) as folder:
        tables = TableBuilder(folder)
        results = _read_in_order(sources, cfg)
        for result in tqdm(results, total=len(sources), desc="ingest", unit="slice",
                           disable=len(sources) < 3):
            tables.add_slice(result, _accept(result, cfg, report, pid_source))
        if tables.num_playlists == 0:
            raise DataValidationError(
                f"no valid playlists in {cfg.input} "
                f"({sum(report.rejected_by_reason.values())} records rejected)",
                file=cfg.input,
                fix="check the rejected records in the log; the input may not be MPD data",
            )
        track_table = tables.finish(lyrics)
        return write_manifest(
            folder, "dataset", SCHEMA_VERSION,
            config=cfg.to_dict(),
            counts={
                "playlists": tables.num_playlists,
                "tracks": track_table.num_rows,
                "interactions": tables.num_interactions,
                "tracks_with_lyrics": track_table.num_rows - track_table["lyrics"].null_count,
                "duplicate_tracks_dropped": report.duplicate_tracks_dropped,
                "rejected": sum(report.rejected_by_reason.values()),
            },
            content_hash=report.content_hash.hexdigest(),
            sources=report.sources,
            rejected_by_reason=dict(report.rejected_by_reason),
            rejected=report.rejected,
            tables={"playlists": "playlists.parquet", "tracks": "tracks.parquet",
                    "interactions": "interactions.parquet"},
        )
