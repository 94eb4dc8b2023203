"""The evaluation report: one self-contained HTML page with plots and the tables."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from llarapp.eval.plots import legend_overlaps  # noqa: E402
from llarapp.eval.sections import Section  # noqa: E402
from llarapp.storage import atomic_write_bytes  # noqa: E402

CATEGORY_ORDER = ["title_only", "first_1", "first_5", "first_10", "first_25", "first_100",
                  "random_k", "all"]


def _img(figure: plt.Figure) -> str:
    """The figure as an inline PNG; ``data-legend-overlaps`` records, from matplotlib's
    layout at save time, how many legends cover another axes (0 for a readable plot)."""
    overlaps = legend_overlaps(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    title = figure.axes[0].get_title() if figure.axes else "plot"
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode()
    return (f'<img src="data:image/png;base64,{data}" alt="{html.escape(title)}" '
            f'data-legend-overlaps="{len(overlaps)}" title="{html.escape("; ".join(overlaps))}">')


def _bars(summary: pd.DataFrame, metric: str, by: str, title: str) -> str:
    frame = summary.pivot_table(index=by, columns="model", values=metric)
    if by == "category":
        frame = frame.reindex([c for c in CATEGORY_ORDER if c in frame.index])
    figure, axis = plt.subplots(figsize=(7, 3.2))
    frame.plot.bar(ax=axis, rot=0)
    axis.set_title(title)
    axis.set_ylabel(metric)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(title="model", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _img(figure)


def _section_html(section: Section) -> str:
    images = "\n".join(_img(f) for f in section.figures)
    return (f"<h2>{html.escape(section.title)}</h2><p>{html.escape(section.note)}</p>{images}"
            f"{section.table.to_html(index=False, float_format='%.4f')}")


def _markdown_html(text: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(text) if text else ""


def section_markdown(section: Section) -> str:
    return (f"## {section.title}\n\n{section.note}\n\n"
            f"{section.table.to_markdown(index=False, floatfmt='.4f')}\n")


def write_report(path: Path, summary: pd.DataFrame, table: pd.DataFrame, split: str,
                 sections: Sequence[Section] = (), opening: str = "",
                 headline: pd.DataFrame | None = None) -> None:
    """``opening``: the verdict (Markdown), shown first; ``headline``: one row per model,
    shown before the plots. The per-category tables are folded."""
    all_targets = summary[summary["segment"] == "all"]
    overall = summary[summary["category"] == "all"]
    plots = [
        _bars(all_targets, "r_precision", "category", "R-precision by category"),
        _bars(all_targets, "ndcg", "category", "NDCG by category"),
        _bars(all_targets, "clicks", "category", "Recommended-songs clicks (lower is better)"),
        _bars(overall, "r_precision", "segment",
              "R-precision by target segment (cold = no training interactions)"),
    ]
    images = "\n".join(plots)
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>LLaRA++ evaluation ({html.escape(split)})</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 7px}}
img{{max-width:49%}}</style></head><body>
<h1>LLaRA++ evaluation — {html.escape(split)} split</h1>
{_markdown_html(opening)}
{"" if headline is None else "<h2>Headline metrics</h2>" + headline.to_html(
    index=False, float_format="%.4f", na_rep="")}
{images}
<details><summary><h2 style="display:inline">Metrics by category</h2></summary>
{table.to_html(index=False, float_format="%.4f")}</details>
{"".join(_section_html(s) for s in sections)}
<details><summary><h2 style="display:inline">All breakdowns</h2></summary>
{summary.to_html(index=False, float_format="%.4f")}</details>
</body></html>"""
    atomic_write_bytes(path, page.encode())
