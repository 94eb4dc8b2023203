"""What the full MPD costs: LightGCN and text_embed at 1 M playlists, 2.26 M tracks, 66 M edges.

LightGCN: a synthetic graph of the full MPD's size (Zipf track popularity, ``--scale``
shrinks every count for a quick look), the project's trainer with its default config.
Measured: graph build time, time per training step (each step propagates the whole
graph, so an epoch is ``edges / batch_size`` steps) and peak RSS. The device memory a GPU
needs is the sum of the tensors that live on it, counted from their real sizes:
adjacency, embeddings with gradient and two Adam moments, and the forward activations
autograd keeps (one node matrix per layer plus the layer sum and the backward's buffers).

text_embed: the project's MiniLM encoder on ``--texts`` synthetic track texts shaped like
MPD's (track, artist, album); throughput is linear in the count, so the full catalogue
(2.26 M tracks plus 1 M titles) is projected from it.

    python benchmarks/full_mpd.py [--scale 1.0] [--steps 3] [--texts 2048]

Prints a table; writes benchmarks/results/full-mpd.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
from machine import describe

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FULL = {"playlists": 1_000_000, "tracks": 2_262_292, "edges": 66_346_428}
MI100_GB = 32


def synthetic_edges(playlists: int, tracks: int, edges: int, seed: int = 0) -> np.ndarray:
    """``edges`` distinct (playlist, track) pairs as one int64 key each, Zipf(0.8) tracks."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, tracks + 1) ** 0.8
    cumulative = np.cumsum(popularity / popularity.sum())
    keys = np.zeros(0, np.int64)
    while len(keys) < edges:  # oversample, de-duplicate
        need = int((edges - len(keys)) * 1.1) + 1000
        items = np.minimum(np.searchsorted(cumulative, rng.random(need)), tracks - 1)
        keys = np.unique(np.r_[keys, rng.integers(0, playlists, need) * tracks + items])
    return rng.permutation(keys)[:edges]


def device_bytes(trainer) -> dict[str, float]:
    """GiB of what a GPU must hold for one step, from the tensors' real sizes."""
    weight = trainer.model.embedding.weight
    node_matrix = weight.numel() * weight.element_size()
    layers, sampler = trainer.cfg.layers, trainer.sampler
    gib = 2 ** 30
    parts = {"adjacency": trainer.adjacency.nbytes / gib,
             "weights, gradient, Adam moments": 4 * node_matrix / gib,
             "activations (layers, sum, backward)": (2 * layers + 2) * node_matrix / gib,
             "edge lists (sampler)": sum(t.numel() * t.element_size() for t in (
                 sampler.edges, sampler.items_by_playlist, sampler.first, sampler.degree))
             / gib}
    parts["total"] = sum(parts.values())
    return parts


def measure_lightgcn(scale: float, steps: int) -> dict:
    import pandas as pd
    import torch

    from llarapp.models.lightgcn import LightGCNConfig, LightGCNTrainer

    counts = {name: max(int(value * scale), 10) for name, value in FULL.items()}
    tick = time.perf_counter()
    keys = synthetic_edges(counts["playlists"], counts["tracks"], counts["edges"])
    train = pd.DataFrame({"pid": keys // counts["tracks"], "track_idx": keys % counts["tracks"]})
    del keys
    generated = time.perf_counter() - tick
    cfg = LightGCNConfig(device="cpu")
    tick = time.perf_counter()
    trainer = LightGCNTrainer(cfg, train, counts["tracks"])
    built = time.perf_counter() - tick
    del train
    trainer.train_epoch(max_steps=1)  # warm-up: allocator, thread pools
    tick = time.perf_counter()
    trainer.train_epoch(max_steps=steps)
    per_step = (time.perf_counter() - tick) / steps
    steps_per_epoch = -(-counts["edges"] // cfg.batch_size)
    return {"counts": counts, "generate_s": generated, "build_s": built,
            "s_per_step": per_step, "steps_per_epoch": steps_per_epoch,
            "epoch_hours_cpu": per_step * steps_per_epoch / 3600,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "device_gib": device_bytes(trainer), "batch_size": cfg.batch_size,
            "threads": torch.get_num_threads()}


def measure_text(count: int) -> dict:
    from llarapp.models.text_encoder import TextEncoder

    rng = np.random.default_rng(0)
    words = ["love", "night", "summer", "remix", "live", "heart", "feat.", "baby", "dance",
             "blue", "road", "home", "fire", "dream", "girl", "time", "acoustic", "version"]
    texts = [" ".join(rng.choice(words, rng.integers(6, 14))) for _ in range(count)]
    encoder = TextEncoder(device="cpu")
    encoder.encode(texts[:64], desc="warm-up")
    tick = time.perf_counter()
    encoder.encode(texts, desc="text_embed")
    per_second = count / (time.perf_counter() - tick)
    total = FULL["tracks"] + FULL["playlists"]
    return {"texts": count, "texts_per_s_cpu": per_second,
            "full_mpd_texts": total, "full_mpd_hours_cpu": total / per_second / 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--output", type=Path, default=RESULTS / "full-mpd.json")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    text = measure_text(args.texts)
    graph = measure_lightgcn(args.scale, args.steps)
    device = graph["device_gib"]
    fits = device["total"] < MI100_GB * 0.9  # leave a tenth for the allocator and runtime
    table = Table(title=f"Full MPD x {args.scale:g} on {os.cpu_count()} CPU cores "
                        f"({graph['counts']['edges']:,} edges)")
    table.add_column("what")
    table.add_column("measured", justify="right")
    rows = [
        ("graph build (adjacency)", f"{graph['build_s']:.0f} s"),
        (f"LightGCN step (batch {graph['batch_size']:,})", f"{graph['s_per_step']:.2f} s"),
        (f"LightGCN epoch ({graph['steps_per_epoch']:,} steps)",
         f"{graph['epoch_hours_cpu']:.1f} h"),
        ("LightGCN peak RSS", f"{graph['peak_rss_gb']:.1f} GiB"),
        *((f"GPU memory: {name}", f"{value:.2f} GiB") for name, value in device.items()),
        (f"fits one {MI100_GB} GB MI100", "yes" if fits else "no"),
        ("text_embed (MiniLM, CPU)", f"{text['texts_per_s_cpu']:.0f} texts/s"),
        (f"text_embed, {text['full_mpd_texts']:,} texts", f"{text['full_mpd_hours_cpu']:.1f} h"),
    ]
    for row in rows:
        table.add_row(*row)
    Console(width=120).print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "machine": describe(),
        "scale": args.scale, "lightgcn": graph, "text_embed": text,
        "fits_mi100": fits}, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
