"""Evaluation splits: playlist continuation by challenge category, cold tracks, next track.

* Validation and test playlists are held out by pid. Each becomes a continuation task: the
  first k tracks are seeds and the rest are targets, with k from the RecSys Challenge 2018
  categories (0 = title only, 1, 5, 10, 25, 100) or a random k.
* Cold tracks: a popularity-stratified sample of tracks seen in at least two playlists.
  None of their interactions reach training, but they stay in the catalogue and appear as
  targets, so cold-start quality is measured directly.
* Next-track view: (last H tracks → next track) rows for training playlists, and one row
  (seeds → first target) per held-out playlist with seeds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from llarapp.config import StageConfig, require
from llarapp.data.dataset import Dataset, seen_mask
from llarapp.errors import DataValidationError
from llarapp.manifest import write_manifest
from llarapp.storage import atomic_dir

SCHEMA_VERSION = 1
CATEGORY_SEEDS = {"title_only": 0, "first_1": 1, "first_5": 5, "first_10": 10,
                  "first_25": 25, "first_100": 100, "random_k": -1}


@dataclass
class SplitConfig(StageConfig):
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_heldout: int = 10_000  # per split, as in the challenge set
    categories: list[str] = field(default_factory=lambda: list(CATEGORY_SEEDS))
    min_targets: int = 1
    random_k_max: int = 100
    cold_fraction: float = 0.05
    cold_min_playlists: int = 2
    cold_strata: int = 5
    history_len: int = 20

    def validate(self) -> None:
        require(0 < self.val_fraction < 0.5 and 0 < self.test_fraction < 0.5,
                "val_fraction and test_fraction must be in (0, 0.5)")
        unknown = set(self.categories) - set(CATEGORY_SEEDS)
        require(not unknown, f"unknown categories {sorted(unknown)}; valid: "
                f"{', '.join(CATEGORY_SEEDS)}")
        require(bool(self.categories), "categories must not be empty")
        require(self.min_targets >= 1, "min_targets must be at least 1")
        require(0 <= self.cold_fraction < 1, "cold_fraction must be in [0, 1)")
        require(self.cold_strata >= 1, "cold_strata must be at least 1")
        require(self.history_len >= 1, "history_len must be at least 1")


def assign_categories(lengths: np.ndarray, cfg: SplitConfig, rng: np.random.Generator
                      ) -> tuple[list[str], np.ndarray]:
    """Round-robin over the categories, skipping those a playlist is too short for."""
    categories, seeds = [], np.zeros(len(lengths), dtype=np.int64)
    turn = 0
    for i, length in enumerate(lengths):
        for step in range(len(cfg.categories)):
            name = cfg.categories[(turn + step) % len(cfg.categories)]
            k = CATEGORY_SEEDS[name]
            if k < 0:
                upper = min(cfg.random_k_max, length - cfg.min_targets)
                if upper < 1:
                    continue
                k = int(rng.integers(1, upper + 1))
            if length - k >= cfg.min_targets:
                categories.append(name)
                seeds[i] = k
                turn = (turn + step + 1) % len(cfg.categories)
                break
        else:
            raise AssertionError("filtered playlists always fit title_only or first_1")
    return categories, seeds


def sample_cold_tracks(counts: np.ndarray, cfg: SplitConfig, rng: np.random.Generator
                       ) -> pd.DataFrame:
    """Popularity-stratified sample of the tracks seen in >= cold_min_playlists playlists."""
    eligible = np.flatnonzero(counts >= cfg.cold_min_playlists)
    if not len(eligible) or cfg.cold_fraction == 0:
        return pd.DataFrame({"track_idx": np.zeros(0, np.int32),
                             "num_playlists": np.zeros(0, np.int32),
                             "stratum": np.zeros(0, np.int8)})
    ranks = np.argsort(np.argsort(counts[eligible], kind="stable"), kind="stable")
    strata = (ranks * cfg.cold_strata // len(eligible)).astype(np.int8)
    chosen = []
    for s in range(cfg.cold_strata):
        members = eligible[strata == s]
        size = int(round(len(members) * cfg.cold_fraction))
        chosen.append(np.sort(rng.choice(members, size, replace=False)))
    picked = np.concatenate(chosen)
    stratum = np.concatenate([np.full(len(c), s, np.int8) for s, c in enumerate(chosen)])
    return pd.DataFrame({"track_idx": picked.astype(np.int32),
                         "num_playlists": counts[picked].astype(np.int32),
                         "stratum": stratum})


def _list_column(values: list[np.ndarray]) -> pa.Array:
    lengths = np.fromiter((len(v) for v in values), dtype=np.int32, count=len(values))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.concatenate(values).astype(np.int32) if values else np.zeros(0, np.int32)
    return pa.ListArray.from_arrays(offsets, flat)


def next_track_rows(sequences: pd.DataFrame, history_len: int) -> tuple[np.ndarray, ...]:
    """(pid, history, target) for every position > 0 of every sequence, vectorised.

    ``sequences`` holds (pid, track_idx) sorted by pid then pos.
    """
    pids = sequences["pid"].to_numpy()
    items = sequences["track_idx"].to_numpy()
    start_of = np.r_[0, np.flatnonzero(pids[1:] != pids[:-1]) + 1]
    starts = np.repeat(start_of, np.diff(np.r_[start_of, len(pids)]))
    rows = np.flatnonzero(np.arange(len(pids)) > starts)
    offsets = np.arange(-history_len, 0)
    window = rows[:, None] + offsets[None, :]
    valid = window >= starts[rows][:, None]
    history = [items[w[v]] for w, v in zip(window, valid, strict=True)]
    return pids[rows], history, items[rows]


def run_split(cfg: SplitConfig, dataset: Dataset, output: str | os.PathLike[str]
               ) -> dict[str, Any]:
    rng = np.random.default_rng(cfg.seed)
    playlists = dataset.playlists[["pid", "name", "num_tracks"]]
    interactions = dataset.interactions.sort_values(["pid", "pos"], kind="stable")
    counts = np.bincount(interactions["track_idx"].to_numpy(), minlength=dataset.num_tracks)

    # Held-out playlists need a title and at least one seed-free target.
    eligible = playlists[(playlists["num_tracks"] > cfg.min_targets)
                         & playlists["name"].fillna("").str.strip().ne("")]
    order = rng.permutation(len(eligible))
    n_val = min(cfg.max_heldout, int(len(playlists) * cfg.val_fraction))
    n_test = min(cfg.max_heldout, int(len(playlists) * cfg.test_fraction))
    if n_val < 1 or n_test < 1 or n_val + n_test > len(eligible):
        raise DataValidationError(
            f"too few playlists to split: {len(playlists)} playlists, {len(eligible)} eligible "
            f"for hold-out (need {n_val} + {n_test})",
            fix="ingest more playlists or raise val_fraction / test_fraction",
        )
    chosen = eligible.iloc[order[: n_val + n_test]].reset_index(drop=True)
    chosen["split"] = ["val"] * n_val + ["test"] * n_test
    chosen["category"], chosen["num_seeds"] = assign_categories(
        chosen["num_tracks"].to_numpy(), cfg, rng)

    cold = sample_cold_tracks(counts, cfg, rng)
    is_cold = seen_mask(cold["track_idx"].to_numpy(), dataset.num_tracks)

    heldout_pids = set(chosen["pid"].tolist())
    in_heldout = interactions["pid"].isin(heldout_pids).to_numpy()
    train = interactions[~in_heldout & ~is_cold[interactions["track_idx"].to_numpy()]]
    by_pid = {pid: group["track_idx"].to_numpy()
              for pid, group in interactions[in_heldout].groupby("pid", sort=False)}
    seeds = [by_pid[p][:k] for p, k in zip(chosen["pid"], chosen["num_seeds"], strict=True)]
    targets = [by_pid[p][k:] for p, k in zip(chosen["pid"], chosen["num_seeds"], strict=True)]

    history_pids, history, next_items = next_track_rows(train, cfg.history_len)
    with_seeds = chosen["num_seeds"].to_numpy() > 0
    next_track = pa.table({
        "pid": np.r_[history_pids, chosen["pid"].to_numpy()[with_seeds]].astype(np.int64),
        "split": ["train"] * len(history_pids) + chosen["split"][with_seeds].tolist(),
        "history": _list_column(history + [s[-cfg.history_len:] for s, w in
                                           zip(seeds, with_seeds, strict=True) if w]),
        "target": np.r_[next_items, [t[0] for t, w in zip(targets, with_seeds, strict=True)
                                     if w]].astype(np.int32),
    })
    heldout = pa.table({
        "pid": chosen["pid"].to_numpy(np.int64), "name": chosen["name"],
        "split": chosen["split"], "category": chosen["category"],
        "num_seeds": chosen["num_seeds"].to_numpy(np.int32),
        "seeds": _list_column(seeds), "targets": _list_column(targets),
    })
    warm = seen_mask(train["track_idx"].to_numpy(), dataset.num_tracks)
    with atomic_dir(output) as folder:
        train.reset_index(drop=True).to_parquet(folder / "train.parquet", index=False)
        pq.write_table(heldout, folder / "heldout.parquet")
        cold.to_parquet(folder / "cold_tracks.parquet", index=False)
        pq.write_table(next_track, folder / "next_track.parquet")
        all_targets = np.concatenate(targets)
        return write_manifest(
            folder, "split", SCHEMA_VERSION,
            config=cfg.to_dict(),
            dataset_hash=dataset.manifest["content_hash"],
            counts={
                "train_playlists": int(train["pid"].nunique()),
                "train_interactions": len(train),
                "val_playlists": n_val, "test_playlists": n_test,
                "cold_tracks": len(cold),
                "tracks_without_training_data": int((~warm).sum()),
                "cold_target_share": float((~warm[all_targets]).mean()),
                "next_track_rows": next_track.num_rows,
            },
            categories={s: chosen[chosen["split"] == s]["category"].value_counts().to_dict()
                        for s in ("val", "test")},
        )
