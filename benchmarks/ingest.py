"""Ingest throughput and peak memory.

Inputs: the real MPD playlists in ../shared/data/mpd-popular (skipped with a message when
absent) and N synthetic playlists (default 100k, generated once into --cache). Each run
happens in a fresh process so its peak RSS (main process + slice workers) is its own.

    python benchmarks/ingest.py [--synthetic 100000] [--workers 1 2]

Prints a table and writes benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("LLARAPP_SHARED_DATA", REPO.parent / "shared" / "data")) / "mpd-popular"


def measure_once(source: str, workers: int) -> dict:
    """Runs inside the child process: ingest once and report time and memory."""
    from llarapp.data.ingest import IngestConfig, run_ingest

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        manifest = run_ingest(IngestConfig(input=source, workers=workers, lyrics="none"),
                          Path(tmp) / "dataset")
        seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    counts = manifest["counts"]
    return {"seconds": seconds, "playlists": counts["playlists"],
            "track_entries": counts["interactions"] + counts["duplicate_tracks_dropped"],
            "playlists_per_s": counts["playlists"] / seconds,
            "track_entries_per_s": (counts["interactions"]
                                    + counts["duplicate_tracks_dropped"]) / seconds,
            "peak_rss_main_mb": own, "peak_rss_worker_mb": workers_peak,
            "rejected": counts["rejected"]}


def largest_slice_mb(folder: Path) -> float:
    import gzip

    biggest = max(folder.glob("*.json*"), key=lambda p: p.stat().st_size)
    data = biggest.read_bytes()
    return len(gzip.decompress(data) if biggest.suffix == ".gz" else data) / 2**20


def run_child(source: Path, workers: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(source), str(workers)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def synthetic_source(cache: Path, count: int) -> Path:
    from llarapp.data.synth import SynthConfig, run_synth

    folder = cache / f"synthetic-{count}"
    if not (folder / "manifest.json").is_file():
        print(f"generating {count} synthetic playlists into {folder} (once) ...", flush=True)
        run_synth(SynthConfig(num_playlists=count, seed=0, lyrics_fraction=0), folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "llarapp-bench")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/ingest.json")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_once(args.child[0], int(args.child[1]))))
        return

    sources = []
    if REAL.is_dir():
        sources.append(("mpd-popular (real)", REAL))
    else:
        print(f"skipping real data: {REAL} is absent")
    if args.synthetic:
        sources.append((f"synthetic {args.synthetic:,}", synthetic_source(args.cache,
                                                                          args.synthetic)))
    rows = []
    for name, folder in sources:
        slice_mb = largest_slice_mb(folder)
        for workers in args.workers:
            result = run_child(folder, workers)
            rows.append({"input": name, "workers": workers, "largest_slice_mb": slice_mb,
                         **result})
            print(f"  {name:22s} workers={workers}: {result['playlists_per_s']:8.0f} "
                  f"playlists/s", flush=True)

    header = (f"{'input':22s} {'workers':>7s} {'playlists':>9s} {'seconds':>8s} "
              f"{'playlists/s':>11s} {'tracks/s':>10s} {'slice MB':>8s} {'RSS main':>8s} "
              f"{'RSS worker':>10s}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['input']:22s} {r['workers']:7d} {r['playlists']:9d} {r['seconds']:8.2f} "
              f"{r['playlists_per_s']:11.0f} {r['track_entries_per_s']:10.0f} "
              f"{r['largest_slice_mb']:8.1f} {r['peak_rss_main_mb']:8.0f} "
              f"{r['peak_rss_worker_mb']:10.0f}")
    machine = describe()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": machine, "goal_playlists_per_s": 5000,
                                       "results": rows}, indent=2))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
