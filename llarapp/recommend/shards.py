"""Batch scoring in shards, for the batch pipeline's ``dsl.ParallelFor``.

1. ``plan_shards``: read and check every playlist of the input once, cut the records into
   at most ``shards`` contiguous runs of whole batches, and write each as an MPD slice
   ``shard-NNN.json``. Cutting on batch boundaries keeps every playlist in the batch it
   would share in one unsharded run; that matters because the int8 ranker quantizes its
   activations per batch.
2. ``run_part``: score one shard with the bundle (:func:`~.batch.score_playlists`) into a
   part: ``recommendations.parquet`` and the per-playlist held-out metrics.
3. ``merge_parts``: concatenate the parts in shard order, which is the input's order, so
   the table equals one unsharded run's; write it as Parquet or the checked challenge CSV,
   and average the metrics over every playlist (not over shards).

Every folder is written atomically with its manifest last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from llarapp.errors import ArtifactError, DataValidationError
from llarapp.manifest import read_manifest, write_json, write_manifest
from llarapp.recommend.batch import (
    holdout_summary,
    score_playlists,
    write_recommendations,
)
from llarapp.recommend.config import RecommendConfig
from llarapp.recommend.playlists import playlists_from, raw_playlists, read_playlists
from llarapp.recommend.workers import shard_ranges
from llarapp.storage import atomic_dir, atomic_write_bytes

SHARDS_KIND, PART_KIND, KIND = "recommend-shards", "recommend-part", "recommendations"
SHARD_FILE = "shard-{:03d}.json"
MAX_SHARDS = 999
RECOMMENDATIONS, HOLDOUT = "recommendations.parquet", "holdout.parquet"
OUTPUT_FILE = {"parquet": RECOMMENDATIONS, "challenge": "submission.csv"}


def plan_shards(input_uri: str, shards: int, output: str | Path, batch_size: int
               ) -> list[int]:
    """Write the input as at most ``shards`` slices; return their ids (0, 1, …)."""
    if not 1 <= shards <= MAX_SHARDS:
        raise DataValidationError(f"shards must be 1..{MAX_SHARDS}, got {shards}",
                                  fix="pass a shard count such as 4")
    found = list(raw_playlists(input_uri))
    playlists_from(found)  # every record checked before any shard starts
    records = [raw for _, raw in found]
    if not records:
        raise DataValidationError(f"{input_uri} holds no playlists", file=str(input_uri),
                                  fix="point the input at MPD slices or a challenge set")
    runs = shard_ranges(len(records), shards, batch_size)
    with atomic_dir(output) as folder:
        for shard, (lo, hi) in enumerate(runs):
            document = {"info": {"shard": shard, "source": str(input_uri)},
                        "playlists": records[lo:hi]}
            atomic_write_bytes(folder / SHARD_FILE.format(shard), json.dumps(document).encode())
        write_manifest(folder, SHARDS_KIND, 1, input=str(input_uri), playlists=len(records),
                       shards=len(runs))
    return list(range(len(runs)))


def run_part(cfg: RecommendConfig, bundle_uri: str, shards: str | Path, shard: int,
             output: str | Path) -> dict[str, Any]:
    """Score shard ``shard`` of the planned ``shards`` folder into the part ``output``."""
    read_manifest(shards, SHARDS_KIND)
    scored = score_playlists(cfg, bundle_uri, str(Path(shards) / SHARD_FILE.format(shard)))
    with atomic_dir(output) as folder:
        scored.table.to_parquet(folder / RECOMMENDATIONS, index=False)
        scored.holdout.to_parquet(folder / HOLDOUT, index=False)
        return write_manifest(folder, PART_KIND, 1, shard=shard,
                              playlists=len(scored.playlists), seconds=round(scored.seconds, 2),
                              model_version=scored.model_version,
                              cold_start=scored.cold_start)


def merge_parts(cfg: RecommendConfig, parts: list[str | Path], shards: str | Path,
                output: str | Path) -> dict[str, Any]:
    """One output from every part: the recommendations, metrics.json and the manifest."""
    plan = read_manifest(shards, SHARDS_KIND)
    manifests = sorted((read_manifest(p, PART_KIND) | {"folder": str(p)} for p in parts),
                       key=lambda m: m["shard"])
    if [m["shard"] for m in manifests] != list(range(plan["shards"])):
        raise ArtifactError(f"the parts cover shards {[m['shard'] for m in manifests]}, but "
                            f"the plan has {plan['shards']}; re-run the missing shards")
    versions = {m["model_version"] for m in manifests}
    if len(versions) != 1:
        raise ArtifactError(f"the parts were scored by different bundles {sorted(versions)}; "
                            "re-run every shard with one bundle")
    table = pd.concat([pd.read_parquet(Path(m["folder"]) / RECOMMENDATIONS)
                       for m in manifests], ignore_index=True)
    holdout = pd.concat([pd.read_parquet(Path(m["folder"]) / HOLDOUT) for m in manifests],
                        ignore_index=True)
    playlists = read_playlists(str(shards), cfg.holdout_last)
    seconds = sum(m["seconds"] for m in manifests)
    summary = {"playlists": len(playlists), "shards": len(manifests),
               "model_version": versions.pop(), "format": cfg.format,
               "file": OUTPUT_FILE[cfg.format], "shard_seconds": round(seconds, 2),
               "metrics": holdout_summary(holdout)}
    with atomic_dir(output) as folder:
        write_recommendations(cfg, table, playlists, str(folder / summary["file"]))
        write_json(folder / "metrics.json", summary["metrics"])
        write_manifest(folder, KIND, 1, config=cfg.to_dict(), **summary)
    return summary
