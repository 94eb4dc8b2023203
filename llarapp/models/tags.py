"""Genre and mood tags from playlist titles, predicted from text for every track.

Weak labels: a track gets word ``w`` when at least ``min_share`` of the training
playlists it appears in (and at least ``min_count`` of them) have ``w`` in their title,
for the ``vocab_size`` most frequent title words that are not stop words. A multi-label
MLP on the track's text embedding learns those labels, so cold tracks, which have no
playlists, get tags too. Precision is reported per tag on warm tracks held out from
the classifier's training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.special import expit

from llarapp.models.mlp import FitConfig, Fitted, fit_mlp, predict
from llarapp.models.recommendations import interaction_matrix, title_tokens

STOP_WORDS = frozenset(
    "a an and the of to in on for my your our me we it is s i you at by with from this that "
    "playlist playlists songs song music mix new best top good all stuff vibes jams favorites "
    "liked misc random".split())


@dataclass
class WeakLabels:
    vocab: list[str]
    labels: sp.csr_matrix  # items × vocab, binary
    labelled: np.ndarray  # items with at least one training playlist


def weak_labels(train: pd.DataFrame, names: pd.Series, num_items: int, vocab_size: int,
                min_share: float, min_count: int) -> WeakLabels:
    """``names``: playlist titles indexed by pid."""
    pids, rows = np.unique(train["pid"].to_numpy(), return_inverse=True)
    words_of = [[w for w in dict.fromkeys(title_tokens(t)) if len(w) > 2 and w not in STOP_WORDS
                 and not w.isdigit()] for t in names.reindex(pids).fillna("")]
    frequency = pd.Series([w for words in words_of for w in words], dtype=object).value_counts()
    vocab = frequency.index[:vocab_size].tolist()
    column = {w: i for i, w in enumerate(vocab)}
    pairs = [(r, column[w]) for r, words in enumerate(words_of) for w in words if w in column]
    playlist_words = interaction_matrix(np.array([p[0] for p in pairs], np.int64),
                                        np.array([p[1] for p in pairs], np.int64),
                                        (len(pids), max(len(vocab), 1)))
    items_by_playlist = interaction_matrix(rows, train["track_idx"].to_numpy(),
                                           (len(pids), num_items))
    counts = (items_by_playlist.T @ playlist_words).tocsr()  # items × vocab
    playlists_per_item = np.asarray(items_by_playlist.sum(axis=0)).ravel()
    share = counts.multiply(1.0 / np.maximum(playlists_per_item, 1)[:, None]).tocsr()
    keep = (share.toarray() >= min_share) & (counts.toarray() >= min_count)
    return WeakLabels(vocab, sp.csr_matrix(keep[:, : len(vocab)].astype(np.float32)),
                      playlists_per_item > 0)


def balanced_bce(labels: np.ndarray) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """BCE with positives up-weighted by negatives / positives per tag (at most 20): weak labels are
    rare, and plain BCE would never cross the decision threshold for most tags."""
    positives = labels.sum(axis=0)
    ratio = (len(labels) - positives) / np.maximum(positives, 1.0)
    pos_weight = torch.as_tensor(np.clip(ratio, 1.0, 20.0), dtype=torch.float32)

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets,
                                                  pos_weight=pos_weight.to(logits.device))
    return loss


@dataclass
class TagModel:
    vocab: list[str]
    fitted: Fitted
    report: pd.DataFrame  # per-tag precision on held-out warm tracks

    def probabilities(self, text: np.ndarray, device: torch.device) -> np.ndarray:
        return expit(predict(self.fitted.model, text, device))


def fit_tagger(text: np.ndarray, weak: WeakLabels, holdout: np.ndarray, threshold: float,
               cfg: FitConfig, device: torch.device) -> TagModel:
    """Train on labelled warm tracks not in ``holdout``; report precision on ``holdout``."""
    rows = np.flatnonzero(weak.labelled)
    labels = weak.labels[rows].toarray()
    val = holdout[rows]
    fitted = fit_mlp(text[rows], labels, val, balanced_bce(labels[~val]), cfg, device,
                     desc="tag classifier")
    probs = expit(predict(fitted.model, text[rows][val], device))
    truth = labels[val] > 0
    predicted = probs >= threshold
    true_positives = (predicted & truth).sum(axis=0)
    report = pd.DataFrame({
        "tag": weak.vocab,
        "train_tracks": (labels[~val] > 0).sum(axis=0),
        "heldout_tracks": truth.sum(axis=0),
        "predicted": predicted.sum(axis=0),
        "precision": np.divide(true_positives, predicted.sum(axis=0),
                               out=np.full(len(weak.vocab), np.nan),
                               where=predicted.sum(axis=0) > 0),
        "recall": np.divide(true_positives, truth.sum(axis=0),
                            out=np.full(len(weak.vocab), np.nan), where=truth.sum(axis=0) > 0),
        "base_rate": truth.mean(axis=0) if len(truth) else np.nan,
    })
    report["lift"] = report["precision"] / report["base_rate"].where(report["base_rate"] > 0)
    return TagModel(weak.vocab, fitted, report)


def top_tags(probs: np.ndarray, vocab: list[str], threshold: float, limit: int
             ) -> tuple[list[list[str]], list[list[float]]]:
    """Up to ``limit`` tags per row with probability >= ``threshold``, most likely first."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :limit]
    names, scores = [], []
    for row, picks in zip(probs, order, strict=True):
        chosen = [int(p) for p in picks if row[p] >= threshold]
        names.append([vocab[p] for p in chosen])
        scores.append([round(float(row[p]), 4) for p in chosen])
    return names, scores
