"""Synthetic MPD: real MPD-format slices with learnable structure.

The real Million Playlist Dataset cannot be downloaded here, so this is the embedded
default. Each track belongs to a latent genre and mood; artists and albums belong to a
genre; popularity is Zipf-distributed within each genre. A playlist has a main genre
(and often a mood), a title drawn from their vocabulary, and a coherent order: runs of the
same artist, mostly from the main genre. Everything is deterministic given the seed.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from tqdm import tqdm

from llarapp.config import StageConfig, require
from llarapp.data import vocab
from llarapp.manifest import write_manifest
from llarapp.storage import atomic_dir, atomic_write_bytes

_BASE62 = np.array(list("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))


@dataclass
class SynthConfig(StageConfig):
    num_playlists: int = 2000
    num_tracks: int = 0  # 0: three tracks per playlist, at least 300
    slice_size: int = 1000
    seed: int = 0
    zipf_exponent: float = 0.9
    mean_length: float = 60.0
    max_length: int = 250
    same_artist_prob: float = 0.3
    main_genre_prob: float = 0.8
    noise_title_prob: float = 0.08
    lyrics_fraction: float = 0.3
    gzip: bool = False

    def validate(self) -> None:
        require(self.num_playlists >= 1, "num_playlists must be at least 1")
        require(self.num_tracks == 0 or self.num_tracks >= 50, "num_tracks must be 0 or >= 50")
        require(self.slice_size >= 1, "slice_size must be at least 1")
        require(5 <= self.mean_length <= self.max_length, "need 5 <= mean_length <= max_length")
        for name in ("same_artist_prob", "main_genre_prob", "noise_title_prob", "lyrics_fraction"):
            require(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1]")

    @property
    def catalogue_size(self) -> int:
        return self.num_tracks or max(300, 3 * self.num_playlists)


class Catalogue:
    """Tracks with their latent genre, mood, artist and album, plus sampling tables."""

    def __init__(self, cfg: SynthConfig, rng: np.random.Generator):
        n = cfg.catalogue_size
        genres, moods = list(vocab.GENRES), list(vocab.MOODS)
        self.genre = rng.integers(0, len(genres), n)
        self.mood = rng.integers(0, len(moods), n)
        self.names = [self._track_name(rng, genres[g], moods[m])
                      for g, m in zip(self.genre, self.mood, strict=True)]
        # Artists: about eight tracks each, never crossing genres.
        self.artist = np.empty(n, dtype=np.int64)
        self.artist_names: list[str] = []
        for g in range(len(genres)):
            members = np.flatnonzero(self.genre == g)
            n_artists = max(1, len(members) // 8)
            ids = rng.integers(0, n_artists, len(members)) + len(self.artist_names)
            self.artist[members] = ids
            self.artist_names += [self._artist_name(rng) for _ in range(n_artists)]
        # Albums: each artist has up to three.
        self.album = self.artist * 3 + rng.integers(0, 3, n)
        self.album_names = {a: " ".join(rng.choice(vocab.NAME_WORDS, 2)).title()
                            for a in np.unique(self.album)}
        self.uri = self._uris(rng, n, 22)
        self.artist_uri = self._uris(rng, len(self.artist_names), 22)
        self.album_uri = {a: u for a, u in zip(self.album_names,
                                               self._uris(rng, len(self.album_names), 22),
                                               strict=True)}
        self.duration = rng.integers(120_000, 360_000, n)
        # Zipf popularity within each genre, at a random rank.
        self.weight = np.empty(n)
        for g in range(len(genres)):
            members = np.flatnonzero(self.genre == g)
            ranks = rng.permutation(len(members)) + 1
            self.weight[members] = ranks ** -cfg.zipf_exponent
        self.pools = {g: self._pool(self.genre == g) for g in range(len(genres))}
        self.mood_pools = {(g, m): self._pool((self.genre == g) & (self.mood == m))
                           for g in range(len(genres)) for m in range(len(moods))}
        self.everything = self._pool(np.ones(n, dtype=bool))
        self.by_artist = {a: np.flatnonzero(self.artist == a) for a in np.unique(self.artist)}

    def _pool(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        members = np.flatnonzero(mask)
        cdf = np.cumsum(self.weight[members]) if len(members) else np.zeros(0)
        return members, cdf / cdf[-1] if len(members) else cdf

    @staticmethod
    def draw(pool: tuple[np.ndarray, np.ndarray], uniforms: np.ndarray) -> np.ndarray:
        members, cdf = pool
        return members[np.minimum(np.searchsorted(cdf, uniforms), len(members) - 1)]

    @staticmethod
    def _uris(rng: np.random.Generator, count: int, width: int) -> list[str]:
        codes = _BASE62[rng.integers(0, 62, (count, width))]
        return ["".join(row) for row in codes]

    @staticmethod
    def _track_name(rng: np.random.Generator, genre: str, mood: str) -> str:
        words = list(rng.choice(vocab.NAME_WORDS, int(rng.integers(1, 3))))
        if rng.random() < 0.35:
            words.insert(int(rng.integers(0, len(words) + 1)),
                         str(rng.choice(vocab.GENRES[genre] + vocab.MOODS[mood])))
        return " ".join(words).title()

    @staticmethod
    def _artist_name(rng: np.random.Generator) -> str:
        if rng.random() < 0.5:
            return f"{rng.choice(vocab.FIRST_NAMES)} {rng.choice(vocab.LAST_PARTS)}".title()
        return f"The {rng.choice(vocab.NAME_WORDS)} {rng.choice(vocab.BAND_NOUNS)}".title()

    def track_entry(self, t: int, pos: int) -> dict:
        album = int(self.album[t])
        return {
            "pos": pos,
            "artist_name": self.artist_names[self.artist[t]],
            "track_uri": f"spotify:track:{self.uri[t]}",
            "artist_uri": f"spotify:artist:{self.artist_uri[self.artist[t]]}",
            "track_name": self.names[t],
            "album_uri": f"spotify:album:{self.album_uri[album]}",
            "duration_ms": int(self.duration[t]),
            "album_name": self.album_names[album],
        }


def _title(rng: np.random.Generator, cfg: SynthConfig, genre: str, mood: str | None) -> str:
    if rng.random() < cfg.noise_title_prob:
        return str(rng.choice(vocab.NOISE_TITLES))
    templates = [t for t in vocab.TITLE_TEMPLATES if mood is not None or "{mood}" not in t]
    title = str(rng.choice(templates)).format(
        genre=rng.choice(vocab.GENRES[genre]),
        genre2=rng.choice(vocab.GENRES[genre]),
        mood=rng.choice(vocab.MOODS[mood]) if mood else "",
    )
    # Real titles are messy: case, stray spaces, the odd emoji. Ingest must clean them.
    style = rng.random()
    if style < 0.3:
        title = title.title()
    elif style < 0.4:
        title = title.upper()
    elif style < 0.45:
        title = f"  {title.replace(' ', '  ')} "
    elif style < 0.5:
        title = f"{title} \u2728"
    return title


def _playlist_tracks(rng: np.random.Generator, cfg: SynthConfig, cat: Catalogue,
                     genre: int, mood: int | None, length: int) -> list[int]:
    """A coherent sequence: runs of one artist inside the main genre, some excursions."""
    size = length * 2  # spare draws for duplicates
    main = cat.draw(cat.pools[genre], rng.random(size))
    themed = cat.draw(cat.mood_pools[(genre, mood)], rng.random(size)) \
        if mood is not None and len(cat.mood_pools[(genre, mood)][0]) else main
    other = cat.draw(cat.everything, rng.random(size))
    u_kind, u_artist = rng.random(size), rng.random(size)
    chosen: list[int] = []
    seen: set[int] = set()
    for i in range(size):
        if len(chosen) == length:
            break
        if chosen and u_kind[i] < cfg.same_artist_prob:
            same = cat.by_artist[cat.artist[chosen[-1]]]
            track = int(same[int(u_artist[i] * len(same))])
        elif u_kind[i] < cfg.same_artist_prob + (1 - cfg.same_artist_prob) * cfg.main_genre_prob:
            track = int(themed[i] if u_artist[i] < 0.5 else main[i])
        else:
            track = int(other[i])
        if track not in seen:
            seen.add(track)
            chosen.append(track)
    return chosen


def generate_playlists(cfg: SynthConfig, cat: Catalogue, rng: np.random.Generator,
                       start: int, count: int) -> list[dict]:
    genres, moods = list(vocab.GENRES), list(vocab.MOODS)
    genre_weights = np.arange(1, len(genres) + 1, dtype=float) ** -0.5
    genre_weights /= genre_weights.sum()
    playlists = []
    for pid in range(start, start + count):
        genre = int(rng.choice(len(genres), p=genre_weights))
        mood = int(rng.integers(0, len(moods))) if rng.random() < 0.6 else None
        length = int(np.clip(rng.lognormal(np.log(cfg.mean_length) - 0.18, 0.6), 5,
                             cfg.max_length))
        tracks = _playlist_tracks(rng, cfg, cat, genre, mood, length)
        entries = [cat.track_entry(t, pos) for pos, t in enumerate(tracks)]
        playlist = {
            "name": _title(rng, cfg, genres[genre], moods[mood] if mood is not None else None),
            "collaborative": "true" if rng.random() < 0.02 else "false",
            "pid": pid,
            "modified_at": int(1_300_000_000 + rng.integers(0, 210_000_000)),
            "num_tracks": len(entries),
            "num_albums": len({e["album_uri"] for e in entries}),
            "num_followers": int(rng.geometric(0.6)),
            "tracks": entries,
            "num_edits": int(rng.integers(1, 30)),
            "duration_ms": int(sum(e["duration_ms"] for e in entries)),
            "num_artists": len({e["artist_uri"] for e in entries}),
        }
        if rng.random() < 0.1:
            playlist["description"] = f"{genres[genre]} for every day"
        playlists.append(playlist)
    return playlists


def _lyrics_csv(cfg: SynthConfig, cat: Catalogue, rng: np.random.Generator) -> bytes:
    genres, moods = list(vocab.GENRES), list(vocab.MOODS)
    chosen = np.flatnonzero(rng.random(len(cat.names)) < cfg.lyrics_fraction)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["artist", "song", "text"])
    for t in chosen:
        words = vocab.GENRES[genres[cat.genre[t]]] + vocab.MOODS[moods[cat.mood[t]]]
        lines = [" ".join(rng.choice(words + vocab.NAME_WORDS, 6)) for _ in range(4)]
        writer.writerow([cat.artist_names[cat.artist[t]], cat.names[t], "\n".join(lines)])
    return buffer.getvalue().encode()


def run_synth(cfg: SynthConfig, output: str | os.PathLike[str]) -> dict:
    """Write MPD slices (and ``lyrics.csv``) into ``output``; return the manifest."""
    rng = np.random.default_rng(cfg.seed)
    cat = Catalogue(cfg, rng)
    files = []
    with atomic_dir(output) as folder:
        starts = range(0, cfg.num_playlists, cfg.slice_size)
        for start in tqdm(starts, desc="synth slices", unit="slice", disable=len(starts) < 4):
            count = min(cfg.slice_size, cfg.num_playlists - start)
            end = start + count - 1
            document = {
                "info": {"generated_on": "synthetic", "slice": f"{start}-{end}",
                         "version": "v1", "generator": f"llarapp.synth seed={cfg.seed}"},
                "playlists": generate_playlists(cfg, cat, rng, start, count),
            }
            payload = orjson.dumps(document, option=orjson.OPT_INDENT_2)
            name = f"mpd.slice.{start}-{end}.json"
            if cfg.gzip:
                import gzip

                payload, name = gzip.compress(payload, compresslevel=1, mtime=0), name + ".gz"
            atomic_write_bytes(Path(folder) / name, payload)
            files.append(name)
        if cfg.lyrics_fraction > 0:
            atomic_write_bytes(Path(folder) / "lyrics.csv", _lyrics_csv(cfg, cat, rng))
        return write_manifest(folder, "mpd-slices", 1, config=cfg.to_dict(), files=files,
                              num_playlists=cfg.num_playlists, num_tracks=cfg.catalogue_size)
