"""Report sections from later stages: the LLaRA ranker and the quantized bundle.

Each section is a few plots plus a table, rendered into the evaluation's HTML report and
its Markdown (the KFP UI shows the Markdown).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


@dataclass
class Section:
    title: str
    table: pd.DataFrame
    figures: list[plt.Figure] = field(default_factory=list)
    note: str = ""


def _bar_axes(count: int) -> tuple[plt.Figure, list[plt.Axes]]:
    # constrained layout makes room for the legends outside each axes
    figure, axes = plt.subplots(1, count, figsize=(5.5 * count, 3.4), squeeze=False,
                                layout="constrained")
    return figure, list(axes[0])


def _legend_outside(axis: plt.Axes) -> None:
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def llara_section(evaluation: str | os.PathLike[str]) -> Section:
    """LLaRA against its ablations on the same candidates: the hybrid retrieval and
    LightGCN alone (no language model), the target moved to the first or last slot, and
    the hybrid's top list before and after the LLaRA rerank."""
    result = json.loads((Path(evaluation) / "metrics.json").read_text())
    candidates = pd.DataFrame(result["candidates"])
    ndcg = [c for c in candidates if c.startswith("ndcg@")][0]
    figure, (by_segment, extra) = _bar_axes(2)
    candidates.pivot_table(index="segment", columns="model", values="hr@1").plot.bar(
        ax=by_segment, rot=0)
    by_segment.set(title="HR@1 on the same candidates, by target segment", ylabel="HR@1")
    checks = pd.Series({**result["position_bias"], **result["rerank"]})
    checks.plot.barh(ax=extra, color="#4c72b0")
    extra.set(title="position bias (HR@1) and rerank of the hybrid's top list")
    for axis in (by_segment, extra):
        axis.grid(axis="x" if axis is extra else "y", alpha=0.3)
    _legend_outside(by_segment)
    table = candidates[["model", "segment", "playlists", "hr@1", "hr@5", ndcg]]
    return Section("LLaRA ranker and ablations", table, [figure],
                   f"{result['split']} split, schedule {result.get('schedule')}, hybrid "
                   f"prompts {result.get('hybrid_prompts')}.")


def rankers_section(bundle: str | os.PathLike[str]) -> Section:
    """Retrieval alone, LambdaMART and LLaRA reranking the same top K, and the shipped one."""
    ranker = json.loads((Path(bundle) / "manifest.json").read_text())["ranker"]
    table = pd.DataFrame(ranker.get("selection", []))
    figures = []
    if len(table):
        ndcg = [c for c in table if c.startswith("ndcg@")][0]
        figure, (axis,) = _bar_axes(1)
        table.pivot_table(index="split", columns="ranker", values=ndcg, sort=False).plot.bar(
            ax=axis, rot=0)
        axis.set(title=f"{ndcg} of the reranked top K", ylabel=ndcg)
        axis.grid(axis="y", alpha=0.3)
        _legend_outside(axis)
        figures.append(figure)
    return Section("Which ranker is served", table, figures,
                   f"Shipped: {ranker.get('kind')}, because {ranker.get('why')}. Chosen on "
                   "the validation select playlists; the test rows are only reported, and the "
                   "deploy gate refuses a served ranking below retrieval alone on test.")


def quantization_section(bundle: str | os.PathLike[str]) -> Section:
    """fp32 against the QInt8 variants: accuracy parity, size and latency."""
    report = json.loads((Path(bundle) / "report" / "quantization.json").read_text())
    variants = pd.DataFrame(report["variants"]).set_index("model")
    figure, (accuracy, latency) = _bar_axes(2)
    variants[[c for c in variants if c.endswith("hr@1")]].plot.bar(ax=accuracy, rot=0)
    accuracy.set(title="HR@1: fp32 vs int8 variants", ylabel="HR@1")
    timing = variants[[c for c in variants if c.startswith("latency_b")]]
    timing.columns = [f"batch {c[9:-3]}" for c in timing.columns]
    timing.plot.bar(ax=latency, rot=0)
    latency.set(title="ORT latency (median)", ylabel="ms")
    _legend_outside(accuracy)
    _legend_outside(latency)
    parity = report.get("int8_parity", {})
    note = (f"Shipped: {report['chosen']} ({report['why']}). int8 parity gate: "
            f"{'passed' if parity.get('passed') else 'FAILED'} (validation |ΔHR@1| "
            f"{parity.get('val_delta_hr@1', float('nan')):.4f} ≤ "
            f"{parity.get('max_delta_hr', float('nan'))}). Text encoder mean cosine "
            f"{report['text_encoder']['mean_cosine']:.4f}; ranker ORT vs torch max "
            f"|Δ| {report['ranker_parity']:.1e}.")
    return Section("Quantization parity", variants.reset_index(), [figure], note)
