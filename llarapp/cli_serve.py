"""Serving commands: ``serve`` (the KServe model server) and ``catalogue add``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llarapp.cli_common import ConfigOpt, SetOpt, ShowOpt, _config, _run, app, console

catalogue_app = typer.Typer(help="Change a serving bundle's catalogue without retraining.",
                            no_args_is_help=True)
app.add_typer(catalogue_app, name="catalogue")


@app.command()
def serve(
    model_dir: Annotated[str | None, typer.Option(
        "--model-dir", help="Bundle folder or s3:// prefix; default: the newest bundle "
                            "under --runs.")] = None,
    runs: Annotated[Path, typer.Option(help="Where `make run` leaves its runs.")] = Path("runs"),
    config: ConfigOpt = None, set_: SetOpt = None, show_config: ShowOpt = False,
) -> None:
    """Start the KServe model server (V1 and V2) on localhost; see kserve/README.md."""
    from llarapp.serving.config import ServeConfig, latest_local_bundle
    from llarapp.serving.server import serve as run_server

    location = model_dir or str(_run(lambda: latest_local_bundle(runs)))
    cfg = _config(ServeConfig, config, set_, show_config, model_dir=location)
    console.print(f"serving {cfg.bundle_location()} on http://{cfg.http_host}:{cfg.http_port}"
                  f" as model {cfg.model_name!r}")
    run_server(cfg)


@catalogue_app.command("add")
def catalogue_add(
    bundle: Annotated[str, typer.Argument(help="Bundle folder or s3:// prefix.")],
    tracks: Annotated[Path, typer.Argument(
        help="New tracks: .json, .csv or .parquet with track_uri, track_name, artist_name, "
             "album_name.")],
    output: Annotated[str, typer.Option(
        "--output", "-o", help="New bundle folder or s3:// prefix (may be BUNDLE itself).")],
) -> None:
    """Add brand-new tracks (text encoder, then cold mapper) to a bundle, no retraining."""
    from llarapp.serving.catalogue import add_tracks, read_tracks

    result = _run(lambda: add_tracks(bundle, read_tracks(tracks), output))
    console.print_json(data=result)
