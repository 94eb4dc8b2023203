"""Retrieval benchmark: the hybrid top K from faiss indexes (llarapp.models.hybrid_index,
exact flat and approximate HNSW) against scoring the whole catalogue in numpy (the served
path today), on a real bundle.

Queries are real playlists (first --history tracks as seeds, the title) encoded by the
bundle's own engine. For batch sizes 1 and 32 it times both paths per playlist (median
of --repeats passes), each index's build time and its top-K recall against numpy.

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

from serving import add_playlist_arguments, real_playlists  # noqa: E402

from llarapp.models.hybrid import params_for  # noqa: E402
from llarapp.models.hybrid_index import (  # noqa: E402
    EF_SEARCH,
    INDEX_KINDS,
    HybridForm,
    HybridIndex,
)
from llarapp.models.recommendations import top_n  # noqa: E402
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
    add_playlist_arguments(parser, 256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ef-search", type=int, nargs="*", default=[],
                        help=f"more HNSW search widths to measure (default {EF_SEARCH})")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    engine = Engine(Bundle.load(args.bundle))
    form = HybridForm.build(engine.item_graph, engine.scorer.item_text, engine.scorer.warm)
    indexes, build_seconds = {}, {}
    for kind in INDEX_KINDS:
        started = time.perf_counter()
        indexes[kind] = HybridIndex(form, kind)
        build_seconds[kind] = time.perf_counter() - started
    for ef in args.ef_search:  # the same HNSW graphs, searched wider or narrower
        indexes[f"hnsw ef={ef}"] = HybridIndex(form, "hnsw", ef, indexes["hnsw"].indexes)
        build_seconds[f"hnsw ef={ef}"] = build_seconds["hnsw"]
    requests = [Request(p["playlist_name"], p["track_uris"], k=10)
                for p in real_playlists(args.data, args.history, args.playlists)]
    seeds = [engine.seeds(r) for r in requests]
    _, queries = engine._queries(seeds, engine._encode(requests, seeds))
    params = params_for(engine.hybrid_params, ["seeded" if s.history else "title_only"
                                               for s in seeds])
    n = engine.num_candidates
    exact = numpy_top(engine, queries, params, n)
    recall = {}
    for kind, index in indexes.items():
        found = index.top(queries.graph, queries.text, params, queries.seeds, n).candidates
        recall[kind] = float(np.mean([len(set(a) & set(b)) / n
                                      for a, b in zip(found, exact, strict=True)]))
    rows = []
    for batch in (1, 32):
        parts = [slice(i, i + batch) for i in range(0, min(len(requests), 4 * 32), batch)]

        def subset(part, q=queries):
            return type(q)(q.graph[part], q.text[part], sp.csr_matrix(q.seeds[part]))

        picked = [(subset(part), params[part]) for part in parts]
        paths = {"numpy": lambda q, p: numpy_top(engine, q, p, n)} | {
            kind: (lambda q, p, index=index: index.top(q.graph, q.text, p, q.seeds, n))
            for kind, index in indexes.items()}
        for path, run in paths.items():
            seconds = timed(lambda run=run, picked=picked: [run(q, p) for q, p in picked],
                            args.repeats)
            rows.append({"path": path, "batch": batch,
                         "ms_per_playlist": 1000 * seconds / (len(parts) * batch),
                         "recall": recall.get(path, 1.0),
                         "build_s": build_seconds.get(path, 0.0)})
    table = pd.DataFrame(rows)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count()}
    text = (f"# Retrieval: top {n} of {form.item_graph.shape[0]:,} tracks\n\n"
            f"{table.to_markdown(index=False, floatfmt='.2f')}\n\n"
            f"numpy scores the whole catalogue; flat and hnsw are "
            f"llarapp.models.hybrid_index (faiss, ef_search {EF_SEARCH}). Recall: of the numpy "
            f"top {n}, over {len(requests)} playlists. Machine: {machine}.\n")
    print(text)
    stem = "retrieval-index" + (f"-{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(
        {"bundle": str(args.bundle), "tracks": int(form.item_graph.shape[0]),
         "candidates": n, "playlists": len(requests), "machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
