"""Serving benchmark: the real model server over HTTP, driven with real playlists from
../shared/data/mpd-popular by a closed-loop load generator on the same cores
(benchmarks/loadgen.py: raw keep-alive HTTP/1.1, about 0.1 ms of CPU a request;
``--client httpx`` for the heavier client the benchmark used before).

For each bundle precision (int8, fp32), batching setting (on: coalesce up to
--max-batch within --max-wait-ms; off: one playlist per engine call) and worker count
(--workers 1 2: server processes sharing the cores) it starts ``python -m llarapp.serving``,
sends every request --warmup-passes times (a server that has seen this traffic, its
title and item-token caches full; the first pass over 2,000 mpd-popular playlists costs
about a fifth of the throughput), then, at each concurrency, keeps that many requests in
flight for --seconds: p50/p95/p99 latency and throughput, and the server's memory (RSS,
and PSS, which counts the pages its workers share once). Each request is one playlist:
its first --history tracks as seeds, its title, k=10; the ranker reranks the bundle's
K candidates. The server's own llarapp_stage_seconds and llarapp_batch_size histograms
give the profile (where a request's time goes) per point. Each point also gets its share
of the machine's ceilings for this bundle (benchmarks/ceilings.py): the ranker's
operations per request against the measured int8 GEMM rate, and the retrieval's bytes per
request against the measured memory bandwidth.

    python benchmarks/serving.py --bundle runs/pipeline-root/<run>/export/bundle \
        [--data ../shared/data/mpd-popular] [--concurrency 1 16 64] [--seconds 10]

Writes benchmarks/results/serving[-TAG].json, .md and .png; with --compare OLD.json the
table and the plot also hold an earlier run's points (dashed), labelled with its bundle.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ceilings import ceilings, load_engine, shares  # noqa: E402
from loadgen import CLIENTS, drive, request_bodies  # noqa: E402
from machine import describe  # noqa: E402

from llarapp.data.slices import read_slice  # noqa: E402
from llarapp.serving.bundle import Bundle  # noqa: E402
from llarapp.serving.config import latest_local_bundle  # noqa: E402
from llarapp.serving.launch import ServerProcess  # noqa: E402
from llarapp.storage import list_uris  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def real_playlists(folder: Path, history: int, limit: int) -> list[dict]:
    """V1 instances from MPD slices (read and cleaned as ingest does): playlists with more
    than ``history`` tracks."""
    instances = []
    for uri in [u for u in list_uris(folder) if u.endswith((".json", ".json.gz"))]:
        result = read_slice(uri)  # tracks back to back, ``lengths`` apart
        starts = np.r_[0, np.cumsum(result.lengths)]
        for playlist, start, end in zip(result.playlists, starts, starts[1:], strict=False):
            if end - start > history:
                instances.append({"playlist_name": playlist.name or "", "k": 10, "track_uris": [
                    result.uris[i] for i in result.track_ids[start:start + history]]})
        if len(instances) >= limit:
            break
    if not instances:
        raise SystemExit(f"no playlist with more than {history} tracks under {folder}")
    return instances[:limit]


def add_server_arguments(parser: argparse.ArgumentParser, playlists: int) -> None:
    """--bundle (default: the newest under runs/) and the playlist arguments."""
    parser.add_argument("--bundle", type=Path, default=None,
                        help="serving bundle (default: the newest under runs/)")
    add_playlist_arguments(parser, playlists)


def add_playlist_arguments(parser: argparse.ArgumentParser, playlists: int) -> None:
    """--data, --history and --playlists: the real playlists a benchmark sends."""
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/mpd-popular")
    parser.add_argument("--history", type=int, default=50, help="seed tracks per playlist")
    parser.add_argument("--playlists", type=int, default=playlists)


def scrape(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("llarapp_stage_seconds_") or line.startswith("llarapp_batch_size_")}


def profile(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """Server time per request by stage (ms), and the mean batch size."""
    def delta(key):
        return after.get(key, 0.0) - before.get(key, 0.0)

    batches = max(delta("llarapp_batch_size_count"), 1.0)
    out = {"mean_batch": delta("llarapp_batch_size_sum") / batches}
    for stage in ("encode", "retrieve", "rerank"):
        out[f"{stage}_ms_per_request"] = 1000 * delta(
            f'llarapp_stage_seconds_sum{{stage="{stage}"}}') / max(requests, 1)
    return out


def with_workers(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (the server's workers)."""
    return sum(sum(p.cpu_times()[:2]) for p in with_workers(pid))


def resident_gib(pid: int) -> float:
    """Resident memory of a process and its children, GiB (pages they share, such as the
    bundle's mapped vectors and index, counted once per process)."""
    return sum(p.memory_info().rss for p in with_workers(pid)) / 2 ** 30


def proportional_gib(pid: int) -> float:
    """The memory a pod holds for a process and its children, GiB: each shared page once
    (the sum of their proportional set sizes)."""
    return sum(p.memory_full_info().pss for p in with_workers(pid)) / 2 ** 30


def anonymous_gib(pid: int) -> float:
    """Resident memory that is not a mapped file, GiB: what a leak grows (mapped bundle
    files are paged in as requests touch them and can always be dropped)."""
    return sum(info.rss - info.shared for info in
               (p.memory_info() for p in with_workers(pid))) / 2 ** 30


def warm_up(server: ServerProcess, bodies: list[bytes], passes: int, client: str = "raw"
            ) -> None:
    """Send every request ``passes`` times (concurrency 16), so the points measure a server
    that has seen this traffic: its caches (title vectors, item tokens) are full."""
    drive(server.url, bodies, 16, 3600, client, limit=passes * len(bodies))


def measure(server: ServerProcess, bodies: list[bytes], concurrency: int, seconds: float,
            client: str = "raw") -> dict:
    """Latency and throughput at ``concurrency`` over the request ``bodies``
    (loadgen.request_bodies); the CPU milliseconds per request of the server and of this
    load generator, which share the machine's cores."""
    drive(server.url, bodies, concurrency, min(2.0, seconds), client)  # warm-up
    before, server_cpu, client_cpu = (scrape(server.url), cpu_seconds(server.process.pid),
                                      time.process_time())
    latencies, errors, elapsed = drive(server.url, bodies, concurrency, seconds, client)
    server_cpu = cpu_seconds(server.process.pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    ms, count = np.array(latencies) * 1000, max(len(latencies), 1)
    return {"concurrency": concurrency, "client": client, "requests": len(latencies),
            "errors": errors,
            "throughput_rps": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)),
            "server_cpu_ms_per_request": 1000 * server_cpu / count,
            "client_cpu_ms_per_request": 1000 * client_cpu / count,
            "server_rss_gib": resident_gib(server.process.pid),
            "server_pss_gib": proportional_gib(server.process.pid),
            **profile(before, scrape(server.url), len(latencies))}


def plot(table: pd.DataFrame, path: Path, previous: pd.DataFrame | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    runs = [(table, "-", "")] + ([(previous, "--", "before: ")] if previous is not None else [])
    for frame, style, prefix in runs:
        frame = frame.assign(workers=frame.get("workers", 1))
        for (precision, batching, workers), rows in frame.groupby(["precision", "batching",
                                                                   "workers"]):
            label = f"{prefix}{precision}, batching {batching}, {workers} worker(s)"
            left.plot(rows["concurrency"], rows["p99_ms"], style, marker="o", label=label)
            right.plot(rows["concurrency"], rows["throughput_rps"], style, marker="o",
                       label=label)
    left.set(xscale="log", yscale="log", xlabel="concurrency", ylabel="p99 latency (ms)")
    right.set(xscale="log", xlabel="concurrency", ylabel="throughput (req/s)")
    left.axhline(50, color="grey", ls=":", label="p99 goal 50 ms")
    right.axhline(200, color="grey", ls=":", label="goal 200 req/s")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(parser, 2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--precisions", nargs="+", default=["int8", "fp32"])
    parser.add_argument("--batching", nargs="+", default=["on", "off"], choices=("on", "off"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--compare", type=Path, default=None,
                        help="an earlier run's JSON to show beside this one")
    parser.add_argument("--warmup-passes", type=int, default=2,
                        help="times every request is sent before the first point")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="raw",
                        help="the load generator (benchmarks/loadgen.py)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    bundle = Bundle.load(args.bundle or latest_local_bundle(REPO / "runs"), verify=False)
    instances = real_playlists(args.data, args.history, args.playlists)
    bodies = request_bodies(instances)
    known = set(bundle.catalogue["track_uri"])
    seeds = [u for i in instances for u in i["track_uris"]]
    known_share = sum(u in known for u in seeds) / len(seeds)
    print(f"bundle {bundle.version}: {len(bundle.catalogue)} tracks, rerank "
          f"{bundle.manifest['ranker']['num_candidates']} candidates; {len(instances)} "
          f"playlists × {args.history} seeds ({known_share:.0%} of seeds in the catalogue)")
    batching = {"on": ["--max_batch_size", str(args.max_batch), "--max_wait_ms",
                       str(args.max_wait_ms)],
                "off": ["--max_batch_size", "1", "--max_wait_ms", "0"]}
    rows = []
    for precision, mode, workers in itertools.product(args.precisions, args.batching,
                                                      args.workers):
        with ServerProcess(bundle.folder, "--precision", precision, "--workers", str(workers),
                           *batching[mode]) as server:
            warm_up(server, bodies, args.warmup_passes, args.client)
            for concurrency in args.concurrency:
                row = {"precision": precision, "batching": mode, "workers": workers,
                       **measure(server, bodies, concurrency, args.seconds, args.client)}
                rows.append(row)
                print(f"{precision:>4} batching {mode:>3} workers {workers} c={concurrency:<3} "
                      f"p50 {row['p50_ms']:7.1f}  p99 {row['p99_ms']:7.1f} ms  "
                      f"{row['throughput_rps']:6.1f} req/s  batch {row['mean_batch']:.1f}",
                      flush=True)
    cores = len(os.sched_getaffinity(0))
    limits = ceilings(load_engine(bundle.folder, cores), cores, instances[:64])
    print("ceilings: " + ", ".join(f"{k} {v:,.2f}" for k, v in limits.items()))
    rows = [row | shares(row["throughput_rps"], limits) for row in rows]
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))
    stem = RESULTS / f"serving{'-' + args.tag if args.tag else ''}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"bundle": bundle.version, "tracks": len(bundle.catalogue),
            "num_candidates": bundle.manifest["ranker"]["num_candidates"],
            "history": args.history, "known_seed_share": known_share,
            "seconds_per_point": args.seconds, "warmup_passes": args.warmup_passes,
            "client": args.client, "max_batch": args.max_batch,
            "max_wait_ms": args.max_wait_ms, "machine": describe(),
            "ceilings": limits}
    earlier = json.loads(args.compare.read_text()) if args.compare else None
    stem.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "rows": rows} | ({"before": earlier} if earlier else {}), indent=2))
    text = f"# Serving benchmark\n\n{json.dumps(meta)}\n\n" + table.round(2).to_markdown(
        index=False) + "\n"
    if earlier:
        text += (f"\n## Before ({args.compare.name}: bundle {earlier['meta']['bundle']})\n\n"
                 + pd.DataFrame(earlier["rows"]).round(2).to_markdown(index=False) + "\n")
    stem.with_suffix(".md").write_text(text)
    plot(table, stem.with_suffix(".png"),
         pd.DataFrame(earlier["rows"]) if earlier else None)
    print(f"wrote {stem}.json, .md, .png")


if __name__ == "__main__":
    main()
