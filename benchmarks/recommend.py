"""Batch recommendation throughput: `llarapp recommend`'s engine over every playlist of a
folder (default ../shared/data/mpd-popular, 4,991 playlists), 500 recommendations each.

Each configuration runs `llarapp recommend --set processes=P`'s scoring
(:mod:`llarapp.recommend.workers`: P processes with cpus/P threads each, as P shards on one
node). Reports playlists/s over the scoring time (loading left out), where the time goes
(encode, retrieve, rerank, the rest: reasons and responses; CPU-side sums over workers)
and projections for the RecSys Challenge set (10,000 playlists) and the full
MPD (1,000,000) on 1, 8 and 32 such nodes (playlists are independent, so nodes scale
linearly until storage limits). Prints a table; writes benchmarks/results/recommend[-TAG].json.

    python benchmarks/recommend.py --bundle .bench/llara-bundle [--input DIR]
        [--processes 1 2] [--batch-sizes 32] [--tag T]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from machine import describe

from llarapp.recommend.batch import load_bundle, score_playlists
from llarapp.recommend.config import RecommendConfig

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TARGETS = {"challenge set (10,000)": 10_000, "full MPD (1,000,000)": 1_000_000}
NODES = (1, 8, 32)
STAGES = ("encode", "retrieve", "rerank")


def measure(bundle: str, input_uri: str, processes: int, batch_size: int) -> dict:
    cfg = RecommendConfig(batch_size=batch_size, processes=processes)
    scored = score_playlists(cfg, bundle, input_uri)
    count, seconds = len(scored.playlists), scored.seconds
    rate = count / seconds
    row = {"processes": processes, "batch_size": batch_size, "playlists": count,
           "seconds": seconds, "playlists_per_s": rate,
           **{f"{s}_ms_per_playlist": 1e3 * scored.stages.get(s, 0.0) / count for s in STAGES},
           "other_ms_per_playlist": 1e3 * (seconds * processes - sum(scored.stages.values()))
           / count}
    for name, total in TARGETS.items():
        for nodes in NODES:
            row[f"{name}, {nodes} node(s), minutes"] = total / (rate * nodes) / 60
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--input", default=str(REPO.parent / "shared/data/mpd-popular"))
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    rows = []
    for processes in args.processes:
        for batch_size in args.batch_sizes:
            rows.append(measure(args.bundle, args.input, processes, batch_size))
            print(pd.DataFrame([rows[-1]]).T.to_markdown(floatfmt=".2f"), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "recommend" + (f"-{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps({
        "bundle": args.bundle, "model_version": bundle.version, "ranker": bundle.ranker_kind,
        "input": args.input, "k": RecommendConfig.k,
        "machine": describe(),
        "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
