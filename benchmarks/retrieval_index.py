"""Retrieval benchmark: the hybrid top K from faiss indexes (llarapp.models.hybrid_index:
exact flat, approximate HNSW and IVF) against scoring the whole catalogue in numpy, on a
real bundle.

Queries are real playlists (first --history tracks as seeds, the title; --history 0 for
title-only queries) encoded by the bundle's own engine. For batch sizes 1 and 32 it times
every path per playlist (median of --repeats passes), each index's build time and its
top-K recall against numpy. Each kind is built here at its default width (more widths with
--widths KIND=W ...); ``bundle`` is the bundle's own index at its calibrated widths.

    python benchmarks/retrieval_index.py --bundle runs/pipeline-root/<run>/export/bundle

Writes benchmarks/results/retrieval-index[-TAG].json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import describe  # noqa: E402
from serving import add_playlist_arguments, real_playlists  # noqa: E402

from llarapp.models.group_index import DEFAULT_WIDTH, INDEX_KINDS  # noqa: E402
from llarapp.models.hybrid import params_for  # noqa: E402
from llarapp.models.hybrid_index import HybridForm, HybridIndex  # noqa: E402
from llarapp.models.recommendations import top_n  # noqa: E402
from llarapp.serving.bundle import Bundle  # noqa: E402
from llarapp.serving.engine import Engine, Request  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
FORMATS = ("", "", ".2f", ".4f", ".1f")  # path, batch, ms, recall, build s


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
    parser.add_argument("--widths", nargs="*", default=[], metavar="KIND=WIDTH",
                        help=f"more search widths to measure (defaults {DEFAULT_WIDTH})")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    engine = Engine(Bundle.load(args.bundle))
    form = HybridForm.build(engine.item_graph, engine.scorer.item_text, engine.scorer.warm)
    indexes, build_seconds = {}, {}
    for kind in INDEX_KINDS:
        started = time.perf_counter()
        indexes[kind] = HybridIndex(form, kind)
        build_seconds[kind] = time.perf_counter() - started
    for pair in args.widths:  # the same indexes, searched wider or narrower
        kind, width = pair.split("=")
        indexes[f"{kind} width={width}"] = indexes[kind].at_width(int(width))
        build_seconds[f"{kind} width={width}"] = build_seconds[kind]
    if engine.index is not None:
        indexes["bundle"] = engine.index
        build_seconds["bundle"] = 0.0
    requests = [Request(p["playlist_name"], p["track_uris"], k=10)
                for p in real_playlists(args.data, args.history, args.playlists)]
    seeds = [engine.seeds(r) for r in requests]
    _, queries = engine._queries(seeds, engine._encode(requests, seeds))
    kinds = ["seeded" if s.history else "title_only" for s in seeds]
    params = params_for(engine.hybrid_params, kinds)
    n = engine.num_candidates
    exact = numpy_top(engine, queries, params, n)
    recall = {}
    for kind, index in indexes.items():
        found = index.top(queries.graph, queries.text, params, queries.seeds, n,
                          kinds).candidates
        recall[kind] = float(np.mean([len(set(a) & set(b)) / n
                                      for a, b in zip(found, exact, strict=True)]))
    rows = []
    for batch in (1, 32):
        parts = [slice(i, i + batch) for i in range(0, min(len(requests), 4 * 32), batch)]

        def subset(part, q=queries):
            return type(q)(q.graph[part], q.text[part], sp.csr_matrix(q.seeds[part]))

        picked = [(subset(part), params[part], kinds[part]) for part in parts]
        paths = {"numpy": lambda q, p, k: numpy_top(engine, q, p, n)} | {
            kind: (lambda q, p, k, index=index: index.top(q.graph, q.text, p, q.seeds, n, k))
            for kind, index in indexes.items()}
        for path, run in paths.items():
            seconds = timed(lambda run=run, picked=picked: [run(*query) for query in picked],
                            args.repeats)
            rows.append({"path": path, "batch": batch,
                         "ms_per_playlist": 1000 * seconds / (len(parts) * batch),
                         "recall": recall.get(path, 1.0),
                         "build_s": build_seconds.get(path, 0.0)})
    table = pd.DataFrame(rows)
    machine = describe()
    text = (f"# Retrieval: top {n} of {form.item_graph.shape[0]:,} tracks\n\n"
            f"{table.to_markdown(index=False, floatfmt=FORMATS)}\n\n"
            f"numpy scores the whole catalogue; flat, hnsw and ivf are "
            f"llarapp.models.hybrid_index (faiss; widths {DEFAULT_WIDTH}); bundle is the "
            f"bundle's index ({engine.index.kind if engine.index else 'none'}, widths "
            f"{engine.index.search_width if engine.index else '-'}). Recall: of the numpy "
            f"top {n}, over {len(requests)} playlists with {args.history} seeds. "
            f"Machine: {machine}.\n")
    print(text)
    stem = "retrieval-index" + (f"-{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(
        {"bundle": str(args.bundle), "tracks": int(form.item_graph.shape[0]),
         "candidates": n, "playlists": len(requests), "machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
