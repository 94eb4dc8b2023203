"""``llarapp recommend``: batch recommendations for a file of playlists, and the
challenge-submission validator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llarapp.cli_common import ConfigOpt, SetOpt, ShowOpt, app, console, run_stage, stage_config


@app.command()
def recommend(
    input_: Annotated[str, typer.Option("--input", "-i", help=(
        "MPD slices or a challenge set: a .json[.gz] file or a folder, local or s3://."))],
    bundle: Annotated[str | None, typer.Option("--bundle", "-b", help=(
        "Serving bundle: a folder, an s3:// prefix, or models:/llarapp@<alias>."))] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help=(
        "Parquet file (pid, rank, track_uri, score, reason) or, with --format challenge, "
        "the submission CSV; local or s3://."))] = None,
    format_: Annotated[str | None, typer.Option("--format", help="parquet | challenge")] = None,
    holdout_last: Annotated[int | None, typer.Option(
        help="Hold out each playlist's last N tracks as targets and score them.")] = None,
    targets: Annotated[str | None, typer.Option(help=(
        "The full playlists (MPD JSON file or folder, local or s3://): their tracks beyond "
        "each input playlist's seeds are its targets, scored."))] = None,
    check: Annotated[Path | None, typer.Option(
        help="Check this submission against --input's challenge rules instead.")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, show_config: ShowOpt = False,
) -> None:
    """Recommend for every playlist of a file with the server's engine, or check a submission."""
    from llarapp.recommend.batch import run_recommend
    from llarapp.recommend.challenge import check_submission
    from llarapp.recommend.config import RecommendConfig
    from llarapp.recommend.playlists import read_playlists

    cfg = stage_config(RecommendConfig, config, set_, show_config, format=format_,
                  holdout_last=holdout_last, targets=targets)
    if check is not None:
        faults = run_stage(lambda: check_submission(check.read_text(), read_playlists(input_)))
        for fault in faults:
            console.print(f"[red]invalid:[/red] {fault}", highlight=False)
        if faults:
            raise typer.Exit(1)
        typer.echo(f"{check}: a valid submission for {input_}")
        return
    if not bundle or not output:
        console.print("[red]error:[/red] recommend needs --bundle and --output (or --check)")
        raise typer.Exit(2)
    summary = run_stage(lambda: run_recommend(cfg, bundle, input_, output))
    typer.echo(f"{summary['playlists']} playlists in {summary['seconds']} s "
               f"({summary['playlists_per_s']} playlists/s), model {summary['model_version']}"
               f" -> {output}")
    if summary["metrics"]:
        typer.echo("held-out metrics: " + ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in summary["metrics"].items()))
