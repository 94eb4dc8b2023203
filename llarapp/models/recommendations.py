"""Shared retrieval helpers: interaction matrices, title tokens, top-N with exclusions, and
the recommendations artifact every recommender writes."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from llarapp.config import StageConfig, require
from llarapp.manifest import write_manifest
from llarapp.storage import atomic_dir

_TOKEN = re.compile(r"\w+")


def title_tokens(title: str | None) -> list[str]:
    """Lower-cased word tokens of a playlist title ("Chill  Vibes ✨" → chill, vibes)."""
    if not title:
        return []
    return _TOKEN.findall(unicodedata.normalize("NFKC", title).casefold())


def interaction_matrix(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]
                       ) -> sp.csr_matrix:
    """Binary CSR matrix with ones at (rows, cols); duplicates collapse to one."""
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def top_n(scores: np.ndarray, exclude: sp.csr_matrix | None, n: int) -> np.ndarray:
    """Indices of the ``n`` best columns per row, best first, skipping ``exclude``'s
    non-zeros (the seeds). Rows with fewer than ``n`` candidates are padded with -1."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None and exclude.nnz:
        coo = exclude.tocoo()
        scores[coo.row, coo.col] = -np.inf
    n = min(n, scores.shape[1])
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    return np.where(np.isfinite(np.take_along_axis(scores, best, axis=1)), best, -1)


@dataclass
class RecommenderConfig(StageConfig):
    """Fields every recommending stage shares; ``MODELS`` lists what a stage can produce."""

    MODELS: ClassVar[tuple[str, ...]] = ()
    models: list[str] = field(default_factory=list)  # empty: all of MODELS
    splits: list[str] = field(default_factory=lambda: ["val", "test"])
    num_recs: int = 500
    batch_size: int = 256

    def validate(self) -> None:
        self.models = self.models or list(self.MODELS)
        unknown = set(self.models) - set(self.MODELS)
        require(not unknown, f"unknown models {sorted(unknown)}; valid: {', '.join(self.MODELS)}")
        require(set(self.splits) <= {"val", "test"}, "splits must be among val, test")
        require(self.num_recs >= 1, "num_recs must be at least 1")
        require(self.batch_size >= 1, "batch_size must be at least 1")


def kept_entries(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """A copy of ``matrix`` holding only the stored entries where ``keep`` (one flag per
    entry) is true: O(entries), where masking catalogue columns costs O(catalogue)."""
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.data *= keep
    out.eliminate_zeros()
    return out


def seed_matrix(seed_lists: pd.Series, num_items: int) -> sp.csr_matrix:
    """Binary playlists × items matrix of the seed tracks."""
    lengths = seed_lists.map(len).to_numpy()
    flat = np.concatenate(seed_lists.to_list()) if lengths.sum() else np.zeros(0, np.int64)
    return interaction_matrix(np.repeat(np.arange(len(seed_lists)), lengths),
                              flat.astype(np.int64), (len(seed_lists), num_items))


def batches_of(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start:start + size]


class RecommendationLists:
    """Collects (model, pid, split, recs) rows; saves the ``recommendations`` artifact."""

    def __init__(self) -> None:
        self.columns: dict[str, list] = {"model": [], "pid": [], "split": [], "recs": []}

    def add(self, model: str, batch: pd.DataFrame, recs: np.ndarray) -> None:
        self.columns["model"] += [model] * len(batch)
        self.columns["pid"] += batch["pid"].tolist()
        self.columns["split"] += batch["split"].tolist()
        self.columns["recs"] += list(recs.astype(np.int32))

    def save(self, output: str | os.PathLike[str],
             write_extra: Callable[[Path], None] | None = None, **manifest: Any
             ) -> dict[str, Any]:
        """``write_extra(folder)`` adds stage-specific files before the manifest."""
        with atomic_dir(output) as folder:
            pq.write_table(pa.table(self.columns), folder / "recommendations.parquet")
            if write_extra is not None:
                write_extra(folder)
            return write_manifest(folder, "recommendations", 1, rows=len(self.columns["pid"]),
                                  **manifest)
