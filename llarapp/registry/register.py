"""``llarapp register``: one MLflow model version per serving bundle.

The bundle's files become the version's artifacts (``models:/llarapp@staging`` downloads
it), and with ``bundle_uri`` set the bundle is also copied to object storage, which is
where an InferenceService's storage initializer reads it. The version starts as the
``candidate``; deploy and promotion move it on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llarapp.artifacts import write_manifest
from llarapp.config import TrackedConfig, require
from llarapp.registry.aliases import Registry
from llarapp.storage import atomic_dir, parse_uri, publish_dir

KIND = "registration"


@dataclass
class RegisterConfig(TrackedConfig):
    model_name: str = "llarapp"
    bundle_uri: str = ""  # s3://bucket/prefix: the bundle goes to <prefix>/<model_version>/

    def validate(self) -> None:
        require(bool(self.model_name.strip()), "model_name must not be empty")
        require(not self.bundle_uri or self.bundle_uri.startswith("s3://"),
                f"bundle_uri must be an s3:// prefix or empty, got {self.bundle_uri!r}")
        require(self.track, "register needs MLflow: track must be true")


def gate_of(evaluation: str | os.PathLike[str] | None) -> dict[str, Any]:
    if not evaluation:
        return {}
    return json.loads((Path(evaluation) / "metrics.json").read_text()).get("gate", {})


def version_tags(manifest: dict[str, Any], gate: dict[str, Any], storage_uri: str
                 ) -> dict[str, str]:
    quantization = manifest.get("quantization", {})
    tags = {"model_version": manifest["model_version"], "storage_uri": storage_uri,
            "quantization": str(quantization.get("chosen", "")),
            "int8_parity": str(quantization.get("int8_parity", {}).get("passed", "")).lower()}
    if gate:
        tags |= {"gate_metric": f"{gate['model']}.{gate['metric']}",
                 "gate_value": f"{gate['value']:.6f}"}
    return tags


def run_register(cfg: RegisterConfig, bundle_dir: str | os.PathLike[str],
                 output: str | os.PathLike[str],
                 evaluation: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    from llarapp.serving.bundle import Bundle
    from llarapp.tracking import finite_metrics, start_tracking

    bundle = Bundle.load(bundle_dir)  # refuses a bundle whose files do not match
    manifest, model_version = bundle.manifest, bundle.manifest["model_version"]
    gate = gate_of(evaluation)
    storage_uri = ""
    if cfg.bundle_uri:
        storage_uri = str(parse_uri(cfg.bundle_uri).join(model_version))
        publish_dir(bundle.folder, storage_uri)
    mlflow, experiment_id, tracking_uri = start_tracking(cfg.experiment, cfg.tracking_uri or None)
    with atomic_dir(output) as folder, \
            mlflow.start_run(experiment_id=experiment_id, run_name=f"register-{model_version}",
                             tags={"stage": "register", "model_version": model_version}) as run:
        mlflow.log_artifacts(str(bundle.folder), artifact_path="bundle")
        metrics = {k: v for k, v in manifest.get("metrics", {}).items()
                   if isinstance(v, int | float)}
        if gate:
            metrics["gate"] = gate["value"]
        mlflow.log_metrics(finite_metrics(metrics))
        source = f"{run.info.artifact_uri}/bundle"
        registry = Registry(cfg.model_name, tracking_uri)
        registry.ensure_model("LLaRA++ serving bundles (ONNX ranker, text encoder, vectors)")
        tags = version_tags(manifest, gate, storage_uri or source)
        version = registry.client.create_model_version(
            cfg.model_name, source=source, run_id=run.info.run_id, tags=tags,
            description=f"serving bundle {model_version}")
        registry.move("candidate", version.version)
        result = {"model_name": cfg.model_name, "version": str(version.version),
                  "model_version": model_version, "storage_uri": tags["storage_uri"],
                  "source": source, "uploaded": bool(storage_uri), "gate": gate,
                  "int8_parity": manifest.get("quantization", {}).get("int8_parity"),
                  "mlflow": {"run_id": run.info.run_id, "experiment_id": experiment_id,
                             "tracking_uri": tracking_uri},
                  "aliases": registry.aliases()}
        write_manifest(folder, KIND, 1, config=cfg.to_dict(), **result)
    return result


def load_registration(folder: str | os.PathLike[str]) -> dict[str, Any]:
    from llarapp.artifacts import read_manifest

    return read_manifest(folder, KIND)
