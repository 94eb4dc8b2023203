"""Render the InferenceService for one registered model version.

The predictor is our own container (``kserve-container``) running the serving image.
Its ``STORAGE_URI`` env var makes KServe add the storage initializer, which downloads
the bundle to /mnt/models with the service account's S3 credentials.
"""

from __future__ import annotations

from typing import Any

from llarapp.deploy.config import DeployConfig
from llarapp.serving.config import ServeConfig

API_VERSION = "serving.kserve.io/v1beta1"
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MODEL_DIR = "/mnt/models"
HTTP_PORT = 8080
# SIGTERM comes only after preStop: by then the endpoint is out of every load balancer, so
# no new request arrives while the server drains (ServeConfig.grace_period_s)
PRESTOP_SECONDS = 10
GRACE_SECONDS = PRESTOP_SECONDS + ServeConfig().grace_period_s + 5
CONTAINER_SECURITY = {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                      "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
                      "seccompProfile": {"type": "RuntimeDefault"}}
CLUSTER_SCHEMES = ("s3://", "gs://", "pvc://", "https://", "http://", "hdfs://", "oci://")


def predictor_container(cfg: DeployConfig, release: dict[str, Any]) -> dict[str, Any]:
    limits: dict[str, str] = {"cpu": cfg.cpu, "memory": cfg.memory}
    env = [{"name": "STORAGE_URI", "value": release["storage_uri"]},
           {"name": "LLARAPP_MODEL_VERSION", "value": release["model_version"]},
           {"name": "LLARAPP_PROVIDERS", "value": "rocm,cpu" if cfg.gpu else "cpu"}]
    if cfg.gpu:
        limits["amd.com/gpu"] = "1"
    probe = {"httpGet": {"path": f"/v1/models/{cfg.model_name}", "port": HTTP_PORT}}
    return {
        "name": "kserve-container",
        "image": cfg.image,
        "args": ["--model_name", cfg.model_name, "--model_dir", MODEL_DIR,
                 "--http_host", "0.0.0.0", "--http_port", str(HTTP_PORT),
                 "--workers", str(cfg.workers)],
        "env": env,
        "ports": [{"containerPort": HTTP_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": cfg.cpu, "memory": cfg.memory}, "limits": limits},
        "readinessProbe": probe | {"initialDelaySeconds": 5, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/", "port": HTTP_PORT},
                          "initialDelaySeconds": 30, "periodSeconds": 15},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # the root is read-only
    }


def inference_service(cfg: DeployConfig, release: dict[str, Any]) -> dict[str, Any]:
    """``release``: the registration (model_name, version, model_version, storage_uri)."""
    predictor: dict[str, Any] = {
        "serviceAccountName": cfg.service_account,
        "minReplicas": cfg.min_replicas,
        "maxReplicas": cfg.max_replicas,
        "containers": [predictor_container(cfg, release)],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "terminationGracePeriodSeconds": GRACE_SECONDS,
    }
    if cfg.target == "canary":
        predictor["canaryTrafficPercent"] = cfg.canary_percent
    if cfg.gpu:
        key, value = cfg.gpu_node_label.split("=", 1)
        predictor["nodeSelector"] = {key: value}
        predictor["tolerations"] = [{"key": "amd.com/gpu", "operator": "Exists",
                                     "effect": "NoSchedule"}]
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": cfg.service_name,
            "namespace": cfg.namespace,
            "labels": {"app.kubernetes.io/name": "llarapp",
                       "app.kubernetes.io/component": "predictor",
                       "llarapp.io/stage": cfg.target,
                       "llarapp.io/model-version": release["model_version"][:63]},
            "annotations": {
                "serving.kserve.io/deploymentMode": cfg.deployment_mode,
                "llarapp.io/registered-model": f"models:/{release['model_name']}/"
                                               f"{release['version']}",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(HTTP_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {"predictor": predictor},
    }


def reachable_from_cluster(storage_uri: str) -> bool:
    return storage_uri.startswith(CLUSTER_SCHEMES)
