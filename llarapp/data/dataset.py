"""Load the artifacts of the ingest and split stages."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llarapp.artifacts import read_manifest


@dataclass
class Dataset:
    """The ingest artifact: playlists, tracks and interactions tables."""

    folder: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Dataset:
        return cls(Path(folder), read_manifest(folder, "dataset"))

    @cached_property
    def playlists(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "playlists.parquet")

    @cached_property
    def tracks(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "tracks.parquet")

    @cached_property
    def interactions(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "interactions.parquet")

    @property
    def num_tracks(self) -> int:
        return int(self.manifest["counts"]["tracks"])

    @cached_property
    def artist_of(self) -> np.ndarray:
        """Dense artist id per track index (artist URI when present, else the name)."""
        tracks = self.tracks
        key = tracks["artist_uri"].fillna("name:" + tracks["artist_name"].str.casefold())
        return pd.factorize(key)[0].astype(np.int64)


@dataclass
class Split:
    """The split artifact: train interactions, held-out playlists, cold tracks."""

    folder: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Split:
        return cls(Path(folder), read_manifest(folder, "split"))

    @cached_property
    def train(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "train.parquet")

    @cached_property
    def heldout(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "heldout.parquet")

    @cached_property
    def cold_tracks(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "cold_tracks.parquet")

    @cached_property
    def next_track(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "next_track.parquet")

    def heldout_for(self, which: str) -> pd.DataFrame:
        return self.heldout[self.heldout["split"] == which].reset_index(drop=True)

    def warm_mask(self, num_tracks: int) -> np.ndarray:
        """True for tracks with at least one training interaction."""
        mask = np.zeros(num_tracks, dtype=bool)
        mask[self.train["track_idx"].to_numpy()] = True
        return mask
