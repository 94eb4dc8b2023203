"""Served quality: the engine's end-to-end ranking on a split's held-out playlists, with the
bundle's retrieval index and with exact numpy scoring, at the same model.

Each held-out playlist (RecSys Challenge category: its title and its visible seed tracks)
goes through ``Engine.recommend`` exactly as a request would: title encoder, query,
retrieval, the shipped ranker, seeds excluded. NDCG@10 and recall@10 are computed against
its hidden tracks, once with the index and once with the index switched off, together
with the share of the ranker's candidates the two paths agree on.

    python benchmarks/served_quality.py --bundle BUNDLE --splits RUN/split/splits

Writes benchmarks/results/served-quality[-TAG].json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llarapp.data.dataset import Split  # noqa: E402
from llarapp.eval.metrics import ndcg_at_k, recall_at_k, relevance_matrix  # noqa: E402
from llarapp.models.retrieve import query_types  # noqa: E402
from llarapp.serving.bundle import Bundle  # noqa: E402
from llarapp.serving.engine import Engine, Request  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def served_lists(engine: Engine, requests: list[Request], k: int, batch: int) -> np.ndarray:
    """(playlists, k) catalogue rows of the served recommendations, -1 padded."""
    out = np.full((len(requests), k), -1, np.int64)
    for start in tqdm(range(0, len(requests), batch), desc="served", unit="batch"):
        for row, response in enumerate(engine.recommend(requests[start:start + batch])):
            items = [engine.row_of[r.track_uri] for r in response.recommendations]
            out[start + row, :len(items)] = items
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--splits", type=Path, required=True, help="the run's split artifact")
    parser.add_argument("--which", default="test", choices=("val", "test"))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    engine = Engine(Bundle.load(args.bundle))
    if engine.index is None:
        raise SystemExit(f"{args.bundle} ships no retrieval index; export it with "
                         "index_min_tracks at most its catalogue size")
    heldout = Split.load(args.splits).heldout_for(args.which)
    requests = [Request(name if isinstance(name, str) else "",
                        engine.uris[np.asarray(seeds, np.int64)].tolist(),
                        k=max(args.k, engine.num_candidates))
                for name, seeds in zip(heldout["name"], heldout["seeds"], strict=True)]
    relevant = relevance_matrix(heldout["targets"].tolist(), len(engine.uris))
    index = engine.index
    lists = {"index": served_lists(engine, requests, engine.num_candidates, args.batch)}
    engine.index = None  # the exact path: every track scored in numpy
    lists["exact"] = served_lists(engine, requests, engine.num_candidates, args.batch)
    engine.index = index
    rows = [{"retrieval": path, "playlists": len(requests),
             "ndcg@10": float(np.nanmean(ndcg_at_k(found, relevant, args.k))),
             "recall@10": float(np.nanmean(recall_at_k(found, relevant, args.k)))}
            for path, found in lists.items()]
    shared = np.array([len(set(a) & set(b)) / engine.num_candidates
                       for a, b in zip(lists["index"], lists["exact"], strict=True)])
    agreement = float(shared.mean())
    by_kind = pd.Series(shared).groupby(query_types(heldout)).mean().to_dict()
    change = rows[0]["ndcg@10"] / rows[1]["ndcg@10"] - 1
    table = pd.DataFrame(rows)
    text = (f"# Served quality on the {args.which} split ({len(requests)} playlists)\n\n"
            f"{table.to_markdown(index=False, floatfmt='.4f')}\n\n"
            f"Index against exact: NDCG@10 {change:+.2%}; the served top "
            f"{engine.num_candidates} share {agreement:.3f} of their tracks ("
            + ", ".join(f"{k} {v:.3f}" for k, v in by_kind.items()) + "). Bundle "
            f"{engine.bundle.version}, ranker {engine.bundle.ranker_kind}.\n")
    print(text)
    stem = RESULTS / ("served-quality" + (f"-{args.tag}" if args.tag else ""))
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(
        {"bundle": str(args.bundle), "split": str(args.splits), "rows": rows,
         "ndcg_change": change, "top_agreement": agreement,
         "top_agreement_by_kind": by_kind, "index": engine.bundle.index}, indent=2))


if __name__ == "__main__":
    main()
