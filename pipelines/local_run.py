"""Run a pipeline on this machine with ``kfp.local.SubprocessRunner``.

This is what ``make run`` does. Components import the installed ``llarapp`` package
(``use_venv=False``), so no network is needed.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console

from llarapp.config import parse_overrides
from llarapp.errors import ConfigError, PipelineError
from llarapp.eval.table import print_table
from llarapp.stages import artifact
from llarapp.tracking import default_tracking_uri
from pipelines.console import ANSI, stage_console

console = Console(width=None if os.isatty(1) else 110, soft_wrap=True)
PIPELINES = ("training", "tune", "batch")


def build_pipeline(name: str, platform: Any = None):
    """The pipeline called ``name`` with ``platform`` (a PlatformConfig) on every task."""
    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; choose one of {', '.join(PIPELINES)}")
    if name == "tune":
        from pipelines.tune import build_tune_pipeline as build
    elif name == "batch":
        from pipelines.batch import build_batch_pipeline as build
    else:
        from pipelines.training import build_training_pipeline as build
    return build(platform)


@functools.cache
def local_pipeline(name: str):
    """Built once per process: no cluster endpoints in the env (kfp.local applies env)."""
    from pipelines.platform import PlatformConfig

    return build_pipeline(name, PlatformConfig.local())


def pipeline_arguments(data: str | None, workdir: Path, overrides: list[str],
                       pipeline: str = "training") -> dict[str, Any]:
    """Defaults for a local run (sqlite MLflow and Optuna in ``workdir``), then overrides."""
    params = inspect.signature(local_pipeline(pipeline).pipeline_func).parameters
    arguments: dict[str, Any] = {"data_uri": data or "",
                                 "tracking_uri": default_tracking_uri(workdir)}
    if pipeline == "tune":
        arguments["storage"] = f"sqlite:///{workdir.resolve() / 'optuna.db'}"
    for key, value in parse_overrides(overrides).items():
        if key not in params:
            raise ConfigError(f"unknown pipeline parameter {key!r}; valid: {', '.join(params)}")
        default = params[key].default
        arguments[key] = value if default is inspect.Parameter.empty or isinstance(
            default, list) else type(default)(value)
    return arguments


def init_local(workdir: Path) -> None:
    from kfp import local

    os.environ.setdefault("TQDM_MININTERVAL", "5")
    # Expected here: components run in this environment, not in their cluster image.
    warnings.filterwarnings("ignore", "You may be attemping to run a task", RuntimeWarning)
    warnings.filterwarnings("ignore", ".*have no effect in the current local runner")
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=str(workdir / "pipeline-root"))


def run_locally(data: str | None = None, workdir: Path = Path("runs"),
                overrides: list[str] | None = None, pipeline: str = "training",
                verbose: bool = False) -> dict[str, Any]:
    """Run ``pipeline`` with kfp.local; one line per stage on the console (the full log
    goes to a file, see :mod:`pipelines.console`) unless ``verbose``."""
    workdir = workdir.resolve()
    arguments = pipeline_arguments(data, workdir, overrides or [], pipeline)
    init_local(workdir)
    console.rule(f"[bold]LLaRA++ {pipeline} pipeline (kfp.local)")
    console.print(f"data: {arguments['data_uri'] or 'synthetic MPD (embedded default)'}")
    started = time.monotonic()
    log = workdir / "logs" / f"{pipeline}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    try:
        with stage_console(log, verbose):
            task = local_pipeline(pipeline)(**arguments)
    except RuntimeError as exc:  # kfp.local's word for a failed task
        if "FAILURE" not in str(exc):
            raise
        raise PipelineError(f"{ANSI.sub('', str(exc))} Its error is above; the full log is "
                            f"{log}. Fix it and run again") from None
    if pipeline == "tune":
        console.print(f"best parameters: {task.output}")
        console.print(f"study: {arguments['storage']}")
        console.print(f"finished in {time.monotonic() - started:.0f} s")
        return {"best_params": json.loads(task.output), "storage": arguments["storage"]}
    if pipeline == "batch":
        result = summarise_batch_run(Path(task.output.path))
        console.print(f"finished in {time.monotonic() - started:.0f} s")
        return result
    evaluation = Path(task.output.path)
    result = summarise_training_run(evaluation)
    console.print(f"finished in {time.monotonic() - started:.0f} s")
    return {"evaluation": str(evaluation), **result}


def summarise_training_run(evaluation: Path) -> dict[str, Any]:
    """Print the metrics, the gate's outcome and where everything is; return them."""
    import pandas as pd

    from llarapp.eval.evaluate import headline_table

    result = json.loads((evaluation / "metrics.json").read_text())
    run_dir = evaluation.parent.parent
    opening = (evaluation / "metrics.md").read_text().split("\n# Metrics", 1)[0].strip()
    if opening:
        from rich.markdown import Markdown

        console.print(Markdown(opening))
    print_table(headline_table(pd.DataFrame(result["summary"])),
                f"{result['split']} split, one row per model", console)
    gate = result["gate"]
    registration = read_json(run_dir / artifact("register") / "manifest.json")
    deployment = read_json(run_dir / artifact("deploy") / "manifest.json")
    if registration is None or (deployment is None and result.get("verdict", {}).get("deploy")):
        missing = artifact("register") if registration is None else artifact("deploy")
        raise PipelineError(f"the run finished but {run_dir / missing} has no manifest.json; "
                            "llarapp.stages.STAGES and the pipeline's task names disagree. "
                            "Fix the stage table (tests/test_stages.py checks it)")
    served = gate.get("served_ranking") or {}
    if served:
        console.print(f"ranker:    {served['ranker']} served; served-ranking gate "
                      f"{'passed' if served['passed'] else 'REFUSED'} ({served['why']})")
    champion = gate.get("champion") or {}
    if champion:
        console.print(f"champion:  {'passed' if champion['passed'] else 'REFUSED'} "
                      f"({champion['why']})")
    console.print(f"gate:      {gate['metric']} of {gate['model']} = {gate['value']:.4f}; "
                  + ("deployed" if deployment else "deploy skipped (gate not cleared)"))
    console.print(f"artifacts: {run_dir}")
    console.print(f"report:    {evaluation / 'report.html'}")
    bundle = run_dir / artifact("export")
    console.print(f"bundle:    {bundle} (llarapp bundle-info {bundle})")
    if registration:
        console.print(f"registry:  models:/{registration['model_name']}/"
                      f"{registration['version']} ({registration['model_version']}), "
                      f"registered as candidate at {registration['storage_uri']}")
    if deployment:
        console.print(f"deploy:    {deployment['action']} {deployment['namespace']}/"
                      f"{deployment['service']} → {run_dir / artifact('deploy')}; "
                      f"alias {deployment['alias']['name']} → v{deployment['version']}")
    if result.get("mlflow"):
        run = result["mlflow"]
        console.print(f"MLflow:    run {run['run_id']} (experiment {run['experiment_id']}) "
                      f"at {run['tracking_uri']}")
        console.print(f"           view with: mlflow ui --backend-store-uri {run['tracking_uri']}")
    return {**result, "registration": registration, "deployment": deployment}


def summarise_batch_run(output: Path) -> dict[str, Any]:
    """Print what was scored, by which model version, where it went, and its metrics."""
    from llarapp.manifest import read_manifest

    summary = read_manifest(output)
    console.print(f"scored:    {summary['playlists']} playlists in {summary['shards']} shards "
                  f"with bundle {summary['model_version']}")
    console.print(f"output:    {output / summary['file']}")
    for name, value in summary["metrics"].items():
        console.print(f"metric:    {name} = {value:.4f}" if name != "playlists" else
                      f"metric:    over {value} playlists with held-out tracks")
    return {**summary, "output": str(output / summary["file"])}


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None
