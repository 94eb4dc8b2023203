"""Per-candidate features of a retrieved list, the same in evaluation and in serving.

For each playlist, the retriever's top K arrive with their hybrid, graph and text scores.
Each candidate gets the columns of :data:`FEATURES`:

* what the retriever knew: its rank, hybrid score (and gap to the list's best), the
  standardised graph and text scores;
* the track alone: log popularity (training degree) and whether it is cold;
* the candidate against the seeds: the share of seeds by the same artist (and whether one
  of the last ``recent`` seeds is), the share from the same album, and how often it shares
  a training playlist with the last ``recent`` seeds (raw, and divided by the square root
  of its degree so popular tracks do not win by count alone);
* the question: log seed count and whether the playlist is title-only.

Co-occurrence reads only training playlists (:class:`CatalogueFeatures` ``playlists``),
never a held-out edge, and a playlist's own training row cannot add to it: its seeds are
excluded from the candidates, so the row holds no candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llarapp.errors import ArtifactError

FEATURES = ("retrieval_rank", "hybrid", "hybrid_gap", "graph", "text", "popularity", "cold",
            "artist_share", "artist_recent", "album_share", "cooccurrence",
            "cooccurrence_norm", "seeds", "title_only")
PLAYLISTS_FILE = "playlists.npz"


def _codes(names: pd.Series) -> np.ndarray:
    """Case-insensitive integer codes; a missing name gets -1 and never matches."""
    codes, _ = pd.factorize(names.fillna("").str.strip().str.lower())
    codes[names.fillna("").str.strip().to_numpy() == ""] = -1
    return codes.astype(np.int64)


@dataclass
class CatalogueFeatures:
    """What the features need about the catalogue: degree, artist and album codes, and the
    training playlists (playlists × tracks, binary) for co-occurrence."""

    degree: np.ndarray
    artist: np.ndarray
    album: np.ndarray
    playlists: sp.csc_matrix

    @classmethod
    def build(cls, tracks: pd.DataFrame, playlists: sp.spmatrix) -> CatalogueFeatures:
        """``tracks`` in track_idx order with artist_name and album_name. Tracks beyond the
        matrix's columns (added to a served catalogue after training) have no playlist."""
        if playlists.shape[1] > len(tracks):
            raise ArtifactError(f"the training playlists name {playlists.shape[1]} tracks but "
                                f"the catalogue has {len(tracks)}; re-run `llarapp export`")
        playlists = sp.csc_matrix(playlists, dtype=np.float32)
        playlists.resize((playlists.shape[0], len(tracks)))
        playlists.data[:] = 1.0
        degree = np.asarray(playlists.sum(axis=0)).ravel()
        return cls(degree, _codes(tracks["artist_name"]), _codes(tracks["album_name"]),
                   playlists)

    @classmethod
    def from_split(cls, tracks: pd.DataFrame, train: pd.DataFrame) -> CatalogueFeatures:
        """From the split's training edges (pid, track_idx) only."""
        rows = pd.factorize(train["pid"])[0]
        matrix = sp.csc_matrix((np.ones(len(rows), np.float32),
                                (rows, train["track_idx"].to_numpy())),
                               shape=(rows.max() + 1 if len(rows) else 0, len(tracks)))
        return cls.build(tracks, matrix)

    def save(self, folder: Path) -> None:
        sp.save_npz(folder / PLAYLISTS_FILE, sp.csr_matrix(self.playlists))

    @classmethod
    def load(cls, folder: Path, catalogue: pd.DataFrame) -> CatalogueFeatures:
        return cls.build(catalogue, sp.load_npz(folder / PLAYLISTS_FILE))

    def cooccurrence(self, candidates: np.ndarray, recent: Sequence[np.ndarray]) -> np.ndarray:
        """(B, K): training playlists holding both the candidate and a recent seed, summed
        over the recent seeds."""
        b, k = candidates.shape
        lengths = np.array([len(r) for r in recent])
        if not lengths.sum():
            return np.zeros((b, k), np.float32)
        owner = np.repeat(np.arange(b), lengths)
        seeds = np.concatenate([np.asarray(r, np.int64) for r in recent])
        assign = sp.csr_matrix((np.ones(len(seeds), np.float32), (np.arange(len(seeds)), owner)),
                               shape=(len(seeds), b))
        per_playlist = self.playlists[:, seeds] @ assign  # playlists × B: recent seeds held
        both = (per_playlist.T @ self.playlists[:, candidates.ravel()]).toarray()
        return both.reshape(b, b, k)[np.arange(b), np.arange(b)].astype(np.float32)


def candidate_features(tables: CatalogueFeatures, candidates: np.ndarray, hybrid: np.ndarray,
                       graph: np.ndarray, text: np.ndarray, seeds: Sequence[np.ndarray],
                       recent: int = 5) -> np.ndarray:
    """(B, K, len(FEATURES)) float32. ``candidates`` (B, K) in any order; ``hybrid``,
    ``graph``, ``text`` their scores; ``seeds`` each playlist's catalogue seeds in order.
    The rank and the gap are the hybrid's within the list, so a list in retrieval order
    has rank = position, and a shuffled candidate set (protocol (a)) gets the same columns
    the retriever would give it. Padding candidates (-1) rank last with the other features
    of track 0; callers drop them."""
    b, k = candidates.shape
    if not k:
        return np.zeros((b, 0, len(FEATURES)), np.float32)
    items = np.maximum(candidates, 0)
    keyed = np.where(candidates >= 0, hybrid, -np.inf)
    rank = np.empty((b, k), np.float32)
    np.put_along_axis(rank, np.argsort(-keyed, axis=1, kind="stable"),
                      np.broadcast_to(np.arange(k, dtype=np.float32), (b, k)), axis=1)
    best = keyed.max(axis=1, keepdims=True)
    best = np.where(np.isfinite(best), best, hybrid[:, :1])
    artist, album = tables.artist[items], tables.album[items]
    artist_share, album_share, artist_recent = (np.zeros((b, k), np.float32) for _ in range(3))
    for i, own in enumerate(seeds):
        own = np.asarray(own, np.int64)
        if not len(own):
            continue
        seed_artists, seed_albums = tables.artist[own], tables.album[own]
        artist_share[i] = (artist[i][:, None] == seed_artists[None]).mean(axis=1)
        album_share[i] = (album[i][:, None] == seed_albums[None]).mean(axis=1)
        artist_recent[i] = np.isin(artist[i], seed_artists[-recent:])
    artist_share[artist < 0] = album_share[album < 0] = artist_recent[artist < 0] = 0.0
    together = tables.cooccurrence(items, [np.asarray(s, np.int64)[-recent:] for s in seeds])
    degree = tables.degree[items]
    counts = np.array([len(s) for s in seeds], np.float32)[:, None]
    columns = [rank, hybrid, hybrid - best, graph, text, np.log1p(degree),
               (degree == 0).astype(np.float32), artist_share, artist_recent, album_share,
               np.log1p(together), together / np.sqrt(np.maximum(degree, 1.0)),
               np.broadcast_to(np.log1p(counts), (b, k)),
               np.broadcast_to((counts == 0).astype(np.float32), (b, k))]
    return np.stack(columns, axis=-1).astype(np.float32)
