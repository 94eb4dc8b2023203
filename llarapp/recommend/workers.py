"""Score playlists in several worker processes on one node, as shards on one node would.

1. Cut the playlists into ``processes`` runs of whole batches (:func:`shard_ranges`), so
   every playlist shares its batch with the same playlists as in one process.
2. Spawn the workers with the BLAS and OpenMP pools sized to cpus/processes threads (set
   in the environment before they start: the pools read it once, at import). Each loads
   its own engine, waits until every worker has loaded, then scores its run.
3. Concatenate their tables in order. ``seconds`` is the slowest worker's scoring time,
   from the common start, so loading is left out as in one process.

On 2 cores, two single-thread workers score 1.6× the playlists per second of one
two-thread process (benchmarks/recommend.py): the ranker and the index search use a
second thread poorly on small batches.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from threading import BrokenBarrierError
from typing import Any

import numpy as np
import pandas as pd

from llarapp.cpus import available_cpus
from llarapp.recommend.batch import Scored, load_bundle, score_with
from llarapp.recommend.config import RecommendConfig
from llarapp.recommend.playlists import InputPlaylist

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_start: Any = None  # the workers' common start line, set by _join


def shard_ranges(count: int, shards: int, batch_size: int) -> list[tuple[int, int]]:
    """At most ``shards`` contiguous [lo, hi) runs of whole batches covering ``count``."""
    batches = np.arange(0, count, batch_size)
    return [(int(first[0]), int(min(first[-1] + batch_size, count)))
            for first in np.array_split(batches, min(shards, len(batches)))]


@contextmanager
def thread_env(threads: int):
    saved = {name: os.environ.get(name) for name in THREAD_ENV}
    os.environ.update({name: str(threads) for name in THREAD_ENV})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def _join(start: Any) -> None:
    global _start
    _start = start


def _score_run(cfg: RecommendConfig, bundle_uri: str, playlists: list[InputPlaylist],
               threads: int, position: int) -> Scored:
    from llarapp.serving.engine import Engine

    try:
        engine = Engine(load_bundle(bundle_uri), cfg.precision, threads=threads)
    except BaseException:
        _start.abort()  # the others stop waiting (BrokenBarrierError) instead of hanging
        raise
    _start.wait()
    return score_with(engine, playlists, cfg, position)


def score_in_processes(cfg: RecommendConfig, bundle_uri: str,
                       playlists: list[InputPlaylist]) -> Scored:
    runs = shard_ranges(len(playlists), cfg.processes, cfg.batch_size)
    threads = max(available_cpus() // len(runs), 1)
    context = mp.get_context("spawn")
    start = context.Barrier(len(runs))
    with thread_env(threads), ProcessPoolExecutor(len(runs), mp_context=context,
                                                  initializer=_join,
                                                  initargs=(start,)) as pool:
        futures = [pool.submit(_score_run, cfg, bundle_uri, playlists[lo:hi], threads, i)
                   for i, (lo, hi) in enumerate(runs)]
        errors = [f.exception() for f in futures]
    cause = next((e for e in errors if e and not isinstance(e, BrokenBarrierError)), None)
    if cause or any(errors):
        raise cause or next(e for e in errors if e)
    parts = [future.result() for future in futures]
    cold_start: collections.Counter[str] = collections.Counter()
    stages: collections.Counter[str] = collections.Counter()
    for part in parts:
        cold_start.update(part.cold_start)
        stages.update(part.stages)
    return Scored(playlists, pd.concat([p.table for p in parts], ignore_index=True),
                  pd.concat([p.holdout for p in parts], ignore_index=True),
                  max(p.seconds for p in parts), dict(cold_start), parts[0].model_version,
                  dict(stages))
