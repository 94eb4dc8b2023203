"""Retrieval benchmark: the hybrid top K from faiss indexes (llarapp.models.hybrid_index)
against scoring the whole catalogue in numpy (the served path today), on a real bundle.

Queries are real playlists (first --history tracks as seeds, the title) encoded by the
bundle's own engine. For batch sizes 1 and 32 it times both paths per playlist (median
of --repeats passes) and measures the index's top-K recall against the numpy path.

    python benchmarks/retrieval_index.py --bundle runs/pipeline-root/<run>/export/bundle

Writes benchmarks/results/retrieval-index[-TAG].json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from serving import real_playlists  # noqa: E402

from llarapp.models.hybrid import params_for  # noqa: E402
from llarapp.models.hybrid_index import HybridForm, HybridIndex  # noqa: E402
from llarapp.models.retrieval import top_n  # noqa: E402
from llarapp.serving.bundle import Bundle  # noqa: E402
from llarapp.serving.engine import Engine, Request  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def numpy_top(engine: Engine, queries, params, n: int) -> np.ndarray:
    parts = engine.scorer.components(queries)
    return top_n(engine.scorer.hybrid_scores(parts, params, queries.seeds), queries.seeds, n)


def timed(call, repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/mpd-popular")
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--playlists", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    engine = Engine(Bundle.load(args.bundle))
    started = time.perf_counter()
    index = HybridIndex(HybridForm.build(engine.item_graph, engine.scorer.item_text,
                                         engine.scorer.warm))
    build_seconds = time.perf_counter() - started
    requests = [Request(p["playlist_name"], p["track_uris"], k=10)
                for p in real_playlists(args.data, args.history, args.playlists)]
    seeds = [engine.seeds(r) for r in requests]
    _, queries = engine._queries(seeds, engine._encode(requests, seeds))
    params = params_for(engine.hybrid_params, ["seeded" if s.history else "title_only"
                                               for s in seeds])
    n = engine.num_candidates
    exact = numpy_top(engine, queries, params, n)
    found = index.top(queries.graph, queries.text, params, queries.seeds, n).candidates
    recall = float(np.mean([len(set(a) & set(b)) / n for a, b in zip(found, exact,
                                                                     strict=True)]))
    rows = []
    for batch in (1, 32):
        parts = [slice(i, i + batch) for i in range(0, min(len(requests), 4 * 32), batch)]

        def subset(part, q=queries):
            return type(q)(q.graph[part], q.text[part], sp.csr_matrix(q.seeds[part]))

        picked = [(subset(part), params[part]) for part in parts]
        for path, run in (("numpy (whole catalogue)", lambda q, p: numpy_top(engine, q, p, n)),
                          ("faiss flat indexes", lambda q, p: index.top(
                              q.graph, q.text, p, q.seeds, n))):
            seconds = timed(lambda run=run, picked=picked: [run(q, p) for q, p in picked],
                            args.repeats)
            rows.append({"path": path, "batch": batch,
                         "ms_per_playlist": 1000 * seconds / (len(parts) * batch)})
    table = pd.DataFrame(rows)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count()}
    text = (f"# Retrieval: top {n} of {index.is_warm.size:,} tracks\n\n"
            f"{table.to_markdown(index=False, floatfmt='.2f')}\n\n"
            f"Index top-{n} recall against the numpy path: {recall:.4f} "
            f"({len(requests)} playlists); index build {build_seconds:.1f} s. "
            f"Machine: {machine}.\n")
    print(text)
    stem = "retrieval-index" + (f"-{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(
        {"bundle": str(args.bundle), "tracks": int(index.is_warm.size),
         "candidates": n, "recall": recall, "build_seconds": build_seconds,
         "playlists": len(requests), "machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
