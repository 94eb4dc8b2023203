"""What every ``llarapp`` command shares: the app, option types, error handling."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from llarapp.config import StageConfig
from llarapp.errors import LlaraError

app = typer.Typer(help="LLaRA++ cold-start music recommendation.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = Console(stderr=True)
C = TypeVar("C", bound=StageConfig)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override: key=value.")]
ShowOpt = Annotated[bool, typer.Option("--show-config", help="Print the config and exit.")]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="Artifact folder or s3:// prefix.")]
DatasetOpt = Annotated[Path, typer.Option("--dataset", "-d", help="Ingest artifact.")]
SplitsOpt = Annotated[Path, typer.Option("--splits", help="split artifact.")]
EmbeddingsOpt = Annotated[Path, typer.Option("--embeddings", help="text_embed artifact.")]
GraphOpt = Annotated[Path, typer.Option("--graph", help="lightgcn artifact.")]
MapperOpt = Annotated[Path, typer.Option("--mapper", help="cold_mapper artifact.")]
RetrievedOpt = Annotated[Path, typer.Option("--retrieved", help="retrieve artifact.")]


def run_stage(action: Callable[[], Any]) -> Any:
    """Run a stage; typed errors become one red line and exit code 2, not a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return action()
    except LlaraError as exc:
        console.print(f"[red]error:[/red] {type(exc).__name__}: {exc}", highlight=False)
        raise typer.Exit(2) from None


def stage_config(cls: type[C], path: Path | None, overrides: list[str] | None, show: bool,
            **values: Any) -> C:
    cfg = run_stage(lambda: cls.load(path, overrides or (), **values))
    if show:
        typer.echo(cfg.to_yaml())
        raise typer.Exit(0)
    return cfg
