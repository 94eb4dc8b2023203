"""Shared retrieval helpers: interaction matrices, title tokens, top-N with exclusions."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import scipy.sparse as sp

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
