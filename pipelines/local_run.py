"""Run the training pipeline on this machine with ``kfp.local.SubprocessRunner``.

This is what ``make run`` does. Components import the installed ``llarapp`` package
(``use_venv=False``), so no network is needed.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console

from llarapp.config import parse_overrides
from llarapp.errors import ConfigError
from llarapp.eval.table import print_table
from llarapp.tracking import default_tracking_uri

console = Console(width=None if os.isatty(1) else 110, soft_wrap=True)


def pipeline_arguments(data: str | None, workdir: Path, overrides: list[str]
                       ) -> dict[str, Any]:
    import inspect

    from pipelines.training import training_pipeline

    params = inspect.signature(training_pipeline.pipeline_func).parameters
    arguments: dict[str, Any] = {
        "data_uri": data or "",
        "tracking_uri": default_tracking_uri(workdir),
    }
    for key, value in parse_overrides(overrides).items():
        if key not in params:
            raise ConfigError(f"unknown pipeline parameter {key!r}; valid: {', '.join(params)}")
        arguments[key] = type(params[key].default)(value)
    return arguments


def run_locally(data: str | None = None, workdir: Path = Path("runs"),
                overrides: list[str] | None = None) -> dict[str, Any]:
    from kfp import local

    from pipelines.training import training_pipeline

    workdir = workdir.resolve()
    os.environ.setdefault("TQDM_MININTERVAL", "5")
    # Expected here: components run in this environment, not in their cluster image.
    warnings.filterwarnings("ignore", "You may be attemping to run a task", RuntimeWarning)
    warnings.filterwarnings("ignore", ".*have no effect in the current local runner")
    arguments = pipeline_arguments(data, workdir, overrides or [])
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=str(workdir / "pipeline-root"))
    console.rule("[bold]LLaRA++ training pipeline (kfp.local)")
    console.print(f"data: {arguments['data_uri'] or 'synthetic MPD (embedded default)'}")
    started = time.monotonic()
    task = training_pipeline(**arguments)
    evaluation = Path(task.output.path)
    result = json.loads((evaluation / "metrics.json").read_text())
    import pandas as pd

    from llarapp.eval.evaluate import metrics_table

    print_table(metrics_table(pd.DataFrame(result["summary"])), f"{result['split']} split",
                console)
    run_dir = evaluation.parent.parent
    for report in (run_dir / "eval-llara" / "evaluation" / "metrics.md",
                   run_dir / "export" / "bundle" / "report" / "quantization.md"):
        if report.is_file():
            console.print(report.read_text())
    console.print(f"gate: {result['gate']['metric']} of {result['gate']['model']} = "
                  f"{result['gate']['value']:.4f}")
    console.print(f"artifacts: {evaluation.parent.parent}")
    console.print(f"report:    {evaluation / 'report.html'}")
    if (run_dir / "export" / "bundle").is_dir():
        console.print(f"bundle:    {run_dir / 'export' / 'bundle'} "
                      "(llarapp bundle-info <bundle> to inspect)")
    if result.get("mlflow"):
        run = result["mlflow"]
        console.print(f"MLflow:    run {run['run_id']} (experiment {run['experiment_id']}) "
                      f"at {run['tracking_uri']}")
        console.print(f"           view with: mlflow ui --backend-store-uri {run['tracking_uri']}")
    console.print(f"finished in {time.monotonic() - started:.0f} s")
    return {"evaluation": str(evaluation), **result}
