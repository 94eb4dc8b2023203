"""``llarapp register``: one MLflow model version per serving bundle.

The version is an MLflow pyfunc model that carries the bundle as its artifact
(:mod:`llarapp.recommend.pyfunc`): ``mlflow.pyfunc.load_model("models:/llarapp@staging")``
recommends, and ``Bundle.load`` of its download is the bundle. With ``bundle_uri`` set the
bundle is also copied to object storage; the version's ``storage_uri`` tag says where an
InferenceService's storage initializer reads it. The version starts as the
``candidate``; deploy and promotion move it on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llarapp.config import TrackedConfig, require
from llarapp.manifest import write_manifest
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
    champion = (gate or {}).get("champion") or {}
    if champion:
        against = champion.get("champion") or {}
        tags |= {"champion_version": against.get("version", "none"),
                 "champion_passed": str(champion["passed"]).lower(),
                 "champion_why": champion["why"][:250]}
    return tags


def run_register(cfg: RegisterConfig, bundle_dir: str | os.PathLike[str],
                 output: str | os.PathLike[str],
                 evaluation: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    from llarapp.recommend.pyfunc import log_bundle_model
    from llarapp.serving.bundle import PYFUNC_ARTIFACT, Bundle
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
        model = log_bundle_model(bundle)
        metrics = {k: v for k, v in manifest.get("metrics", {}).items()
                   if isinstance(v, int | float)}
        if gate:
            metrics["gate"] = gate["value"]
        mlflow.log_metrics(finite_metrics(metrics))
        location = mlflow.get_logged_model(model.model_id).artifact_location
        in_model = f"{location.rstrip('/')}/artifacts/{PYFUNC_ARTIFACT}"  # the bundle itself
        registry = Registry(cfg.model_name, tracking_uri)
        registry.ensure_model("LLaRA++ serving bundles (ONNX ranker, text encoder, vectors)")
        tags = version_tags(manifest, gate, storage_uri or in_model)
        version = registry.client.create_model_version(
            cfg.model_name, source=model.model_uri, run_id=run.info.run_id, tags=tags,
            description=f"serving bundle {model_version}", model_id=model.model_id)
        registry.move("candidate", version.version)
        result = {"model_name": cfg.model_name, "version": str(version.version),
                  "model_version": model_version, "storage_uri": tags["storage_uri"],
                  "model_uri": model.model_uri, "uploaded": bool(storage_uri), "gate": gate,
                  "int8_parity": manifest.get("quantization", {}).get("int8_parity"),
                  "mlflow": {"run_id": run.info.run_id, "experiment_id": experiment_id,
                             "tracking_uri": tracking_uri},
                  "aliases": registry.aliases()}
        write_manifest(folder, KIND, 1, config=cfg.to_dict(), **result)
    return result


def load_registration(folder: str | os.PathLike[str]) -> dict[str, Any]:
    from llarapp.manifest import read_manifest

    return read_manifest(folder, KIND)
