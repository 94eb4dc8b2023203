"""Soak benchmark: many requests of every kind, good and bad, against the real server, to
see that nothing fails, leaks or drifts over a long run.

1. Start ``python -m llarapp.serving`` on the bundle with its default limits.
2. Send ``--requests`` requests (default 10,000) at ``--concurrency`` (64), a seeded
   shuffle of: seeded playlists (real mpd-popular playlists, first ``--history`` tracks),
   title-only, unknown tracks (URIs the catalogue lacks, sent with metadata), and invalid
   requests of several sorts (a bad field, no query, a body over the size limit, a request
   over the text limit, a body that is not JSON).
3. Every second, sample the server's anonymous memory; per window of requests, the p99.

Acceptance (printed, and in the JSON): no 5xx, every invalid request answered 4xx, and
anonymous memory (RSS less mapped files) at the end at most 5% above its level after
warm-up (the first ``--warmup`` share).

    python benchmarks/soak.py --bundle runs/pipeline-root/<run>/export/bundle

Writes benchmarks/results/soak[-TAG].json, .md and .png (memory and p99 over time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from loadgen import PREDICT  # noqa: E402
from machine import describe  # noqa: E402
from serving import (  # noqa: E402
    RESULTS,
    add_server_arguments,
    anonymous_gib,
    real_playlists,
)

from llarapp.serving.bundle import Bundle  # noqa: E402
from llarapp.serving.config import ServeConfig, latest_local_bundle  # noqa: E402
from llarapp.serving.launch import ServerProcess  # noqa: E402

MIX = {"seeded": 0.55, "title_only": 0.15, "unknown_tracks": 0.15, "invalid": 0.15}
LIMITS = ServeConfig()


def invalid_bodies() -> list[tuple[str, bytes]]:
    """(sort, raw body) of requests the server must refuse with a 4xx."""
    def encode(payload) -> bytes:
        return json.dumps(payload).encode()

    too_many_texts = [{"track_name": f"Song {i}", "artist_name": "A"}
                      for i in range(LIMITS.max_texts + 1)]
    return [
        ("bad_field", encode({"instances": [{"playlist_name": "x", "k": 0}]})),
        ("no_query", encode({"instances": [{"k": 5}]})),
        ("unknown_key", encode({"instances": [{"playlist_name": "x", "colour": "red"}]})),
        ("over_body_limit", b'{"instances": [{"playlist_name": "'
         + b"x" * (LIMITS.max_body_bytes + 1) + b'"}]}'),
        ("over_text_limit", encode({"instances": [{"playlist_name": "x",
                                                   "tracks": too_many_texts}]})),
        ("not_json", b"\xff{not json"),
    ]


def request_mix(playlists: list[dict], n: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` (kind, body) pairs in the proportions of :data:`MIX`, shuffled."""
    rng = random.Random(seed)
    bad = invalid_bodies()
    out = []
    for i, kind in enumerate(rng.choices(list(MIX), weights=list(MIX.values()), k=n)):
        playlist = playlists[i % len(playlists)]
        if kind == "seeded":
            body = {"instances": [playlist]}
        elif kind == "title_only":
            body = {"instances": [{"playlist_name": playlist["playlist_name"] or "mix", "k": 10}]}
        elif kind == "unknown_tracks":
            tracks = [{"track_name": f"Unreleased {i} {j}", "artist_name": f"New Artist {j}",
                       "track_uri": f"spotify:track:soak-{i}-{j}"} for j in range(5)]
            body = {"instances": [{"playlist_name": playlist["playlist_name"], "k": 10,
                                   "track_uris": [t["track_uri"] for t in tracks],
                                   "tracks": tracks}]}
        else:
            sort, raw = bad[i % len(bad)]
            out.append((f"invalid:{sort}", raw))
            continue
        out.append((kind, json.dumps(body).encode()))
    return out


async def soak(url: str, pid: int, mix: list[tuple[str, bytes]], concurrency: int
               ) -> tuple[list[dict], list[dict]]:
    """Drive ``mix``; return one record per request and the memory samples."""
    records, samples, queue = [], [], iter(mix)
    start = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    progress = tqdm(total=len(mix), unit="req", desc="soak")

    async def sample_memory(stop: asyncio.Event) -> None:
        while not stop.is_set():
            samples.append({"t": time.perf_counter() - start, "anonymous_gib": anonymous_gib(pid)})
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def worker() -> None:
            for kind, body in queue:
                sent = time.perf_counter()
                try:
                    answer = await client.post(PREDICT, content=body,
                                               headers={"content-type": "application/json"})
                    status = answer.status_code
                except httpx.TransportError as exc:  # a refused body may close the socket
                    status = f"transport:{type(exc).__name__}"
                done = time.perf_counter()
                records.append({"kind": kind, "status": status, "latency_ms":
                                1000 * (done - sent), "t": done - start})
                progress.update()

        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_memory(stop))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        stop.set()
        await sampler
    progress.close()
    return records, samples


def summarise(records: pd.DataFrame, samples: pd.DataFrame, warmup: float, window: int
              ) -> tuple[dict, pd.DataFrame]:
    status = records["status"].astype(str)
    invalid = records["kind"].str.startswith("invalid")
    valid_ok = status[~invalid].eq("200")
    invalid_4xx = status[invalid].str.match(r"4\d\d$")
    server_errors = int(status.str.match(r"5\d\d$").sum())
    warm_t = records["t"].quantile(warmup)
    # anonymous memory: the bundle's mapped files grow RSS as requests touch their pages
    warm = float(samples.loc[samples["t"] >= warm_t, "anonymous_gib"].iloc[0])
    end = float(samples["anonymous_gib"].iloc[-1])
    ordered = records.sort_values("t").reset_index(drop=True)
    windows = ordered.groupby(ordered.index // window).agg(
        t=("t", "max"), p99_ms=("latency_ms", lambda x: float(np.percentile(x, 99))),
        requests=("t", "size"))
    summary = {
        "requests": len(records),
        "by_status": {str(k): int(v) for k, v in Counter(status).items()},
        "by_kind_and_status": {f"{k} {s}": int(v) for (k, s), v in
                               records.assign(status=status).groupby(["kind", "status"]).size()
                               .items()},
        "server_errors_5xx": server_errors,
        "valid_not_200": int((~valid_ok).sum()),
        "invalid_not_4xx": int((~invalid_4xx).sum()),
        "anonymous_start_gib": float(samples["anonymous_gib"].iloc[0]),
        "anonymous_after_warmup_gib": warm, "anonymous_end_gib": end,
        "anonymous_growth_after_warmup": end / warm - 1,
        "p50_ms": float(np.percentile(records["latency_ms"], 50)),
        "p99_ms": float(np.percentile(records["latency_ms"], 99)),
        "p99_valid_ms": float(np.percentile(records.loc[~invalid, "latency_ms"], 99)),
        "seconds": float(records["t"].max()),
    }
    summary["throughput_rps"] = summary["requests"] / summary["seconds"]
    summary["acceptance"] = {"no_5xx": server_errors == 0,
                             "every_invalid_4xx": summary["invalid_not_4xx"] == 0,
                             "memory_growth_at_most_5pct":
                                 summary["anonymous_growth_after_warmup"] <= 0.05}
    return summary, windows


def plot(samples: pd.DataFrame, windows: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (memory, p99) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    memory.plot(samples["t"], samples["anonymous_gib"], color="tab:blue")
    memory.set_ylabel("server anonymous memory (GiB)")
    memory.set_ylim(0, max(samples["anonymous_gib"]) * 1.15)
    p99.plot(windows["t"], windows["p99_ms"], marker=".", color="tab:red")
    p99.set_ylabel("p99 per window (ms)")
    p99.set_xlabel("seconds since the start")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(parser, 2000)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=0.1,
                        help="share of the run before memory growth is measured")
    parser.add_argument("--window", type=int, default=500, help="requests per p99 point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    bundle = Bundle.load(args.bundle or latest_local_bundle(REPO / "runs"), verify=False)
    playlists = real_playlists(args.data, args.history, args.playlists)
    mix = request_mix(playlists, args.requests, args.seed)
    print(f"bundle {bundle.version}: {len(bundle.catalogue)} tracks; {len(mix)} requests at "
          f"concurrency {args.concurrency}: {dict(Counter(k.split(':')[0] for k, _ in mix))}")
    with ServerProcess(bundle.folder, "--workers", str(args.workers)) as server:
        records, samples = asyncio.run(soak(server.url, server.process.pid, mix,
                                            args.concurrency))
    records, samples = pd.DataFrame(records), pd.DataFrame(samples)
    summary, windows = summarise(records, samples, args.warmup, args.window)
    meta = {"bundle": bundle.version, "tracks": len(bundle.catalogue),
            "concurrency": args.concurrency, "workers": args.workers, "mix": MIX,
            "history": args.history, "machine": describe()}
    stem = RESULTS / f"soak{'-' + args.tag if args.tag else ''}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "windows": windows.to_dict("records"),
         "memory": samples.to_dict("records")}, indent=2))
    table = pd.DataFrame([{"": key, "value": value} for key, value in summary.items()
                          if not isinstance(value, dict)])
    codes = pd.DataFrame([{"kind and status": k, "requests": v}
                          for k, v in sorted(summary["by_kind_and_status"].items())])
    stem.with_suffix(".md").write_text(
        f"# Soak benchmark\n\n{json.dumps(meta)}\n\n" + table.to_markdown(index=False)
        + "\n\n## Answers by kind\n\n" + codes.to_markdown(index=False)
        + f"\n\nAcceptance: {json.dumps(summary['acceptance'])}\n")
    plot(samples, windows, stem.with_suffix(".png"),
         f"{len(records):,} requests at concurrency {args.concurrency}, {bundle.version}")
    print(codes.to_string(index=False))
    print(table.to_string(index=False))
    print(f"acceptance: {summary['acceptance']}")
    print(f"wrote {stem}.json, .md, .png")


if __name__ == "__main__":
    main()
