"""``llarapp``: every stage from the command line, for people who do not use KFP.

Each stage takes ``--config FILE.yaml`` and any number of ``--set key=value`` overrides;
``llarapp <stage> --show-config`` prints the effective configuration.
"""

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
pipeline_app = typer.Typer(help="Run or compile the KFP training pipeline.",
                           no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
console = Console(stderr=True)
C = TypeVar("C", bound=StageConfig)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override: key=value.")]
ShowOpt = Annotated[bool, typer.Option("--show-config", help="Print the config and exit.")]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="Artifact folder or s3:// prefix.")]


def _run(action: Callable[[], Any]) -> Any:
    """Run a stage; typed errors become one red line and exit code 2, not a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return action()
    except LlaraError as exc:
        console.print(f"[red]error:[/red] {type(exc).__name__}: {exc}", highlight=False)
        raise typer.Exit(2) from None


def _config(cls: type[C], path: Path | None, overrides: list[str] | None, show: bool,
            **values: Any) -> C:
    cfg = _run(lambda: cls.load(path, overrides or (), **values))
    if show:
        typer.echo(cfg.to_yaml())
        raise typer.Exit(0)
    return cfg


@app.command()
def synth(output: OutputOpt, config: ConfigOpt = None, set_: SetOpt = None,
          show_config: ShowOpt = False,
          playlists: Annotated[int | None, typer.Option(help="Number of playlists.")] = None,
          seed: Annotated[int | None, typer.Option(help="Random seed.")] = None) -> None:
    """Generate synthetic MPD-format slices (the embedded default data)."""
    from llarapp.data.synth import SynthConfig, synthesize

    cfg = _config(SynthConfig, config, set_, show_config, num_playlists=playlists, seed=seed)
    manifest = _run(lambda: synthesize(cfg, output))
    console.print(f"wrote {manifest['num_playlists']} playlists in "
                  f"{len(manifest['files'])} slices to {output}")


@app.command()
def ingest(output: OutputOpt,
           input_: Annotated[str | None, typer.Option("--input", "-i",
                             help="Folder, file or s3:// prefix of MPD slices.")] = None,
           strict: Annotated[bool | None, typer.Option(
               "--strict/--lenient", help="Stop at the first invalid record.")] = None,
           config: ConfigOpt = None, set_: SetOpt = None, show_config: ShowOpt = False) -> None:
    """Validate and clean MPD slices into Parquet tables."""
    from llarapp.data.ingest import IngestConfig
    from llarapp.data.ingest import ingest as run_ingest

    cfg = _config(IngestConfig, config, set_, show_config, input=input_, strict=strict)
    manifest = _run(lambda: run_ingest(cfg, output))
    counts = manifest["counts"]
    console.print(f"ingested {counts['playlists']} playlists, {counts['tracks']} tracks, "
                  f"{counts['interactions']} interactions; {counts['rejected']} rejected "
                  f"-> {output}")


@app.command()
def split(output: OutputOpt,
          dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Ingest artifact.")],
          config: ConfigOpt = None, set_: SetOpt = None, show_config: ShowOpt = False) -> None:
    """Hold out validation/test playlists by category, sample cold tracks."""
    from llarapp.data.dataset import Dataset
    from llarapp.data.split import SplitConfig, make_split

    cfg = _config(SplitConfig, config, set_, show_config)
    manifest = _run(lambda: make_split(cfg, Dataset.load(dataset), output))
    console.print_json(data=manifest["counts"])


@app.command()
def baselines(output: OutputOpt,
              dataset: Annotated[Path, typer.Option("--dataset", "-d")],
              split_dir: Annotated[Path, typer.Option("--split")],
              config: ConfigOpt = None, set_: SetOpt = None,
              show_config: ShowOpt = False) -> None:
    """Popularity and item-kNN recommendations for the held-out playlists."""
    from llarapp.data.dataset import Dataset, Split
    from llarapp.models.baselines import BaselinesConfig, run_baselines

    cfg = _config(BaselinesConfig, config, set_, show_config)
    manifest = _run(lambda: run_baselines(cfg, Dataset.load(dataset), Split.load(split_dir),
                                          output))
    console.print(f"{manifest['rows']} recommendation lists -> {output}")


@app.command()
def evaluate(output: OutputOpt,
             dataset: Annotated[Path, typer.Option("--dataset", "-d")],
             split_dir: Annotated[Path, typer.Option("--split")],
             recommendations: Annotated[list[Path], typer.Option(
                 "--recommendations", "-r", help="Recommendation artifacts (repeatable).")],
             config: ConfigOpt = None, set_: SetOpt = None,
             show_config: ShowOpt = False) -> None:
    """Metrics by model, category and warm/cold segment; report and MLflow run."""
    from llarapp.data.dataset import Dataset, Split
    from llarapp.eval.evaluate import EvaluateConfig
    from llarapp.eval.evaluate import evaluate as run_evaluate
    from llarapp.eval.table import print_table

    cfg = _config(EvaluateConfig, config, set_, show_config)
    result = _run(lambda: run_evaluate(cfg, Dataset.load(dataset), Split.load(split_dir),
                                       list(recommendations), output))
    print_table(result["table"], f"{cfg.split} split")
    if "mlflow" in result:
        console.print(f"MLflow run {result['mlflow']['run_id']} at "
                      f"{result['mlflow']['tracking_uri']}")


@pipeline_app.command("run")
def pipeline_run(
    data: Annotated[str | None, typer.Option(
        "--data", help="Folder or s3:// prefix of MPD slices; default: synthetic.")] = None,
    workdir: Annotated[Path, typer.Option(help="Where runs and MLflow live.")] = Path("runs"),
    set_: SetOpt = None,
) -> None:
    """Run the whole training pipeline locally with kfp.local (SubprocessRunner)."""
    from pipelines.local_run import run_locally

    _run(lambda: run_locally(data=data, workdir=workdir, overrides=set_ or []))


@pipeline_app.command("compile")
def pipeline_compile(
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("training_pipeline.yaml"),
) -> None:
    """Write the pipeline's IR YAML for a Kubeflow cluster."""
    from kfp import compiler

    from pipelines.training import training_pipeline

    compiler.Compiler().compile(training_pipeline, str(output))
    console.print(f"wrote {output}")

