"""Does the reranker need more training questions? Protocol (b) against the questions'
number and origin, with LambdaMART (seconds to fit) standing in for every reranker.

1. Learning curve: LambdaMART fitted on random shares of the validation playlists (their
   questions and prefix questions, as eval-llara fits it), scored on the test lists;
   ``--repeats`` draws per share.
2. Out of fold: ``--fold-share`` of the training playlists (by a pid hash) are held out of
   an auxiliary LightGCN and cold mapper (the stages' defaults, trained here). Their
   questions are drawn as the split draws held-out ones (the RecSys categories), widened
   with prefix questions, and retrieved by the tuned hybrid over the auxiliary models, so
   their features are as unseen as the validation ones (the graph-first share of each
   question set is printed beside the test split's). LambdaMART is fitted on validation,
   on out-of-fold, and on both, with the default trees and a larger model.

    python benchmarks/ranker_questions.py --run <a `make run DATA=../shared/data/mpd-popular` run>

Writes benchmarks/results/ranker-questions.{json,md,png}. The auxiliary models are kept in
--work and reused when it already holds them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from llara_ablations import ARTIFACTS, latest_run  # noqa: E402
from machine import describe  # noqa: E402

from llarapp.data.dataset import Dataset, Split  # noqa: E402
from llarapp.data.split import SCHEMA_VERSION, SplitConfig, assign_categories  # noqa: E402
from llarapp.manifest import write_manifest  # noqa: E402
from llarapp.rerank.lambdamart import LambdaMart, LambdaMartParams  # noqa: E402
from llarapp.rerank.lists import (  # noqa: E402
    RetrievedLists,
    graph_first_share,
    list_metrics,
    prefix_questions,
    retrieved_lists,
)
from llarapp.storage import atomic_dir  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
K, METRIC_K = 20, 10  # eval-llara's candidates and NDCG cut-off
MODELS = {"default (200 trees, 7 leaves)": LambdaMartParams(),
          "larger (400 trees, 15 leaves)": LambdaMartParams(trees=400, leaves=15)}


def fold_of(pids: np.ndarray, share: float) -> np.ndarray:
    """True for the pids in the fold: a multiplicative hash, salted so that it is not the
    fit/select split's."""
    hashed = (pids.astype(np.uint64) * np.uint64(2654435761) + np.uint64(12345)) % (1 << 32)
    return hashed < share * (1 << 32)


def out_of_fold_questions(dataset: Dataset, split: Split, share: float, seed: int = 0
                          ) -> pd.DataFrame:
    """Held-out questions (the split's columns, split "oof") for the fold's named training
    playlists with at least two tracks, drawn as the split draws them."""
    pids = np.unique(split.train["pid"].to_numpy())
    names = dataset.playlists.set_index("pid")["name"].fillna("").str.strip()
    pids = pids[fold_of(pids, share) & names.loc[pids].ne("").to_numpy()]
    edges = dataset.interactions[dataset.interactions["pid"].isin(pids)]
    tracks = {pid: group["track_idx"].to_numpy() for pid, group in
              edges.sort_values(["pid", "pos"], kind="stable").groupby("pid", sort=True)}
    pids = np.array([p for p in pids if len(tracks[p]) > 1], np.int64)
    categories, seeds = assign_categories(np.array([len(tracks[p]) for p in pids]),
                                          SplitConfig(), np.random.default_rng(seed))
    return pd.DataFrame({
        "pid": pids, "name": names.loc[pids].to_numpy(), "split": "oof",
        "category": categories, "num_seeds": seeds.astype(np.int32),
        "seeds": [tracks[p][:n].astype(np.int32) for p, n in zip(pids, seeds, strict=True)],
        "targets": [tracks[p][n:].astype(np.int32) for p, n in zip(pids, seeds, strict=True)]})


def write_fold_split(split: Split, questions: pd.DataFrame, output: Path) -> Split:
    """The split with the fold's playlists out of train and their questions held out."""
    with atomic_dir(output) as folder:
        split.train[~split.train["pid"].isin(questions["pid"])].reset_index(drop=True
                                                                           ).to_parquet(
            folder / "train.parquet", index=False)
        pd.concat([split.heldout, questions], ignore_index=True).to_parquet(
            folder / "heldout.parquet", index=False)
        for name in ("cold_tracks", "next_track"):
            shutil.copyfile(split.folder / f"{name}.parquet", folder / f"{name}.parquet")
        write_manifest(folder, "split", SCHEMA_VERSION, config=split.manifest["config"],
                       dataset_hash=split.manifest["dataset_hash"],
                       out_of_fold=len(questions))
    return Split.load(output)


def fold_sources(main, questions: pd.DataFrame, work: Path):
    """The run's Sources with the auxiliary split, LightGCN and cold mapper."""
    from llarapp.llara.examples import Sources
    from llarapp.models.cold_mapper import ColdMapper, ColdMapperConfig, run_cold_mapper
    from llarapp.models.graph import GraphEmbeddings
    from llarapp.models.lightgcn import LightGCNConfig, run_lightgcn

    split = write_fold_split(main.split, questions, work / "split")
    if not (work / "graph").is_dir():
        run_lightgcn(LightGCNConfig.load(None, []), main.dataset, split, work / "graph")
    graph = GraphEmbeddings.load(work / "graph").vectors
    if not (work / "mapper").is_dir():
        run_cold_mapper(ColdMapperConfig.load(None, []), main.dataset, split, main.text, graph,
                        work / "mapper")
    return Sources(main.dataset, split, main.text, graph, ColdMapper.load(work / "mapper"),
                   main.hybrid_params)


def joined(parts: list[RetrievedLists]) -> RetrievedLists:
    return RetrievedLists(pd.concat([p.heldout for p in parts], ignore_index=True),
                          *(np.concatenate([getattr(p, name) for p in parts]) for name in
                            ("candidates", "features", "labels", "graph_queries")))


def fitted_metrics(train: RetrievedLists, test: RetrievedLists, params: LambdaMartParams,
                   num_items: int) -> dict[str, float]:
    model = LambdaMart.fit(train.features, train.labels, params)
    return list_metrics(test, model.score(test.features), num_items, METRIC_K)


def learning_curve(val: RetrievedLists, test: RetrievedLists, shares: list[float],
                   repeats: int, num_items: int) -> list[dict]:
    pids, rng, rows = val.heldout["pid"].unique(), np.random.default_rng(0), []
    for share in shares:
        draws = 1 if share == 1 else repeats
        scores = []
        for _ in range(draws):
            chosen = rng.choice(pids, int(round(share * len(pids))), replace=False)
            subset = val.subset(val.heldout["pid"].isin(chosen).to_numpy())
            scores.append(fitted_metrics(subset, test, LambdaMartParams(), num_items)
                          [f"ndcg@{METRIC_K}"])
        rows.append({"share": share, "playlists": int(round(share * len(pids))),
                     "questions": len(subset), "ndcg_mean": float(np.mean(scores)),
                     "ndcg_std": float(np.std(scores)), "draws": draws})
    return rows


def plot(curve: list[dict], fold_rows: list[dict], retrieval: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4), constrained_layout=True)
    frame = pd.DataFrame(curve)
    axis.errorbar(frame["questions"], frame["ndcg_mean"], yerr=frame["ndcg_std"], marker="o",
                  capsize=3, label="validation questions (share of playlists)")
    for row in fold_rows:
        if row["model"] == next(iter(MODELS)):
            axis.scatter([row["questions"]], [row[f"ndcg@{METRIC_K}"]], marker="s", s=50,
                         label=f"{row['training']}")
    axis.axhline(retrieval, color="grey", ls="--", label=f"retrieval alone {retrieval:.4f}")
    axis.axhline(1.15 * retrieval, color="grey", ls=":", label="1.15 × retrieval")
    axis.set_xlabel("training questions")
    axis.set_ylabel(f"test NDCG@{METRIC_K} (LambdaMART)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="pipeline run (default: newest)")
    parser.add_argument("--fold-share", type=float, default=0.25)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=REPO / ".bench" / "ranker-questions")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if not 0 < args.fold_share < 1:
        raise SystemExit("--fold-share must be in (0, 1)")

    from llarapp.llara.examples import Sources

    run = args.run or latest_run()
    started = time.perf_counter()
    main_sources = Sources.load(*(run / ARTIFACTS[k] for k in ARTIFACTS))
    split, num_items = main_sources.split, main_sources.num_items
    questions = out_of_fold_questions(main_sources.dataset, split, args.fold_share)
    fold = fold_sources(main_sources, questions, args.work / f"fold-{args.fold_share}")

    val_heldout = split.heldout_for("val")
    lists = {"validation": retrieved_lists(main_sources, main_sources.catalogue_features,
                                           prefix_questions(val_heldout), K, desc="validation"),
             "out of fold": retrieved_lists(fold, fold.catalogue_features,
                                            prefix_questions(questions), K, desc="out of fold")}
    test = retrieved_lists(main_sources, main_sources.catalogue_features,
                           split.heldout_for("test"), K, desc="test")
    originals = {"validation": len(val_heldout), "out of fold": len(questions)}
    graph_first = {"test": graph_first_share(test)} | {
        name: graph_first_share(l_.subset(np.arange(len(l_)) < originals[name]))
        for name, l_ in lists.items()}
    retrieval = list_metrics(test, None, num_items, METRIC_K)

    curve = learning_curve(lists["validation"], test, args.shares, args.repeats, num_items)
    fold_rows = []
    for training, train in (*lists.items(), ("both", joined(list(lists.values())))):
        for model, params in MODELS.items():
            fold_rows.append({"training": training, "model": model, "questions": len(train)}
                             | fitted_metrics(train, test, params, num_items))

    ndcg = f"ndcg@{METRIC_K}"
    lines = [f"# Reranker training questions ({run.name}, {os.cpu_count()} CPU cores)", "",
             f"Test split: {len(test)} playlists; retrieval alone NDCG@{METRIC_K} "
             f"{retrieval[ndcg]:.4f} (1.15× is {1.15 * retrieval[ndcg]:.4f}).", "",
             "Graph model ranks a positive first: " + ", ".join(
                 f"{k} {v:.3f}" for k, v in graph_first.items()), "",
             "## Learning curve (validation playlists)", "",
             "| share | playlists | questions | test NDCG@10 | std | draws |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['share']} | {r['playlists']} | {r['questions']} | {r['ndcg_mean']:.4f} | "
              f"{r['ndcg_std']:.4f} | {r['draws']} |" for r in curve]
    lines += ["", f"## Out of fold ({len(questions)} training playlists held out of an "
              "auxiliary LightGCN and cold mapper)", "",
              "| trained on | model | questions | test NDCG@10 | Recall@10 | R-precision |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['training']} | {r['model']} | {r['questions']} | {r[ndcg]:.4f} | "
              f"{r[f'recall@{METRIC_K}']:.4f} | {r['r_precision']:.4f} |" for r in fold_rows]
    report = "\n".join(lines) + "\n"
    print(report)

    stem = RESULTS / ("ranker-questions" + (f"-{args.tag}" if args.tag else ""))
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(report)
    plot(curve, fold_rows, retrieval[ndcg], stem.with_suffix(".png"))
    stem.with_suffix(".json").write_text(json.dumps({
        "machine": describe(),
        "run": str(run), "fold_share": args.fold_share, "candidates": K,
        "retrieval": retrieval, "graph_first_share": graph_first,
        "learning_curve": curve, "out_of_fold": fold_rows,
        "seconds": time.perf_counter() - started}, indent=1))
    print(f"wrote {stem}.json, .md and .png")


if __name__ == "__main__":
    main()
