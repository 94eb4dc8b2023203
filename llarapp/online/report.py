"""Score replayed answers (hit rate and NDCG at k, per model version) and write the report."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from llarapp.eval.metrics import hits_matrix, ndcg_at_k, relevance_matrix
from llarapp.eval.plots import save_grid
from llarapp.online.replay import Replay
from llarapp.online.simulate import ERROR_VERSION
from llarapp.storage import atomic_dir, atomic_write_bytes


def score(rows: pd.DataFrame, k: int) -> pd.DataFrame:
    """``rows`` with ``hit`` and ``ndcg`` at k (NaN for failed requests)."""
    vocabulary = {uri: i for i, uri in enumerate(
        dict.fromkeys(u for column in ("recommended", "targets") for uris in rows[column]
                      for u in uris))}
    recs = np.full((len(rows), k), -1, np.int64)
    for i, uris in enumerate(rows["recommended"]):
        recs[i, :min(k, len(uris))] = [vocabulary[u] for u in uris[:k]]
    relevant = relevance_matrix([np.array([vocabulary[u] for u in t], np.int64)
                                 for t in rows["targets"]], max(1, len(vocabulary)))
    answered = (rows["status"] == 200).to_numpy()
    out = rows.copy()
    out["hit"] = np.where(answered, hits_matrix(recs, relevant).any(axis=1), np.nan)
    out["ndcg"] = np.where(answered, ndcg_at_k(recs, relevant, k), np.nan)
    return out


def _summary(scored: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    grouped = scored.groupby(by, sort=True)
    return pd.DataFrame({
        "requests": grouped.size(),
        "errors": grouped["status"].agg(lambda s: int((s != 200).sum())),
        "hit_rate": grouped["hit"].mean(), "ndcg": grouped["ndcg"].mean(),
        "p50_ms": grouped["latency_ms"].median(),
        "p95_ms": grouped["latency_ms"].quantile(0.95)}).reset_index()


def summarise(scored: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per model version, and per model version × challenge category."""
    return _summary(scored, ["model_version"]), _summary(scored, ["model_version", "category"])


def write_report(folder: str | os.PathLike[str], scored: pd.DataFrame,
                 replays: Sequence[Replay], settings: dict[str, Any]) -> dict[str, Any]:
    """summary.json, report.md, online.png, the scored rows and the requests sent
    (requests.jsonl, one V1 instance per line: what ``llarapp drift report`` reads)."""
    by_version, by_category = summarise(scored)
    answered = by_category[by_category["model_version"] != ERROR_VERSION]
    summary = {"settings": settings, "by_version": by_version.to_dict("records"),
               "by_category": by_category.to_dict("records")}
    with atomic_dir(folder) as out:
        scored.to_parquet(out / "results.parquet", index=False)
        lines = "".join(json.dumps(r.instance) + "\n" for r in replays)
        atomic_write_bytes(out / "requests.jsonl", lines.encode())
        atomic_write_bytes(out / "summary.json",
                           json.dumps(summary, indent=2, default=float).encode())
        if not answered.empty:
            save_grid(answered, "category", "model_version", ["hit_rate", "ndcg"],
                      out / "online.png", f"online hit rate and NDCG@{settings['k']} by "
                      "model version", bars=True)
        markdown = (f"# Online evaluation: {len(scored)} replayed playlists\n\n"
                    f"Server {settings['url']}, split {settings['split']}, k={settings['k']}.\n\n"
                    f"## By model version\n\n{by_version.to_markdown(index=False, floatfmt='.4f')}"
                    f"\n\n## By model version and category\n\n"
                    f"{by_category.to_markdown(index=False, floatfmt='.4f')}\n\n"
                    "![hit rate and NDCG by version](online.png)\n")
        atomic_write_bytes(out / "report.md", markdown.encode())
    return summary
