"""``llarapp deploy``: render (and optionally apply) the InferenceService for a registered
version, then move its alias to the target (staging or canary).

The alias moves only after the manifest is applied, so the registry never claims a
version runs somewhere it does not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from llarapp.deploy.config import DeployConfig
from llarapp.deploy.isvc import inference_service, reachable_from_cluster
from llarapp.deploy.kube import apply_inference_service, custom_objects_api
from llarapp.errors import DeployError
from llarapp.manifest import write_manifest
from llarapp.registry.aliases import Registry
from llarapp.storage import atomic_dir

KIND = "deployment"
MANIFEST_FILE = "inferenceservice.yaml"


def release_from_registry(registry: Registry, version: str) -> dict[str, Any]:
    found = registry.version(version)
    return {"model_name": registry.name, "version": str(found.version),
            "model_version": found.tags.get("model_version", f"v{found.version}"),
            "storage_uri": found.tags.get("storage_uri") or found.source}


def run_deploy(cfg: DeployConfig, version: str, output: str | os.PathLike[str],
               api: Any = None) -> dict[str, Any]:
    """Deploy registered ``version`` (a number or ``@alias``)."""
    registry = Registry(cfg.model_name, cfg.tracking_uri or None)
    release = release_from_registry(registry, version)
    registry.check_move(cfg.target, release["version"])  # before anything is applied
    obj = inference_service(cfg, release)
    notes = []
    if not reachable_from_cluster(release["storage_uri"]):
        if cfg.mode == "apply":
            raise DeployError(
                f"version {release['version']} lives at {release['storage_uri']}, which a "
                "cluster cannot read. Register with bundle_uri=s3://… (MinIO) first")
        notes.append("storageUri is local: fine for a render, set register bundle_uri=s3://… "
                     "before applying to a cluster")
    with atomic_dir(output) as folder:
        (Path(folder) / MANIFEST_FILE).write_text(yaml.safe_dump(obj, sort_keys=False))
        action = "rendered"
        if cfg.mode == "apply":
            action = apply_inference_service(obj, api or custom_objects_api(cfg.kube_context))
        move = registry.move(cfg.target, release["version"])
        result = {**release, "service": cfg.service_name, "namespace": cfg.namespace,
                  "target": cfg.target, "action": action,
                  "alias": {"name": move.alias, "version": move.version,
                            "previous": move.previous},
                  "aliases": registry.aliases(), "notes": notes}
        write_manifest(folder, KIND, 1, config=cfg.to_dict(), **result)
    return result
