"""Serving commands: ``serve`` (the KServe model server) and ``catalogue add``."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from llarapp.cli_common import (
    ConfigOpt,
    SetOpt,
    ShowOpt,
    app,
    console,
    run_stage,
    stage_config,
)

catalogue_app = typer.Typer(help="Change a serving bundle's catalogue without retraining.",
                            no_args_is_help=True)
app.add_typer(catalogue_app, name="catalogue")


def serve(runs: Path, config: Path | None, set_: list[str] | None, show_config: bool,
          **flags: str | None) -> None:
    """Start the KServe model server (V1, V2) with `python -m llarapp.serving`'s flags."""
    from llarapp.serving.config import ServeConfig, given_flags, latest_local_bundle, parse_flag
    from llarapp.serving.server import serve as run_server

    values = run_stage(lambda: {name: parse_flag(name, text)
                                for name, text in given_flags(flags).items()})
    if not values.get("model_dir"):
        values["model_dir"] = str(run_stage(lambda: latest_local_bundle(runs)))
    cfg = stage_config(ServeConfig, config, set_, show_config, **values)
    console.print(f"serving {cfg.bundle_location()} on http://{cfg.http_host}:{cfg.http_port}"
                  f" as model {cfg.model_name!r}")
    run_server(cfg)


def _serve_signature() -> inspect.Signature:
    """serve()'s options: --runs, --config, --set and --show-config, then one per
    ServeConfig flag (typer reads the signature, so the flags come from the dataclass)."""
    from llarapp.serving.config import flag_help, flag_settings

    def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation=annotation)

    runs = Annotated[Path, typer.Option(help="Where `make run` leaves its runs; without "
                                             "--model_dir the newest bundle there is served.")]
    return inspect.Signature([
        option("runs", runs, Path("runs")), option("config", ConfigOpt, None),
        option("set_", SetOpt, None), option("show_config", ShowOpt, False),
        *(option(s.name, Annotated[str | None, typer.Option(f"--{s.name}", metavar="VALUE",
                                                            help=flag_help(s))], None)
          for s in flag_settings())])


serve.__signature__ = _serve_signature()  # type: ignore[attr-defined]
app.command("serve")(serve)


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

    result = run_stage(lambda: add_tracks(bundle, read_tracks(tracks), output))
    console.print_json(data=result)
