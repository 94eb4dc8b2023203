"""The project's LightGCN on the LightGCN paper's own benchmark: Gowalla, all-ranking.

Protocol (../shared/data/gowalla/README.md): train on train.txt; for every test user rank
every item except their training items; Recall@20 and NDCG@20 against test.txt, averaged
over users. Early stopping never sees the test set: ``--val-users`` random users lend
``--val-fraction`` of their training items to a validation set, which the trainer scores
(Recall@20, same protocol) after each epoch; those edges are not trained on. The test
figures are computed after each epoch only to draw the curve; the headline is the epoch
that validation chose.

    python benchmarks/lightgcn_gowalla.py [--minutes 30] [--set loss=softmax --set negatives=1024]

Prints a table of the curve; writes benchmarks/results/lightgcn-gowalla.json and .png
(Recall@20 and NDCG@20 against training minutes, the published figures drawn in).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from machine import describe

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLARAPP_SHARED_DATA", REPO.parent / "shared" / "data")) / "gowalla"
RESULTS = REPO / "benchmarks" / "results"
PUBLISHED = {"paper": (0.1830, 0.1554), "reference implementation": (0.1824, 0.1547)}
K = 20


def read_user_items(path: Path) -> pd.DataFrame:
    """``user item item …`` lines as (pid, track_idx) rows."""
    users, items = [], []
    with path.open() as handle:
        for line in handle:
            user, *rest = line.split()
            users.extend([int(user)] * len(rest))
            items.extend(map(int, rest))
    return pd.DataFrame({"pid": np.asarray(users, np.int64),
                         "track_idx": np.asarray(items, np.int64)})


def hold_out(train: pd.DataFrame, users: int, fraction: float, seed: int
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(edges to train on, validation edges): ``fraction`` of ``users`` random users' items."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(train["pid"].unique(), size=users, replace=False)
    held = train["pid"].isin(chosen).to_numpy() & (rng.random(len(train)) < fraction)
    return train[~held].reset_index(drop=True), train[held].reset_index(drop=True)


@dataclass
class GowallaSplit:
    """The benchmark's data: train (with the validation edges), fit_on (without them),
    the validation and test edges, and the (users, items) shape."""

    train: pd.DataFrame
    fit_on: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    shape: tuple[int, int]

    @classmethod
    def load(cls, data: Path, val_users: int = 3000, val_fraction: float = 0.2
             ) -> GowallaSplit:
        if not (data / "train.txt").is_file():
            raise SystemExit(f"no Gowalla split at {data}: pass --data or set "
                             "LLARAPP_SHARED_DATA to the folder that holds gowalla/")
        train = read_user_items(data / "train.txt")
        test = read_user_items(data / "test.txt")
        shape = (int(max(train["pid"].max(), test["pid"].max())) + 1,
                 int(max(train["track_idx"].max(), test["track_idx"].max())) + 1)
        fit_on, val = hold_out(train, val_users, val_fraction, seed=0)
        return cls(train, fit_on, val, test, shape)


@dataclass
class AllRanking:
    """Recall@k and NDCG@k of the trained user vectors, ranking every item but the
    user's training items. Implements the trainer's ``Validator``."""

    known: sp.csr_matrix  # users × items: excluded from ranking
    targets: sp.csr_matrix  # users × items: what should be found
    batch_size: int = 2048

    @classmethod
    def build(cls, known: pd.DataFrame, targets: pd.DataFrame, shape: tuple[int, int]
              ) -> AllRanking:
        from llarapp.models.recommendations import interaction_matrix

        return cls(*(interaction_matrix(f["pid"].to_numpy(), f["track_idx"].to_numpy(), shape)
                     for f in (known, targets)))

    def metrics(self, vectors, k: int = K) -> tuple[float, float]:
        from llarapp.eval.metrics import ndcg_at_k, recall_at_k
        from llarapp.models.recommendations import top_n

        row_of = {pid: row for row, pid in enumerate(vectors.playlist_pids)}
        users = np.flatnonzero(np.diff(self.targets.indptr) > 0)
        recalls, ndcgs = [], []
        for start in range(0, len(users), self.batch_size):
            batch = users[start:start + self.batch_size]
            query = vectors.playlists[[row_of[u] for u in batch]]
            recs = top_n(query @ vectors.items.T, self.known[batch], k)
            recalls.append(recall_at_k(recs, self.targets[batch], k))
            ndcgs.append(ndcg_at_k(recs, self.targets[batch], k))
        return float(np.mean(np.concatenate(recalls))), float(np.mean(np.concatenate(ndcgs)))

    def score(self, vectors, k: int) -> float:
        return self.metrics(vectors, K)[0]


def train_and_trace(cfg, train: pd.DataFrame, num_items: int, validation: AllRanking,
                    test: AllRanking, test_every: int) -> tuple[pd.DataFrame, dict]:
    """Train; at each validation in every ``test_every`` epochs also score the test set, off
    the training clock.
    Returns the curve and the test metrics of the epoch validation chose."""
    from llarapp.models.lightgcn import LightGCNTrainer

    trainer = LightGCNTrainer(cfg, train, num_items)
    curve = []

    def on_epoch(epoch: int, val_recall: float) -> None:  # off the trainer's clock
        recall, ndcg = (test.metrics(trainer.snapshot()) if epoch % test_every == 0
                        else (np.nan, np.nan))
        curve.append({"epoch": epoch, "val_recall@20": val_recall, "test_recall@20": recall,
                      "test_ndcg@20": ndcg})

    result = trainer.fit(validation, on_epoch=on_epoch)
    frame = pd.DataFrame(curve).merge(result.history[["epoch", "loss", "elapsed"]], on="epoch")
    frame["minutes"] = frame.pop("elapsed") / 60
    recall, ndcg = test.metrics(result.vectors)
    chosen = frame[frame["epoch"] == result.best_epoch].iloc[0]
    return frame, {
        "epoch": result.best_epoch, "minutes": float(chosen["minutes"]),
        "val_recall@20": float(chosen["val_recall@20"]), "recall@20": recall, "ndcg@20": ndcg,
        "epochs_run": len(result.history),
        "train_minutes": float(result.history["elapsed"].iloc[-1]) / 60}


def plot(frame: pd.DataFrame, chosen: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    tested = frame.dropna(subset=["test_recall@20"])
    for axis, column, index in ((axes[0], "recall@20", 0), (axes[1], "ndcg@20", 1)):
        axis.plot(tested["minutes"], tested[f"test_{column}"], marker="o", ms=3,
                  label="LightGCN (ours), test")
        if column == "recall@20":
            axis.plot(frame["minutes"], frame["val_recall@20"], ls=":", label="validation")
        axis.scatter([chosen["minutes"]], [chosen[column]], s=80, facecolors="none",
                     edgecolors="black", zorder=5, label=f"chosen (epoch {chosen['epoch']})")
        for (name, values), style in zip(PUBLISHED.items(), ("--", "-."), strict=True):
            axis.axhline(values[index], color="grey", ls=style, label=f"{name} {values[index]}")
        axis.set_xlabel("training minutes")
        axis.set_ylabel(f"test {column}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--minutes", type=float, default=30.0, help="training time budget")
    parser.add_argument("--epochs", type=int, default=1000,
                        help="at most this many epochs; the learning rate anneals over "
                             "--minutes (lr_schedule=cosine_minutes), so the schedule ends with "
                             "the budget however fast the machine runs that hour")
    parser.add_argument("--val-users", type=int, default=3000)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="LightGCNConfig override (configs/lightgcn.yaml holds the defaults)")
    parser.add_argument("--test-every", type=int, default=20,
                        help="score the test set every N epochs for the curve")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from llarapp.models.lightgcn import LightGCNConfig

    split = GowallaSplit.load(args.data, args.val_users, args.val_fraction)
    train, fit_on, val, test, shape = (split.train, split.fit_on, split.val, split.test,
                                       split.shape)
    # the stage's defaults (configs/lightgcn.yaml) with the cosine over the time budget;
    # validation on a 3,000-user sample is noisy, so it runs every 5 epochs and stopping
    # waits 20 of them
    cfg = LightGCNConfig.load(None, [f"max_minutes={args.minutes}", f"epochs={args.epochs}",
                                     "lr_schedule=cosine_minutes", "val_every=5",
                                     "patience=20", *args.set])
    print(f"gowalla: {shape[0]:,} users, {shape[1]:,} items, {len(train):,} train edges "
          f"({len(val):,} held out for early stopping), {len(test):,} test edges")
    frame, chosen = train_and_trace(
        cfg, fit_on, shape[1], AllRanking.build(fit_on, val, shape),
        AllRanking.build(train, test, shape), args.test_every)

    table = Table(title=f"LightGCN on Gowalla ({cfg.loss}, {os.cpu_count()} CPU cores)")
    for column in ("epoch", "minutes", "loss", "val Recall@20", "test Recall@20",
                   "test NDCG@20"):
        table.add_column(column, justify="right")
    for row in frame.to_dict(orient="records"):
        if row["epoch"] == chosen["epoch"]:
            row.update({"epoch": f"{row['epoch']} *", "test_recall@20": chosen["recall@20"],
                        "test_ndcg@20": chosen["ndcg@20"]})
        elif np.isnan(row["test_recall@20"]):
            continue
        table.add_row(str(row["epoch"]), f"{row['minutes']:.1f}", f"{row['loss']:.4f}",
                      *(f"{row[c]:.4f}" for c in ("val_recall@20", "test_recall@20",
                                                  "test_ndcg@20")))
    for name, (recall, ndcg) in PUBLISHED.items():
        table.add_row(name, "", "", "", f"{recall:.4f}", f"{ndcg:.4f}")
    Console(width=120).print(table)
    print(f"chosen by validation: epoch {chosen['epoch']} of {chosen['epochs_run']}, "
          f"{chosen['minutes']:.1f} of {chosen['train_minutes']:.1f} training minutes: "
          f"Recall@20 {chosen['recall@20']:.4f}, NDCG@20 {chosen['ndcg@20']:.4f}")

    stem = "lightgcn-gowalla" + (f"-{args.tag}" if args.tag else "")
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    plot(frame, chosen, out / f"{stem}.png",
         f"LightGCN on Gowalla, {cfg.loss} loss: test metrics against training time")
    (out / f"{stem}.json").write_text(json.dumps({
        "machine": describe(),
        "protocol": "all-ranking, training items excluded; early stopping on held-out "
                    f"train edges ({args.val_users} users x {args.val_fraction})",
        "config": cfg.to_dict(), "published": PUBLISHED,
        "chosen": chosen,
        "curve": frame.replace({np.nan: None}).to_dict(orient="records"),
    }, indent=1))
    print(f"wrote {out / stem}.json and .png")


if __name__ == "__main__":
    main()
