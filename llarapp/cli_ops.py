"""Operations commands: ``pipeline run|compile|submit``, ``register``, ``deploy`` and
``registry list|promote``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llarapp.cli_common import ConfigOpt, SetOpt, ShowOpt, app, console, run_stage, stage_config

pipeline_app = typer.Typer(help="Run, compile or submit the KFP pipelines.",
                           no_args_is_help=True)
registry_app = typer.Typer(help="The MLflow model registry: versions and aliases.",
                           no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(registry_app, name="registry")

PipelineOpt = Annotated[str, typer.Option("--pipeline", "-p", help="training, tune or batch.")]
PlatformOpt = Annotated[Path | None, typer.Option(
    "--platform", help="PlatformConfig YAML: GPU label, secrets, endpoints, resources.")]
ModelNameOpt = Annotated[str, typer.Option("--model-name", help="Registered model name.")]


def _platform(path: Path | None):
    from pipelines.platform import PlatformConfig

    return run_stage(lambda: PlatformConfig.load(path))


@pipeline_app.command("run")
def pipeline_run(
    data: Annotated[str | None, typer.Option(
        "--data", help="Folder or s3:// prefix of MPD slices; default: synthetic.")] = None,
    workdir: Annotated[Path, typer.Option(help="Where runs and MLflow live.")] = Path("runs"),
    pipeline: PipelineOpt = "training",
    set_: SetOpt = None,
    verbose: Annotated[bool, typer.Option(
        help="Stream kfp.local's full logs instead of one line per stage.")] = False,
) -> None:
    """Run a whole pipeline locally with kfp.local (SubprocessRunner)."""
    from pipelines.local_run import run_locally

    run_stage(lambda: run_locally(data=data, workdir=workdir, overrides=set_ or [],
                             pipeline=pipeline, verbose=verbose))


@pipeline_app.command("compile")
def pipeline_compile(
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
    pipeline: PipelineOpt = "training", platform: PlatformOpt = None,
) -> None:
    """Write a pipeline's IR YAML for a Kubeflow cluster (LLARAPP_IMAGE picks the image)."""
    from pipelines.submit import compile_pipeline

    path = run_stage(lambda: compile_pipeline(pipeline, output or Path(f"{pipeline}_pipeline.yaml"),
                                         _platform(platform)))
    console.print(f"wrote {path}")


@pipeline_app.command("submit")
def pipeline_submit(
    host: Annotated[str, typer.Option(help="KFP API, e.g. http://ml-pipeline-ui.kubeflow")],
    pipeline: PipelineOpt = "training", platform: PlatformOpt = None,
    recurring: Annotated[bool, typer.Option(help="Create a recurring run.")] = False,
    cron: Annotated[str, typer.Option(help="6-field cron for --recurring.")] = "0 0 3 * * *",
    config: ConfigOpt = None, set_: SetOpt = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Pipeline parameter key=value (repeat).")] = None,
) -> None:
    """Compile and submit to Kubeflow Pipelines: one run, or a recurring one."""
    from llarapp.config import parse_overrides
    from pipelines.submit import SubmitConfig, submit

    cfg = stage_config(SubmitConfig, config, set_, False, host=host, pipeline=pipeline,
                  recurring=recurring, cron=cron)
    result = run_stage(lambda: submit(cfg, parse_overrides(param or []), _platform(platform)))
    console.print_json(data=result)


@pipeline_app.command("retrain-webhook")
def pipeline_retrain_webhook(
    host: Annotated[str, typer.Option(help="KFP API, e.g. http://ml-pipeline-ui.kubeflow")],
    platform: PlatformOpt = None,
    listen: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for Alertmanager's webhook.")] = 8090,
    config: ConfigOpt = None, set_: SetOpt = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Training run parameter key=value (repeat).")] = None,
) -> None:
    """Alertmanager webhook: a firing `action: retrain` alert submits the training pipeline."""
    import uvicorn

    from llarapp.config import parse_overrides
    from pipelines.retrain_webhook import RetrainConfig, create_app

    cfg = stage_config(RetrainConfig, config, set_, False, host=host)
    cfg = run_stage(lambda: cfg.replace(arguments=cfg.arguments | parse_overrides(param or [])))
    uvicorn.run(create_app(cfg, _platform(platform)), host=listen, port=port)


@app.command()
def register(
    bundle: Annotated[str, typer.Option("--bundle", help="Serving bundle folder.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Registration artifact.")],
    evaluation: Annotated[Path | None, typer.Option(help="evaluate artifact (gate).")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, show_config: ShowOpt = False,
) -> None:
    """Register a bundle as an MLflow model version (alias candidate); upload it to S3."""
    from llarapp.registry.register import RegisterConfig, run_register

    cfg = stage_config(RegisterConfig, config, set_, show_config)
    console.print_json(data=run_stage(lambda: run_register(cfg, bundle, output, evaluation)))


@app.command()
def deploy(
    output: Annotated[str, typer.Option("--output", "-o", help="Deployment artifact.")],
    version: Annotated[str, typer.Option(help="Version number or @alias.")] = "@candidate",
    config: ConfigOpt = None, set_: SetOpt = None, show_config: ShowOpt = False,
) -> None:
    """Render (or apply) the InferenceService for a version and move its alias."""
    from llarapp.deploy.config import DeployConfig
    from llarapp.deploy.stage import run_deploy

    cfg = stage_config(DeployConfig, config, set_, show_config)
    console.print_json(data=run_stage(lambda: run_deploy(cfg, version, output)))


@registry_app.command("list")
def registry_list(model_name: ModelNameOpt = "llarapp",
                  tracking_uri: Annotated[str, typer.Option()] = "") -> None:
    """Every version with its aliases, gate value and storage URI."""
    import pandas as pd

    from llarapp.registry.aliases import Registry

    rows = run_stage(lambda: Registry(model_name, tracking_uri or None).table())
    typer.echo(pd.DataFrame(rows).to_markdown(index=False) if rows else "no versions")


@registry_app.command("promote")
def registry_promote(
    version: Annotated[str, typer.Argument(help="Version number or @alias.")],
    alias: Annotated[str, typer.Option(help="staging, canary or production.")],
    model_name: ModelNameOpt = "llarapp",
    tracking_uri: Annotated[str, typer.Option()] = "",
) -> None:
    """Move an alias to a version; it must hold the alias before (candidate → staging →
    canary → production)."""
    from llarapp.registry.aliases import Registry

    move = run_stage(lambda: Registry(model_name, tracking_uri or None).move(alias, version))
    console.print(f"{move.alias}: {move.previous} → {move.version}")
