"""Serving at the full MPD's size: a synthetic 2.26 M-track catalogue behind the real server.

1. Grow a real bundle (--template, e.g. the mpd-popular LLaRA bundle) to --tracks tracks:
   every catalogue-sized file (catalogue.parquet, the item vectors, the fold-in weights,
   the training degrees, the playlist-track matrix of the rerank features) gets the real
   rows, then resampled ones: a random real track's row plus Gaussian noise (so no two
   vectors coincide, which would flatter HNSW), with a fresh synthetic URI and the source's
   degree (the warm share stays the real one). The ranker, text encoder and tokenizers are
   the template's own.
2. Build the retrieval index as export does (timed), searched as wide as the
   template's calibration asks; hash every file into the manifest.
3. Serve it (``python -m llarapp.serving``, --workers processes) and drive it with real
   mpd-popular playlists, after --warmup-passes over them: p50/p99 and throughput at each
   --concurrency, the server's resident memory (RSS after the load and after the load
   test; PSS after it, which counts once the mapped vectors and index its workers share)
   and the bundle's size on disk.

    python benchmarks/serving_scale.py --template .bench/llara-bundle [--tracks 2262292]

Writes benchmarks/results/serving-scale[-TAG].json and .md. The grown bundle stays in
--out (about 10 GB at full size) until it is deleted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from loadgen import request_bodies  # noqa: E402
from machine import describe  # noqa: E402
from serving import (  # noqa: E402
    measure,
    proportional_gib,
    real_playlists,
    resident_gib,
    warm_up,
)

from llarapp.serving import bundle as B  # noqa: E402
from llarapp.serving.bundle_manifest import write_bundle_manifest  # noqa: E402
from llarapp.serving.index import build_index, search_widths  # noqa: E402
from llarapp.serving.launch import ServerProcess  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
FULL_MPD_TRACKS = 2_262_292
ROW_FILES = ("vectors/item_graph.npy", "vectors/item_text.npy", "vectors/lightgcn_items.npy",
             "weights/fold_in_weights.npy")
CHUNK = 1 << 18


def grown_rows(rows: np.ndarray, sources: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rows`` then a noisy copy of ``rows[sources]`` (noise: a tenth of each column's
    spread), built in chunks."""
    out = np.empty((len(rows) + len(sources), rows.shape[1]), rows.dtype)
    out[:len(rows)] = rows
    spread = rows.std(axis=0) * 0.1
    for start in range(0, len(sources), CHUNK):
        part = sources[start:start + CHUNK]
        noise = rng.standard_normal((len(part), rows.shape[1])).astype(rows.dtype) * spread
        out[len(rows) + start:len(rows) + start + len(part)] = rows[part] + noise
    return out


def grow_bundle(template: Path, out: Path, tracks: int, seed: int = 0) -> None:
    """Write the grown bundle to ``out``; its manifest's ``synthetic`` entry records how
    it was made and the seconds the growth and the index took."""
    rng, began = np.random.default_rng(seed), time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(template, out, ignore=shutil.ignore_patterns(B.INDEX_FOLDER, "report"))
    catalogue = pd.read_parquet(out / B.CATALOGUE)
    sources = rng.integers(0, len(catalogue), tracks - len(catalogue))
    added = catalogue.iloc[sources].reset_index(drop=True)
    added["track_idx"] = np.arange(len(catalogue), tracks, dtype=catalogue["track_idx"].dtype)
    added["track_uri"] = [f"spotify:track:synthetic{i:07d}" for i in range(len(added))]
    pd.concat([catalogue, added], ignore_index=True).to_parquet(out / B.CATALOGUE, index=False)
    for name in ROW_FILES:
        np.save(out / name, grown_rows(np.load(out / name), sources, rng))
    degree = np.load(out / "weights/item_degree.npy")
    np.save(out / "weights/item_degree.npy", np.r_[degree, degree[sources]])
    playlists = sp.load_npz(out / "rerank/playlists.npz")
    sp.save_npz(out / "rerank/playlists.npz",
                sp.csr_matrix((playlists.data, playlists.indices, playlists.indptr),
                              shape=(playlists.shape[0], tracks)))
    started = time.perf_counter()
    settings = build_index(out, 0)
    index_seconds = time.perf_counter() - started
    manifest = json.loads((out / B.MANIFEST).read_text())
    template_index = manifest["retrieval"].get("index") or {}
    if template_index.get("kind") == settings["kind"]:
        # no held-out playlists here: search as wide as the template's calibration
        settings["search_width"] = search_widths(template_index)
    manifest["model_version"] = f"{manifest['model_version']}+synthetic{tracks}"
    manifest["retrieval"]["index"] = settings
    manifest["counts"] = {**manifest.get("counts", {}), "tracks": tracks}
    manifest["files"] = B.file_table(out)
    manifest["synthetic"] = {"tracks": tracks, "from": str(template),
                             "index_build_s": index_seconds,
                             "grow_and_index_s": time.perf_counter() - began}
    write_bundle_manifest(out, **manifest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, required=True, help="a real serving bundle")
    parser.add_argument("--tracks", type=int, default=FULL_MPD_TRACKS)
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "scale-bundle")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/mpd-popular")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--reuse", action="store_true", help="serve --out as it is")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--warmup-passes", type=int, default=2,
                        help="times every request is sent before the first point")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    if not args.reuse:
        grow_bundle(args.template, args.out, args.tracks)
    made = json.loads((args.out / B.MANIFEST).read_text())["synthetic"]
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()) / 2 ** 30
    bodies = request_bodies(real_playlists(args.data, 50, 2000))
    rows = []
    server = ServerProcess(args.out, "--max_batch_size", "32", "--max_wait_ms", "2",
                           "--workers", str(args.workers)).start()
    try:
        started = time.perf_counter()
        server.wait_ready(timeout=1800)  # hashing and loading ~10 GB takes minutes
        load_seconds = time.perf_counter() - started
        loaded = resident_gib(server.process.pid)
        warm_up(server, bodies, args.warmup_passes)
        for concurrency in args.concurrency:
            rows.append(measure(server, bodies, concurrency, args.seconds))
            print(f"c={concurrency:<3} p50 {rows[-1]['p50_ms']:7.1f}  p99 "
                  f"{rows[-1]['p99_ms']:7.1f} ms  {rows[-1]['throughput_rps']:6.1f} req/s",
                  flush=True)
        after, shared_once = resident_gib(server.process.pid), proportional_gib(server.process.pid)
    finally:
        server.stop()
    summary = {**made, "bundle_gib": size,
               "server_ready_s": load_seconds,
               "workers": args.workers, "warmup_passes": args.warmup_passes,
               "rss_loaded_gib": loaded, "rss_after_gib": after, "pss_after_gib": shared_once,
               "machine": describe(),
               "memory_gib": psutil.virtual_memory().total / 2 ** 30}
    table = pd.DataFrame(rows)
    text = (f"# Serving a {made['tracks']:,}-track synthetic catalogue\n\n"
            + "\n".join(f"- {k}: {v:,.2f}" if isinstance(v, float) else f"- {k}: {v}"
                        for k, v in summary.items())
            + "\n\n" + table.round(2).to_markdown(index=False) + "\n")
    print(text)
    stem = RESULTS / ("serving-scale" + (f"-{args.tag}" if args.tag else ""))
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps({"summary": summary, "rows": rows},
                                                    indent=2))


if __name__ == "__main__":
    main()
