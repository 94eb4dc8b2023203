"""Batch recommendation throughput: `llarapp recommend`'s engine over every playlist of a
folder (default ../shared/data/mpd-popular, 4,991 playlists), 500 recommendations each.

Reports playlists/s, where the time goes (encode, retrieve, rerank, the rest: reasons and
responses) and projections for the RecSys Challenge set (10,000 playlists) and the full
MPD (1,000,000) on one node like this one and on N ParallelFor shards of such nodes
(playlists are independent, so shards scale linearly until storage limits). Prints a
table; writes benchmarks/results/recommend[-TAG].json.

    python benchmarks/recommend.py --bundle .bench/llara-bundle [--input DIR]
        [--batch-sizes 32 64] [--tag T]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import time
from pathlib import Path

import pandas as pd

from llarapp.recommend.batch import load_bundle, recommend_all
from llarapp.recommend.config import RecommendConfig
from llarapp.recommend.playlists import read_playlists
from llarapp.serving.engine import Engine

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TARGETS = {"challenge set (10,000)": 10_000, "full MPD (1,000,000)": 1_000_000}
SHARDS = (1, 8, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--input", default=str(REPO.parent / "shared/data/mpd-popular"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    engine = Engine(bundle)
    playlists = read_playlists(args.input)
    rows = []
    for batch_size in args.batch_sizes:
        stages: collections.Counter[str] = collections.Counter()
        started = time.perf_counter()
        recommend_all(engine, playlists, RecommendConfig(batch_size=batch_size),
                      lambda stage, seconds, into=stages: into.update({stage: seconds}))
        seconds = time.perf_counter() - started
        rate = len(playlists) / seconds
        row = {"batch_size": batch_size, "playlists": len(playlists), "seconds": seconds,
               "playlists_per_s": rate,
               **{f"{stage}_ms_per_playlist": 1e3 * stages[stage] / len(playlists)
                  for stage in ("encode", "retrieve", "rerank")},
               "other_ms_per_playlist": 1e3 * (seconds - sum(stages.values())) / len(playlists)}
        for name, count in TARGETS.items():
            for shards in SHARDS:
                row[f"{name}, {shards} node(s), minutes"] = count / (rate * shards) / 60
        rows.append(row)
        print(pd.DataFrame([row]).T.to_markdown(floatfmt=".2f"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "recommend" + (f"-{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps({
        "bundle": args.bundle, "model_version": bundle.version, "ranker": bundle.ranker_kind,
        "input": args.input, "k": RecommendConfig.k,
        "machine": {"platform": platform.platform(), "cpus": len(os.sched_getaffinity(0))},
        "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
