"""Load the artifacts of the ingest and split stages."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from llarapp.manifest import read_manifest


def seen_mask(track_idx: np.ndarray, num_tracks: int) -> np.ndarray:
    """True for the tracks that occur in ``track_idx`` (e.g. the warm, trained-on tracks)."""
    mask = np.zeros(num_tracks, dtype=bool)
    mask[track_idx] = True
    return mask


@dataclass
class StageArtifact:
    """A stage's artifact folder, checked against its manifest's kind when loaded."""

    KIND: ClassVar[str]
    folder: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Self:
        return cls(Path(folder), read_manifest(folder, cls.KIND))

    def _table(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.folder / f"{name}.parquet")


@dataclass
class Dataset(StageArtifact):
    """The ingest artifact: playlists, tracks and interactions tables."""

    KIND: ClassVar[str] = "dataset"

    @cached_property
    def playlists(self) -> pd.DataFrame:
        return self._table("playlists")

    @cached_property
    def tracks(self) -> pd.DataFrame:
        return self._table("tracks")

    @cached_property
    def interactions(self) -> pd.DataFrame:
        return self._table("interactions")

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
class Split(StageArtifact):
    """The split artifact: train interactions, held-out playlists, cold tracks."""

    KIND: ClassVar[str] = "split"

    @cached_property
    def train(self) -> pd.DataFrame:
        return self._table("train")

    @cached_property
    def heldout(self) -> pd.DataFrame:
        return self._table("heldout")

    @cached_property
    def cold_tracks(self) -> pd.DataFrame:
        return self._table("cold_tracks")

    @cached_property
    def next_track(self) -> pd.DataFrame:
        return self._table("next_track")

    def heldout_for(self, which: str) -> pd.DataFrame:
        return self.heldout[self.heldout["split"] == which].reset_index(drop=True)

    def warm_mask(self, num_tracks: int) -> np.ndarray:
        """True for tracks with at least one training interaction."""
        return seen_mask(self.train["track_idx"].to_numpy(), num_tracks)
