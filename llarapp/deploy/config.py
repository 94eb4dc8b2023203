"""What deploy renders and where it applies it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llarapp.config import TrackedConfig, require

TARGETS = ("staging", "canary")
MODES = ("render", "apply")
DEPLOYMENT_MODES = ("Serverless", "RawDeployment")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$")


@dataclass
class DeployConfig(TrackedConfig):
    model_name: str = "llarapp"  # the MLflow registered model
    service: str = "llarapp"  # the InferenceService; staging adds a -staging suffix
    namespace: str = "llarapp"
    target: str = "staging"  # staging: its own service; canary: a split on the main one
    canary_percent: int = 10
    mode: str = "render"  # apply: create or merge-patch through the Kubernetes API
    deployment_mode: str = "Serverless"  # canaryTrafficPercent needs Serverless (Knative)
    image: str = "ghcr.io/llarapp/llarapp-serving:0.1.0"
    service_account: str = "llarapp-s3"  # carries the serving.kserve.io/s3-* annotations
    cpu: str = "1"
    memory: str = "2Gi"
    workers: int = 1  # server processes per pod (--workers); one per CPU served best on 2
    min_replicas: int = 1
    max_replicas: int = 3
    gpu: bool = False  # one MI100 through amd.com/gpu, ROCm execution provider
    gpu_node_label: str = "amd.com/gpu.product-name=AMD_Instinct_MI100"
    kube_context: str = ""  # empty: in-cluster config, else the current kubeconfig context

    def validate(self) -> None:
        require(self.target in TARGETS, f"target must be one of {', '.join(TARGETS)}")
        require(self.mode in MODES, f"mode must be one of {', '.join(MODES)}")
        require(self.deployment_mode in DEPLOYMENT_MODES,
                f"deployment_mode must be one of {', '.join(DEPLOYMENT_MODES)}")
        require(bool(_DNS_LABEL.match(self.service)),
                f"service {self.service!r} must be a lowercase DNS label of at most 42 "
                "characters (KServe appends suffixes)")
        require(0 < self.canary_percent < 100, "canary_percent must be in 1..99")
        require(not (self.target == "canary" and self.deployment_mode == "RawDeployment"),
                "RawDeployment ignores canaryTrafficPercent; use deployment_mode=Serverless "
                "for a canary, or target=staging")
        require(1 <= self.workers <= 64, f"workers must be in 1..64, got {self.workers}")
        require(1 <= self.min_replicas <= self.max_replicas,
                "need 1 <= min_replicas <= max_replicas")
        require("=" in self.gpu_node_label, "gpu_node_label must look like key=value")
        require(self.track, "deploy moves a registry alias, so track must be true")

    @property
    def service_name(self) -> str:
        return f"{self.service}-staging" if self.target == "staging" else self.service
