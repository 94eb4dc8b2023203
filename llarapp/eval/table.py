"""Print the headline metrics table in the terminal."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table

HEADERS = {"r_precision": "R-prec", "r_precision_artist": "R-prec (artist)",
           "ndcg": "NDCG", "clicks": "clicks"}


def print_table(table: pd.DataFrame, title: str, console: Console | None = None) -> None:
    console = console or Console()
    view = Table(title=f"Metrics — {title}", show_lines=False)
    for column in table.columns:
        view.add_column(HEADERS.get(column, column),
                        justify="right" if column not in ("model", "category") else "left")
    previous = None
    for row in table.itertuples(index=False):
        if previous is not None and row.model != previous:
            view.add_section()
        previous = row.model
        view.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(view)
