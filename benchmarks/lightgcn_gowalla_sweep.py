"""Gowalla settings at the 2-core machine's step budget, run on a GPU.

Each configuration trains the project's LightGCN for the number of epochs that its
measured CPU cost per step fits into the 30-minute budget of ``make bench-gowalla``
(``--cpu-epochs``: epochs the defaults fit, scaled by ``cost``, the configuration's CPU
seconds per step relative to the defaults'). Validation and test use the protocol of
benchmarks/lightgcn_gowalla.py (same hold-out, all-ranking, training items excluded), scored
on the GPU; a configuration is chosen by its best validation Recall@20, and the test figures
are only reported.

    python benchmarks/lightgcn_gowalla_sweep.py --config 'base:1.0:' \
        --config 'hard4:1.31:negative_candidates=4' [--output-dir DIR]

Prints a table; writes lightgcn-gowalla-sweep.json (every configuration's curve) and .png
(each configuration's test Recall@20 at the epoch validation chose, the published figure
drawn in; ``--replot`` redraws it from the JSON). The costs
come from the CPU that the budget is for: ``--measure-cost --device cpu`` times
``--cost-steps`` steps of each configuration there and prints each cost relative to the
first configuration's (the COST fields are then ignored).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lightgcn_gowalla import DATA, PUBLISHED, RESULTS, AllRanking, GowallaSplit, K  # noqa: E402


class GpuRanking:
    """AllRanking's metrics with the scoring and top-k on the device."""

    def __init__(self, ranking: AllRanking, device: torch.device):
        self.device = device
        self.users = np.flatnonzero(np.diff(ranking.targets.indptr) > 0)
        known = ranking.known[self.users].tocoo()
        self.known_rows = torch.as_tensor(known.row, device=device)
        self.known_cols = torch.as_tensor(known.col, device=device)
        self.targets = ranking.targets[self.users]

    def metrics(self, vectors) -> tuple[float, float]:
        from llarapp.eval.metrics import ndcg_at_k, recall_at_k

        row_of = {pid: row for row, pid in enumerate(vectors.playlist_pids)}
        query = torch.as_tensor(vectors.playlists[[row_of[u] for u in self.users]],
                                device=self.device)
        scores = query @ torch.as_tensor(vectors.items, device=self.device).T
        scores[self.known_rows, self.known_cols] = -torch.inf
        recs = scores.topk(K, dim=1).indices.cpu().numpy()
        return (float(np.mean(recall_at_k(recs, self.targets, K))),
                float(np.mean(ndcg_at_k(recs, self.targets, K))))

    def score(self, vectors, k: int) -> float:
        return self.metrics(vectors)[0]


def parse_config(spec: str) -> tuple[str, float, list[str]]:
    """``NAME:COST:KEY=VALUE,…`` as (name, cost, LightGCNConfig overrides)."""
    name, cost, overrides = spec.split(":", 2)
    return name, float(cost), [o for o in overrides.split(",") if o]


def run(name: str, cost: float, overrides: list[str], cpu_epochs: int, train, num_items: int,
        validation: GpuRanking, test: GpuRanking, test_every: int) -> dict:
    from llarapp.models.lightgcn import LightGCNConfig, LightGCNTrainer

    epochs = max(1, round(cpu_epochs / cost))
    cfg = LightGCNConfig.load(None, [f"epochs={epochs}", "val_every=5", "patience=1000",
                                     f"device={validation.device.type}", *overrides])
    trainer = LightGCNTrainer(cfg, train, num_items)
    curve, tick = [], time.perf_counter()

    def on_epoch(epoch: int, val_recall: float) -> None:
        recall, ndcg = (test.metrics(trainer.snapshot())
                        if epoch % test_every == 0 or epoch == epochs else (None, None))
        curve.append({"epoch": epoch, "val": val_recall, "test": recall, "test_ndcg": ndcg,
                      "seconds": time.perf_counter() - tick})

    result = trainer.fit(validation, on_epoch=on_epoch)
    recall, ndcg = test.metrics(result.vectors)
    row = {"name": name, "cost": cost, "epochs": epochs,
           "steps": epochs * trainer.sampler.steps_per_epoch(cfg.batch_size),
           "overrides": overrides, "chosen": {"epoch": result.best_epoch,
                                              "val": result.best_recall, "test": recall,
                                              "test_ndcg": ndcg},
           "last": curve[-1], "curve": curve}
    print(f"{name}: epochs {epochs}, chosen {result.best_epoch} val {result.best_recall:.4f} "
          f"test {recall:.4f}/{ndcg:.4f}; last val {curve[-1]['val']:.4f} test "
          f"{curve[-1]['test']:.4f}/{curve[-1]['test_ndcg']:.4f} "
          f"({time.perf_counter() - tick:.0f} s)", flush=True)
    return row


def measure_costs(specs: list[str], train, num_items: int, steps: int) -> None:
    """CPU seconds per step of each configuration, relative to the first one's."""
    from llarapp.models.lightgcn import LightGCNConfig, LightGCNTrainer

    seconds = []
    for spec in specs:
        name, _, overrides = parse_config(spec)
        cfg = LightGCNConfig.load(None, ["device=cpu", *overrides])
        trainer = LightGCNTrainer(cfg, train, num_items)
        trainer.train_epoch(max_steps=3)  # warm-up
        tick = time.perf_counter()
        trainer.train_epoch(max_steps=steps)
        seconds.append((time.perf_counter() - tick) / steps)
        print(f"{name}: {seconds[-1]:.3f} s per step, cost {seconds[-1] / seconds[0]:.2f}",
              flush=True)


def plot(runs: list[dict], path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(10, 0.45 * len(runs) + 1.5), constrained_layout=True)
    names = [f"{', '.join(r['overrides']) or 'the defaults'}, {r['epochs']} epochs"
             for r in runs]
    y = np.arange(len(runs))[::-1]
    axis.barh(y + 0.2, [r["chosen"]["test"] for r in runs], 0.4, label="test, chosen epoch")
    axis.barh(y - 0.2, [r["chosen"]["val"] for r in runs], 0.4, label="validation, best")
    for (name, (recall, _)), style in zip(PUBLISHED.items(), ("--", "-."), strict=True):
        axis.axvline(recall, color="grey", ls=style, label=f"{name} {recall}")
    axis.set_yticks(y, names, fontsize=8)
    axis.set_xlim(0.14, 0.21)
    axis.set_xlabel("Recall@20")
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4)
    axis.set_title(f"LightGCN on Gowalla at the 2-core 30-minute step budget\n(run on {machine})",
                   fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--replot", type=Path, metavar="JSON",
                        help="only redraw the plot of an earlier sweep's JSON")
    parser.add_argument("--config", action="append", default=[],
                        metavar="NAME:COST:KEY=VALUE,…",
                        help="a configuration: name, CPU cost per step relative to the "
                             "defaults, LightGCNConfig overrides")
    parser.add_argument("--cpu-epochs", type=int, default=200,
                        help="epochs of the defaults that fit the CPU budget")
    parser.add_argument("--test-every", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--measure-cost", action="store_true",
                        help="time each configuration's steps on this machine's CPU instead")
    parser.add_argument("--cost-steps", type=int, default=60)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.replot:
        sweep = json.loads(args.replot.read_text())
        plot(sweep["runs"], args.replot.with_suffix(".png"), sweep["machine"])
        return
    if not args.config:
        parser.error("name at least one --config (or --replot an earlier sweep)")

    split = GowallaSplit.load(args.data)  # the benchmark's default hold-out
    if args.measure_cost:
        measure_costs(args.config, split.fit_on, split.shape[1], args.cost_steps)
        return
    device = torch.device(args.device)
    validation = GpuRanking(AllRanking.build(split.fit_on, split.val, split.shape), device)
    testing = GpuRanking(AllRanking.build(split.train, split.test, split.shape), device)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    out = args.output_dir / "lightgcn-gowalla-sweep.json"
    machine = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    rows = []
    for spec in args.config:
        rows.append(run(*parse_config(spec), args.cpu_epochs, split.fit_on, split.shape[1],
                        validation, testing, args.test_every))
        out.write_text(json.dumps({  # after every run: a cut-off sweep keeps what it did
            "machine": machine, "torch": torch.__version__, "cpu_epochs": args.cpu_epochs,
            "runs": rows}, indent=1))
        plot(rows, out.with_suffix(".png"), machine)
    print(f"{'name':<12} {'epochs':>6} {'chosen':>6} {'val':>7} {'test':>7} {'ndcg':>7} "
          f"{'last test':>9}")
    for row in rows:
        c = row["chosen"]
        print(f"{row['name']:<12} {row['epochs']:>6} {c['epoch']:>6} {c['val']:>7.4f} "
              f"{c['test']:>7.4f} {c['test_ndcg']:>7.4f} {row['last']['test']:>9.4f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
