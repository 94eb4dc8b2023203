"""Ranking metrics, vectorised over playlists.

Inputs are a matrix of ranked recommendations ``recs`` (playlists × R item indices, padded
with -1) and the relevant items as a sparse playlists × items matrix. Every function
returns one value per playlist (NaN where it is undefined, e.g. no relevant items), so
callers can average over any breakdown (category, warm/cold segment).

RecSys Challenge 2018 definitions (Zamani et al., "An Analysis of Approaches Taken in the
ACM RecSys Challenge 2018"), with G the held-out tracks and R the ranked list:

* R-precision = |G ∩ R[:|G|]| / |G|.
* Artist-level R-precision adds 0.25 per artist match among the top |G| that did not hit
  a track: each artist of the still-unmatched held-out tracks earns credit at most once.
* NDCG = DCG / IDCG, DCG = rel_1 + Σ_{i≥2} rel_i / log2(i), IDCG = 1 + Σ_{i=2}^{|G∩R|}
  1 / log2(i). (IDCG counts the retrieved relevant tracks, as the challenge did.)
* Recommended songs clicks = ⌊(first relevant rank − 1) / 10⌋, or 51 when none of the
  500 recommendations is relevant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

NO_CLICK = 51
ARTIST_CREDIT = 0.25


def recs_matrix(recs: Sequence[object], width: int) -> np.ndarray:
    """(playlists, width) ranked item rows, -1 padded; a missing list stays all -1."""
    matrix = np.full((len(recs), width), -1, dtype=np.int64)
    for row, values in enumerate(recs):
        if isinstance(values, np.ndarray | list):  # NaN: the model skipped this playlist
            matrix[row, : min(width, len(values))] = values[:width]
    return matrix


def relevance_matrix(targets: list[np.ndarray], num_items: int) -> sp.csr_matrix:
    """Binary playlists × items matrix from per-playlist arrays of relevant item indices."""
    lengths = np.fromiter((len(t) for t in targets), dtype=np.int64, count=len(targets))
    cols = np.concatenate(targets).astype(np.int64) if len(targets) else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(targets)), lengths)
    matrix = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)),
                           shape=(len(targets), num_items))
    matrix.data[:] = 1.0  # duplicates were summed; relevance stays binary
    return matrix


def hits_matrix(recs: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Boolean playlists × R: is ``recs[i, j]`` relevant to playlist i? Pads are never hits."""
    recs = np.asarray(recs)
    rows = np.repeat(np.arange(recs.shape[0]), recs.shape[1])
    cols = recs.ravel()
    valid = cols >= 0
    hits = np.zeros(cols.shape, dtype=bool)
    if valid.any():
        hits[valid] = np.asarray(relevant[rows[valid], cols[valid]]).ravel() > 0
    return hits.reshape(recs.shape)


def _num_relevant(relevant: sp.csr_matrix) -> np.ndarray:
    return np.diff(relevant.indptr).astype(np.float64)


def _undefined_where_empty(values: np.ndarray, num_relevant: np.ndarray) -> np.ndarray:
    return np.where(num_relevant > 0, values, np.nan)


def r_precision(recs: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    hits = hits_matrix(recs, relevant)
    g = _num_relevant(relevant)
    in_top_g = np.arange(hits.shape[1])[None, :] < g[:, None]
    found = (hits & in_top_g).sum(axis=1)
    return _undefined_where_empty(found / np.maximum(g, 1), g)


def artist_r_precision(recs: np.ndarray, relevant: sp.csr_matrix,
                       artist_of: np.ndarray) -> np.ndarray:
    """R-precision with 0.25 credit per artist match (see the module docstring)."""
    recs = np.asarray(recs)
    hits = hits_matrix(recs, relevant)
    g = _num_relevant(relevant)
    n, width = recs.shape
    in_top_g = np.arange(width)[None, :] < g[:, None]
    track_hits = (hits & in_top_g).sum(axis=1)

    # Artists of the held-out tracks that no top-|G| recommendation matched exactly.
    top_hits = hits & in_top_g
    hit_rows, hit_cols = np.nonzero(top_hits)
    matched = sp.csr_matrix((np.ones(len(hit_rows), np.float32), (hit_rows, recs[top_hits])),
                            shape=relevant.shape)
    unmatched = (relevant - relevant.multiply(matched)).tocoo()
    unmatched.eliminate_zeros()
    num_artists = int(artist_of.max()) + 1 if len(artist_of) else 1
    wanted = sp.csr_matrix(
        (np.ones(unmatched.nnz, np.float32), (unmatched.row, artist_of[unmatched.col])),
        shape=(n, num_artists))

    # Unique artists of the non-hit recommendations in the top |G|.
    candidate = in_top_g & ~hits & (recs >= 0)
    rec_artists = np.where(candidate, artist_of[np.where(recs >= 0, recs, 0)], -1)
    sorted_artists = np.sort(rec_artists, axis=1)
    first = np.ones_like(sorted_artists, dtype=bool)
    first[:, 1:] = sorted_artists[:, 1:] != sorted_artists[:, :-1]
    unique = np.where(first & (sorted_artists >= 0), sorted_artists, -1)
    artist_hits = hits_matrix(unique, wanted).sum(axis=1)
    score = (track_hits + ARTIST_CREDIT * artist_hits) / np.maximum(g, 1)
    return _undefined_where_empty(np.minimum(score, 1.0), g)


def challenge_ndcg(recs: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    hits = hits_matrix(recs, relevant)
    g = _num_relevant(relevant)
    ranks = np.arange(1, hits.shape[1] + 1)
    weights = np.where(ranks == 1, 1.0, 1.0 / np.log2(np.maximum(ranks, 2)))
    dcg = hits @ weights
    ideal = np.concatenate([[0.0], np.cumsum(weights)])[hits.sum(axis=1)]
    ndcg = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
    return _undefined_where_empty(ndcg, g)


def clicks(recs: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    hits = hits_matrix(recs, relevant)
    g = _num_relevant(relevant)
    first = np.argmax(hits, axis=1)
    result = np.where(hits.any(axis=1), first // 10, NO_CLICK).astype(np.float64)
    return _undefined_where_empty(result, g)


def recall_at_k(recs: np.ndarray, relevant: sp.csr_matrix, k: int) -> np.ndarray:
    hits = hits_matrix(np.asarray(recs)[:, :k], relevant)
    g = _num_relevant(relevant)
    return _undefined_where_empty(hits.sum(axis=1) / np.maximum(g, 1), g)


def ndcg_at_k(recs: np.ndarray, relevant: sp.csr_matrix, k: int) -> np.ndarray:
    """Standard NDCG@K: gains 1/log2(rank+1), ideal over min(|G|, K) hits."""
    hits = hits_matrix(np.asarray(recs)[:, :k], relevant)
    g = _num_relevant(relevant)
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = hits @ discounts
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[
        np.minimum(g, hits.shape[1]).astype(int)]
    ndcg = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
    return _undefined_where_empty(ndcg, g)


def candidate_metrics(scores: np.ndarray, labels: np.ndarray,
                      ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, np.ndarray]:
    """Metrics over a candidate set: ``scores`` is playlists × C, ``labels`` the index of the
    one true candidate per row. Ties count against the true item (pessimistic)."""
    scores = np.asarray(scores, dtype=np.float64)
    true_score = scores[np.arange(len(labels)), labels]
    rank = (scores >= true_score[:, None]).sum(axis=1)  # 1 = best
    out = {"hit_ratio@1": (rank == 1).astype(np.float64)}
    for k in ks:
        out[f"recall@{k}"] = (rank <= k).astype(np.float64)
        out[f"ndcg@{k}"] = np.where(rank <= k, 1.0 / np.log2(rank + 1), 0.0)
    return out


def playlist_metrics(recs: np.ndarray, relevant: sp.csr_matrix, artist_of: np.ndarray,
                     ks: tuple[int, ...] = (10, 100)) -> dict[str, np.ndarray]:
    """Every continuation metric, one value per playlist."""
    out = {
        "r_precision": r_precision(recs, relevant),
        "r_precision_artist": artist_r_precision(recs, relevant, artist_of),
        "ndcg": challenge_ndcg(recs, relevant),
        "clicks": clicks(recs, relevant),
    }
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(recs, relevant, k)
        out[f"ndcg@{k}"] = ndcg_at_k(recs, relevant, k)
    return out
