"""The text_embed stage: item and playlist-title embeddings from a BERT-family encoder,
of the texts :mod:`llarapp.data.texts` builds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from llarapp.config import StageConfig, require
from llarapp.data.dataset import Dataset, StageArtifact
from llarapp.data.texts import item_texts, playlist_texts
from llarapp.manifest import write_manifest
from llarapp.models.text_encoder import DEFAULT_ENCODER, POOLING, TextEncoder
from llarapp.models.torch_utils import DEVICES
from llarapp.storage import atomic_dir


@dataclass
class TextEmbedConfig(StageConfig):
    encoder: str = DEFAULT_ENCODER  # "minilm", a save_pretrained folder, or s3:// prefix
    max_length: int = 64
    batch_size: int = 128
    lyrics: bool = True
    lyrics_chars: int = 200
    device: str = "auto"

    def validate(self) -> None:
        require(self.max_length >= 8, "max_length must be at least 8")
        require(self.batch_size >= 1, "batch_size must be at least 1")
        require(self.lyrics_chars >= 0, "lyrics_chars must be >= 0")
        require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}")


@dataclass
class TextEmbeddings(StageArtifact):
    """The text_embed artifact: ``items`` (tracks × dim) and title vectors by pid."""

    KIND: ClassVar[str] = "text-embeddings"

    @cached_property
    def items(self) -> np.ndarray:
        return np.load(self.folder / "items.npy")

    @cached_property
    def _playlists(self) -> tuple[pd.Index, np.ndarray]:
        return (pd.Index(np.load(self.folder / "playlist_pids.npy")),
                np.load(self.folder / "playlists.npy"))

    def titles(self, pids: np.ndarray) -> np.ndarray:
        """Title vectors of playlists ``pids`` (rows of zeros for unknown pids)."""
        index, vectors = self._playlists
        rows = index.get_indexer(np.asarray(pids))
        out = vectors[np.maximum(rows, 0)].copy()
        out[rows < 0] = 0.0
        return out

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])


def run_text_embed(cfg: TextEmbedConfig, dataset: Dataset,
                   output: str | os.PathLike[str]) -> dict[str, Any]:
    encoder = TextEncoder(cfg.encoder, cfg.device, cfg.max_length, cfg.batch_size)
    items = encoder.encode(item_texts(dataset.tracks, cfg.lyrics, cfg.lyrics_chars),
                           desc="item text")
    playlists = dataset.playlists
    titles = encoder.encode(playlist_texts(playlists), desc="playlist titles")
    with atomic_dir(output) as folder:
        np.save(folder / "items.npy", items)
        np.save(folder / "playlists.npy", titles)
        np.save(folder / "playlist_pids.npy", playlists["pid"].to_numpy(np.int64))
        return write_manifest(
            folder, "text-embeddings", 1, config=cfg.to_dict(),
            encoder=cfg.encoder, encoder_path=str(encoder.path),
            encoder_type=encoder.model.config.model_type, dim=encoder.dim, pooling=POOLING,
            normalised=True, dataset_hash=dataset.manifest["content_hash"],
            counts={"items": len(items), "playlists": len(titles)})
