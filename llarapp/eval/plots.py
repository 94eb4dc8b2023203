"""Small figures written next to a stage's artifacts (training curves, per-tag bars)."""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from llarapp.storage import atomic_write_bytes  # noqa: E402


def legend_overlaps(figure: plt.Figure) -> list[str]:
    """Legends whose box overlaps another axes' area (its labels and title included), as
    laid out when the figure is drawn: what makes a legend unreadable in the report."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    found = []
    for owner in figure.axes:
        legend = owner.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent(renderer)
        for other in figure.axes:
            if other is not owner and box.overlaps(other.get_tightbbox(renderer)):
                found.append(f"the legend of '{owner.get_title()}' covers "
                             f"'{other.get_title()}'")
    return found


def save_figure(figure: plt.Figure, path: str | os.PathLike[str]) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def save_curves(history: pd.DataFrame, x: str, columns: list[str],
                path: str | os.PathLike[str], title: str) -> None:
    """One panel per column of ``history`` against ``x`` (e.g. loss and val recall)."""
    figure, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3), squeeze=False)
    for axis, column in zip(axes[0], columns, strict=True):
        axis.plot(history[x], history[column], marker="o", markersize=3)
        axis.set_xlabel(x)
        axis.set_title(column)
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    save_figure(figure, path)


def save_grid(frame: pd.DataFrame, x: str, series: str, columns: list[str],
              path: str | os.PathLike[str], title: str, bars: bool = False) -> None:
    """One panel per column: ``column`` against ``x``, one line (or bar) per ``series``."""
    columns = list(dict.fromkeys(columns))
    figure, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3), squeeze=False)
    for axis, column in zip(axes[0], columns, strict=True):
        table = frame.pivot_table(index=x, columns=series, values=column, sort=False)
        if bars:
            table.plot.bar(ax=axis, rot=20)
        else:
            table.plot(ax=axis, marker="o", markersize=3)
        axis.set_title(column)
        axis.grid(alpha=0.3)
    figure.suptitle(title, y=1.04)
    save_figure(figure, path)


def save_bars(values: pd.Series, path: str | os.PathLike[str], title: str, xlabel: str
              ) -> None:
    figure, axis = plt.subplots(figsize=(6, max(2.0, 0.22 * len(values))))
    values.sort_values().plot.barh(ax=axis)
    axis.set_xlabel(xlabel)
    axis.set_title(title)
    axis.grid(axis="x", alpha=0.3)
    save_figure(figure, path)
