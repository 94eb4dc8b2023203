"""MLflow tracking. ``MLFLOW_TRACKING_URI`` wins; the default is sqlite in ``runs/``."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

DEFAULT_WORKDIR = Path("runs")
_BAD_METRIC_CHARS = re.compile(r"[^\w\-. :/]")


def default_tracking_uri(workdir: str | os.PathLike[str] = DEFAULT_WORKDIR) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def metric_key(name: str) -> str:
    """MLflow allows letters, digits and ``_-. :/`` in metric names (``recall@10`` is not)."""
    return _BAD_METRIC_CHARS.sub("_", name.replace("@", "_at_"))


def _experiment_id(mlflow: Any, name: str, tracking_uri: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        # Keep artifacts beside the database, not in whatever folder the process runs in.
        location = (Path(tracking_uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def start_tracking(experiment: str, tracking_uri: str | None = None) -> tuple[Any, str, str]:
    """Point mlflow at ``tracking_uri`` (default: env, else sqlite in runs/); return
    (the mlflow module, the experiment id, the URI)."""
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    user_choice = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    # MLflow 3 also exports the URI to the environment, which would make one stage's
    # explicit URI every later stage's default in this process; keep the user's own.
    if user_choice is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = user_choice
    return mlflow, _experiment_id(mlflow, experiment, uri), uri


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """MLflow-safe keys; NaN means "no such playlists", so it is skipped."""
    return {metric_key(k): float(v) for k, v in metrics.items() if v == v}


def log_run(*, experiment: str, run_name: str, params: Mapping[str, Any],
            metrics: Mapping[str, float], artifacts: Iterable[str | os.PathLike[str]] = (),
            tags: Mapping[str, str] | None = None, tracking_uri: str | None = None,
            history: Any = None) -> dict[str, str]:
    """Log one run; return its id, experiment id, tracking URI and artifact URI.

    ``history`` (a DataFrame with a ``step`` column) becomes per-step metric series."""
    mlflow, experiment_id, uri = start_tracking(experiment, tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                          tags=dict(tags or {})) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(finite_metrics(metrics))
        for path in artifacts:
            mlflow.log_artifact(str(path))
        if history is not None:
            log_history(mlflow, run.info.run_id, history)
        return {"run_id": run.info.run_id, "experiment_id": experiment_id,
                "tracking_uri": uri, "artifact_uri": run.info.artifact_uri}


def log_history(mlflow: Any, run_id: str, history: Any, chunk: int = 1000) -> None:
    """Every numeric column of ``history`` as a metric series over its ``step`` column."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(metric_key(column), float(value), now, int(step))
               for column in history.columns if column != "step"
               for step, value in zip(history["step"], history[column], strict=True)
               if value == value]
    client = mlflow.MlflowClient()
    for start in range(0, len(metrics), chunk):
        client.log_batch(run_id, metrics=metrics[start:start + chunk])
