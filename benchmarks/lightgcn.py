"""LightGCN epoch time and peak memory: our PyG model against a plain torch.sparse.mm one.

Graphs:
  (a) real     the training graph of the default split of ../shared/data/mpd-popular
  (b) synth    10k playlists × 50k tracks, 600k distinct edges (Zipf track popularity)
  (c) gowalla  the LightGCN paper's Gowalla train.txt (../shared/data/gowalla): 30k users
               × 41k items, 810k edges; not run unless named in --graphs

Variants (the lightgcn stage's training loop, batch and loss; only the propagation differs):
  ours           what the stage trains: all layers as one autograd node whose backward is
                 the same propagation, through the adjacency's two bipartite blocks, with
                 the nodes in reverse Cuthill–McKee order (``node_order: rcm``)
  input-order    the same with the nodes in the input's order (``node_order: none``)
  whole-csr      the same node over the whole (nodes × nodes) CSR adjacency
  pyg-symmetric  torch_geometric LightGCN's get_embedding, layer by layer, with the
                 symmetric backward per layer
  pyg-csr        the same without the symmetric backward (PyG's LGConv as shipped)
  torch-sparse   a plain hand-written LightGCN: an embedding and torch.sparse.mm layers

Each variant × graph runs in a fresh process, so its peak RSS (and peak GPU memory) is
its own. The variants take turns for ``--rounds`` rounds and each reports its median
epoch time: a shared VM's speed drifts by tens of percent within an hour, so one run per
variant in sequence would compare the hours, not the code. Prints a table; writes
benchmarks/results/lightgcn-<device>.json.

    python benchmarks/lightgcn.py [--device cpu|cuda] [--epochs 1] [--rounds 3]
                                  [--graphs real synth] [--variants ours whole-csr …]
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

import numpy as np
from machine import describe

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("LLARAPP_SHARED_DATA", REPO.parent / "shared" / "data")) / "mpd-popular"
CACHE = Path(os.environ.get("LLARAPP_BENCH_CACHE", Path(tempfile.gettempdir()) / "llarapp-bench"))
VARIANTS = ("ours", "input-order", "whole-csr", "pyg-symmetric", "pyg-csr", "torch-sparse")


def synthetic_graph(playlists: int, tracks: int, edges: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, tracks + 1) ** 0.8
    popularity /= popularity.sum()
    chosen = np.zeros(0, np.int64)
    while len(chosen) < edges:  # oversample, de-duplicate, keep the first `edges`
        pids = rng.integers(0, playlists, edges)
        items = rng.choice(tracks, edges, p=popularity)
        chosen = np.unique(np.r_[chosen, pids * tracks + items])
    chosen = rng.permutation(chosen)[:edges]
    return {"pid": chosen // tracks, "track_idx": chosen % tracks, "num_items": tracks}


def real_graph() -> dict:
    from llarapp.data.dataset import Dataset, Split
    from llarapp.data.ingest import IngestConfig, run_ingest
    from llarapp.data.split import SplitConfig, run_split

    root = CACHE / "mpd-popular"
    if not (root / "split" / "manifest.json").is_file():
        run_ingest(IngestConfig(input=str(REAL), lyrics="none"), root / "dataset")
        run_split(SplitConfig(), Dataset.load(root / "dataset"), root / "split")
    train = Split.load(root / "split").train
    return {"pid": train["pid"].to_numpy(), "track_idx": train["track_idx"].to_numpy(),
            "num_items": Dataset.load(root / "dataset").num_tracks}


def gowalla_graph() -> dict:
    from lightgcn_gowalla import DATA, read_user_items

    train = read_user_items(DATA / "train.txt")
    test = read_user_items(DATA / "test.txt")
    return {"pid": train["pid"].to_numpy(), "track_idx": train["track_idx"].to_numpy(),
            "num_items": int(max(train["track_idx"].max(), test["track_idx"].max())) + 1}


GRAPHS = {"real": real_graph, "synth": lambda: synthetic_graph(10_000, 50_000, 600_000),
          "gowalla": gowalla_graph}


def prepare(name: str) -> Path:
    path = CACHE / f"graph-{name}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        graph = GRAPHS[name]()
        np.savez(path, **graph)
    return path


def plain_model(num_nodes: int, dim: int, layers: int):
    """LightGCN written directly with torch.sparse.mm (autograd handles the backward)."""
    import torch

    class PlainLightGCN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(num_nodes, dim)
            torch.nn.init.xavier_uniform_(self.embedding.weight)
            self.register_buffer("alpha", torch.full((layers + 1,), 1.0 / (layers + 1)))

        def get_embedding(self, adjacency):
            x = self.embedding.weight
            out = x * self.alpha[0]
            for layer in range(layers):
                x = torch.sparse.mm(adjacency, x)
                out = out + x * self.alpha[layer + 1]
            return out

    return PlainLightGCN()


def measure(graph_path: str, variant: str, device: str, epochs: int, batch_size: int) -> dict:
    """Runs in the child process."""
    import pandas as pd
    import torch

    import llarapp.models.lightgcn as stage
    from llarapp.models import propagation

    data = np.load(graph_path)
    train = pd.DataFrame({"pid": data["pid"], "track_idx": data["track_idx"]})
    cfg = stage.LightGCNConfig(batch_size=batch_size, device=device,
                               node_order="none" if variant == "input-order" else "rcm")
    trainer = stage.LightGCNTrainer(cfg, train, int(data["num_items"]))
    num_nodes = trainer.num_playlists + trainer.num_items
    edges = trainer.sampler.edges.numpy()
    whole = propagation.normalized_adjacency(edges[0], edges[1], trainer.num_playlists,
                                             trainer.num_items).to(trainer.device)

    class WholeAdjacency:  # the stage's node, with no playlist block: one product of Â
        num_playlists = 0

        def step(self, playlists, tracks, slot=None):  # fresh outputs: no scratch slots
            return playlists, torch.sparse.mm(whole, tracks)

    if variant == "whole-csr":
        stage.propagate = lambda model, _: propagation.propagate(model, WholeAdjacency())
    elif variant not in ("ours", "input-order"):
        model = (propagation.build_model(num_nodes, cfg.dim, cfg.layers,
                                         symmetric=variant == "pyg-symmetric")
                 if variant.startswith("pyg") else plain_model(num_nodes, cfg.dim, cfg.layers))
        trainer.model = model.to(trainer.device)
        trainer.optimizer = torch.optim.Adam(trainer.model.parameters(), lr=cfg.lr, fused=True)
        stage.propagate = lambda model, _: model.get_embedding(whole)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds, losses = [], []
    for _ in range(epochs):
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        losses.append(trainer.train_epoch())
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return {
        "graph_playlists": trainer.num_playlists, "graph_tracks": trainer.num_items,
        "edges": int(edges.shape[1]), "batches_per_epoch":
            trainer.sampler.steps_per_epoch(batch_size),
        "s_per_epoch": float(np.mean(seconds)), "epochs": epochs, "loss": losses[-1],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": (torch.cuda.max_memory_allocated() / 2**20
                        if trainer.device.type == "cuda" else None),
        "threads": torch.get_num_threads(),
    }


def run_child(graph: Path, variant: str, args: argparse.Namespace) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(graph), variant,
                          "--device", args.device, "--epochs", str(args.epochs),
                          "--batch-size", str(args.batch_size)],
                         check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3,
                        help="the variants take turns this many times; medians are reported")
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--graphs", nargs="+", default=["real", "synth"], choices=list(GRAPHS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--child", nargs=2, metavar=("GRAPH", "VARIANT"))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.device, args.epochs,
                                 args.batch_size)))
        return

    from rich.console import Console
    from rich.table import Table

    rows = []
    for name in args.graphs:
        if name == "real" and not REAL.is_dir() and not (CACHE / "graph-real.npz").is_file():
            print(f"skipping the real graph: {REAL} is absent")
            continue
        graph = prepare(name)
        runs = {variant: [] for variant in args.variants}
        for round_ in range(1, args.rounds + 1):
            for variant in args.variants:
                print(f"{name} / {variant}, round {round_} …", flush=True)
                runs[variant].append(run_child(graph, variant, args))
        for variant, measured in runs.items():
            rows.append({"graph": name, "variant": variant, **measured[-1],
                         "s_per_epoch": float(np.median([m["s_per_epoch"] for m in measured])),
                         "s_per_epoch_rounds": [m["s_per_epoch"] for m in measured],
                         "peak_rss_mb": max(m["peak_rss_mb"] for m in measured)})
    for row in rows:
        ours = next(r for r in rows if r["graph"] == row["graph"]
                    and r["variant"] == "ours")
        row["time_vs_ours"] = row["s_per_epoch"] / ours["s_per_epoch"]

    table = Table(title=f"LightGCN epoch time ({args.device}, dim 64, 3 layers, batch "
                        f"{args.batch_size}; median of {args.rounds} interleaved rounds)")
    for column in ("graph", "edges", "variant", "s/epoch", "× ours", "peak RSS MB",
                   "peak GPU MB"):
        table.add_column(column, no_wrap=True,
                         justify="left" if column in ("graph", "variant") else "right")
    for row in rows:
        gpu = f"{row['peak_gpu_mb']:.0f}" if row["peak_gpu_mb"] is not None else "-"
        table.add_row(row["graph"], f"{row['edges']:,}", row["variant"],
                      f"{row['s_per_epoch']:.2f}", f"{row['time_vs_ours']:.2f}",
                      f"{row['peak_rss_mb']:.0f}", gpu)
    Console(width=120).print(table)
    output = args.output or REPO / "benchmarks" / "results" / f"lightgcn-{args.device}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({
        "machine": describe(),
        "config": {"epochs": args.epochs, "rounds": args.rounds,
                   "batch_size": args.batch_size, "dim": 64,
                   "layers": 3, "device": args.device},
        "goal": "synth: <= 40 s per epoch on 2 CPU cores",
        "rows": rows}, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
