"""Compile a pipeline to IR YAML and submit it to a Kubeflow Pipelines API."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llarapp.config import StageConfig, require
from pipelines.local_run import PIPELINES, build_pipeline
from pipelines.platform import PlatformConfig


def compile_pipeline(name: str, output: Path, platform: PlatformConfig | None = None) -> Path:
    from kfp import compiler

    pipeline = build_pipeline(name, platform)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, str(output))
    return output


@dataclass
class SubmitConfig(StageConfig):
    host: str = ""
    pipeline: str = "training"
    experiment: str = "llarapp"
    namespace: str = ""  # multi-user Kubeflow: the profile namespace
    run_name: str = ""
    enable_caching: bool = True
    service_account: str = ""
    recurring: bool = False  # a recurring run instead of one run
    cron: str = "0 0 3 * * *"  # KFP cron has seconds: daily at 03:00
    max_concurrency: int = 1

    def validate(self) -> None:
        require(self.host.startswith(("http://", "https://")),
                f"host must be the KFP API URL (http[s]://…), got {self.host!r}")
        require(self.pipeline in PIPELINES, f"pipeline must be one of {', '.join(PIPELINES)}")
        require(not self.recurring or len(self.cron.split()) == 6,
                "cron must have 6 fields (seconds first), e.g. '0 0 3 * * *'")
        require(self.max_concurrency >= 1, "max_concurrency must be at least 1")


def submit(cfg: SubmitConfig, arguments: dict[str, Any],
           platform: PlatformConfig | None = None, client: Any = None) -> dict[str, Any]:
    """Compile, then create one run or a recurring run; return its ids."""
    import kfp

    client = client or kfp.Client(host=cfg.host, namespace=cfg.namespace or "kubeflow")
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(cfg.pipeline, Path(tmp) / f"{cfg.pipeline}.yaml", platform)
        run_name = cfg.run_name or f"llarapp-{cfg.pipeline}"
        if not cfg.recurring:
            result = client.create_run_from_pipeline_package(
                str(package), arguments=arguments, run_name=run_name,
                experiment_name=cfg.experiment, namespace=cfg.namespace or None,
                enable_caching=cfg.enable_caching,
                service_account=cfg.service_account or None)
            return {"run_id": result.run_id, "run_name": run_name}
        experiment = client.create_experiment(cfg.experiment, namespace=cfg.namespace or None)
        job = client.create_recurring_run(
            experiment_id=experiment.experiment_id, job_name=run_name, cron_expression=cfg.cron,
            max_concurrency=cfg.max_concurrency, params=arguments,
            pipeline_package_path=str(package), enable_caching=cfg.enable_caching,
            service_account=cfg.service_account or None)
        return {"recurring_run_id": job.recurring_run_id, "run_name": run_name,
                "cron": cfg.cron}
