"""Baselines: popularity and item-item co-occurrence kNN.

Item-kNN scores item j for a playlist with seed set S as
``Σ_{i∈S} co(i, j) / (n_i^α · n_j^(1-α))`` — cosine when α = 0.5 — where ``co`` counts the
training playlists holding both. It is computed as ``(S·N^-α) Xᵀ X N^-(1-α)`` in batches,
so the items × items matrix is never materialised. A tiny popularity term breaks ties and
fills lists that co-occurrence alone cannot.

Title-only playlists (no seeds) fall back to the popularity of tracks in training
playlists whose titles share a word with theirs (words weighted by IDF), then to global
popularity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from llarapp.config import require
from llarapp.data.dataset import Dataset, Split
from llarapp.models.recommendations import (
    RecommendationLists,
    RecommenderConfig,
    batches_of,
    interaction_matrix,
    seed_matrix,
    title_tokens,
    top_n,
)

MODELS = ("popularity", "item_knn")
TIE_BREAK = 1e-6


@dataclass
class BaselinesConfig(RecommenderConfig):
    MODELS: ClassVar[tuple[str, ...]] = MODELS
    similarity_alpha: float = 0.5

    def validate(self) -> None:
        super().validate()
        require(0.0 <= self.similarity_alpha <= 1.0, "similarity_alpha must be in [0, 1]")


class TitleIndex:
    """Training playlists by title word, for title-only playlists."""

    def __init__(self, names: pd.Series):
        """``names``: the training playlists' titles, in playlist-row order."""
        num_rows = len(names)
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for row, name in enumerate(names):
            for token in set(title_tokens(name)):
                rows.append(row)
                cols.append(vocab.setdefault(token, len(vocab)))
        self.vocab = vocab
        words = interaction_matrix(np.array(rows, np.int64), np.array(cols, np.int64),
                                   (num_rows, max(1, len(vocab))))
        document_freq = np.asarray(words.sum(axis=0)).ravel()
        self.idf = np.log((1 + num_rows) / (1 + document_freq)).astype(np.float32)
        self.words_by_playlist = words.T.tocsr()  # vocab × playlists

    def playlist_weights(self, titles: list[str | None]) -> sp.csr_matrix:
        """titles × training playlists: Σ IDF of the words each pair shares."""
        rows, cols = [], []
        for row, title in enumerate(titles):
            for token in set(title_tokens(title)):
                if token in self.vocab:
                    rows.append(row)
                    cols.append(self.vocab[token])
        query = sp.csr_matrix(
            (self.idf[cols] if cols else np.zeros(0, np.float32), (rows, cols)),
            shape=(len(titles), len(self.idf)))
        return (query @ self.words_by_playlist).tocsr()


class BaselineRecommender:
    """Fitted on the training interactions; recommends for held-out playlists."""

    def __init__(self, train: pd.DataFrame, playlist_names: pd.Series, num_items: int,
                 alpha: float = 0.5):
        pids = train["pid"].to_numpy()
        self.train_pids, playlist_row = np.unique(pids, return_inverse=True)
        self.num_items = num_items
        self.matrix = interaction_matrix(playlist_row, train["track_idx"].to_numpy(),
                                         (len(self.train_pids), num_items))
        counts = np.asarray(self.matrix.sum(axis=0)).ravel()
        self.popularity = (counts / max(1.0, counts.max())).astype(np.float32)
        safe = np.maximum(counts, 1.0)
        self.seed_weight = (safe ** -alpha).astype(np.float32)
        self.item_weight = (safe ** -(1.0 - alpha)).astype(np.float32)
        self.matrix_t = self.matrix.T.tocsr()
        names = playlist_names.reindex(self.train_pids)
        self.titles = TitleIndex(names)

    def popularity_scores(self, count: int) -> np.ndarray:
        return np.broadcast_to(self.popularity, (count, self.num_items))

    def knn_scores(self, seeds: sp.csr_matrix) -> np.ndarray:
        weighted = seeds.multiply(self.seed_weight[None, :]).tocsr()
        by_playlist = weighted @ self.matrix_t  # batch × training playlists
        scores = np.asarray((by_playlist @ self.matrix).todense()) * self.item_weight
        return scores.astype(np.float32)

    def title_scores(self, titles: list[str | None]) -> np.ndarray:
        weights = self.titles.playlist_weights(titles)
        scores = np.asarray((weights @ self.matrix).todense(), dtype=np.float32)
        peak = scores.max(axis=1, keepdims=True)
        return np.divide(scores, peak, out=np.zeros_like(scores), where=peak > 0)

    def recommend(self, model: str, seeds: sp.csr_matrix, titles: list[str | None],
                  n: int) -> np.ndarray:
        popularity = self.popularity_scores(seeds.shape[0])
        if model == "popularity":
            return top_n(popularity, seeds, n)
        has_seeds = np.diff(seeds.indptr) > 0
        scores = np.zeros((seeds.shape[0], self.num_items), dtype=np.float32)
        if has_seeds.any():
            scores[has_seeds] = self.knn_scores(seeds[has_seeds])
        if (~has_seeds).any():
            scores[~has_seeds] = self.title_scores(
                [t for t, s in zip(titles, has_seeds, strict=True) if not s])
        return top_n(scores + TIE_BREAK * popularity, seeds, n)


def run_baselines(cfg: BaselinesConfig, dataset: Dataset, split: Split,
                  output: str | os.PathLike[str]) -> dict[str, Any]:
    names = dataset.playlists.set_index("pid")["name"]
    recommender = BaselineRecommender(split.train, names, dataset.num_tracks,
                                      cfg.similarity_alpha)
    heldout = split.heldout[split.heldout["split"].isin(cfg.splits)].reset_index(drop=True)
    lists = RecommendationLists()
    batches = list(batches_of(heldout, cfg.batch_size))
    with tqdm(total=len(batches) * len(cfg.models), desc="baselines", unit="batch") as bar:
        for model in cfg.models:
            for batch in batches:
                seeds = seed_matrix(batch["seeds"], dataset.num_tracks)
                lists.add(model, batch, recommender.recommend(
                    model, seeds, batch["name"].tolist(), cfg.num_recs))
                bar.update()
    return lists.save(output, config=cfg.to_dict(), models=cfg.models, splits=cfg.splits,
                      split_dataset_hash=split.manifest["dataset_hash"])
