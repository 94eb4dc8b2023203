"""How pipeline tasks run on a cluster: resources, the MI100, secrets, env, caching.

One :class:`PlatformConfig` is applied to every task, so no stage can miss its resource
requests or credentials. It compiles into the YAML; ``kfp.local`` ignores all of it but
the env variables, which is why local runs use :meth:`PlatformConfig.local`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kfp import kubernetes
from kfp.dsl import PipelineTask

from llarapp.config import StageConfig, require

# Stages with side effects outside their own artifacts: never served from the cache.
UNCACHED = ("register", "deploy", "tune-study", "tune-worker", "tune-summary")
GPU_STAGES = ("text-embed", "lightgcn", "llara", "eval-llara", "export", "tune-worker")


def _default_resources() -> dict[str, list[str]]:
    """[cpu, memory] requests per stage; memory is also the limit."""
    return {"synth": ["500m", "1Gi"], "ingest": ["2", "8Gi"], "split": ["1", "4Gi"],
            "baselines": ["2", "8Gi"], "text-embed": ["4", "8Gi"], "lightgcn": ["4", "16Gi"],
            "cold-mapper": ["2", "8Gi"], "retrieve": ["2", "8Gi"], "llara": ["8", "32Gi"],
            "eval-llara": ["4", "16Gi"], "export": ["4", "16Gi"], "evaluate": ["2", "8Gi"],
            "register": ["1", "2Gi"], "deploy": ["500m", "1Gi"], "tune-study": ["500m", "1Gi"],
            "tune-worker": ["4", "16Gi"], "tune-summary": ["500m", "1Gi"],
            "recommend-bundle": ["500m", "1Gi"], "recommend-shards": ["1", "4Gi"],
            "recommend": ["2", "8Gi"], "recommend-merge": ["1", "8Gi"]}


@dataclass
class PlatformConfig(StageConfig):
    gpu_resource: str = "amd.com/gpu"
    gpu_node_label: str = "amd.com/gpu.product-name=AMD_Instinct_MI100"
    gpu_toleration_key: str = "amd.com/gpu"
    # MinIO credentials: a Secret whose keys map to the env variables the S3 client reads.
    s3_secret: str = "llarapp-s3"
    s3_secret_keys: dict[str, str] = field(default_factory=lambda: {
        "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"})
    s3_endpoint: str = "http://minio-service.kubeflow:9000"
    # MLflow server; the Secret is optional (a server without auth needs none).
    mlflow_tracking_uri: str = "http://mlflow.llarapp.svc.cluster.local:5000"
    mlflow_secret: str = "llarapp-mlflow"
    mlflow_secret_keys: dict[str, str] = field(default_factory=lambda: {
        "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD"})
    caching: bool = True
    resources: dict[str, list[str]] = field(default_factory=_default_resources)

    def validate(self) -> None:
        require("=" in self.gpu_node_label, "gpu_node_label must look like key=value")
        for stage, pair in self.resources.items():
            require(len(pair) == 2, f"resources.{stage} must be [cpu, memory]")

    @classmethod
    def local(cls) -> PlatformConfig:
        """For kfp.local: no cluster endpoints in the env (the rest is ignored locally)."""
        return cls(s3_endpoint="", mlflow_tracking_uri="")

    def env(self) -> dict[str, str]:
        env = {}
        if self.s3_endpoint:
            env |= {"S3_ENDPOINT": self.s3_endpoint, "AWS_ENDPOINT_URL": self.s3_endpoint,
                    "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint}
        if self.mlflow_tracking_uri:
            env["MLFLOW_TRACKING_URI"] = self.mlflow_tracking_uri
        return env

    def apply(self, task: PipelineTask, stage: str) -> PipelineTask:
        """Resources, env, secrets and caching for ``stage``; the MI100 for GPU stages."""
        cpu, memory = self.resources.get(stage, ["1", "2Gi"])
        task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)
        for name, value in self.env().items():
            task.set_env_variable(name, value)
        kubernetes.use_secret_as_env(task, secret_name=self.s3_secret,
                                     secret_key_to_env=self.s3_secret_keys)
        kubernetes.use_secret_as_env(task, secret_name=self.mlflow_secret,
                                     secret_key_to_env=self.mlflow_secret_keys, optional=True)
        task.set_caching_options(self.caching and stage not in UNCACHED)
        if stage in GPU_STAGES:
            self.on_gpu(task)
        return task

    def on_gpu(self, task: PipelineTask) -> PipelineTask:
        """One MI100: accelerator request, node selector and the GPU taint's toleration."""
        key, value = self.gpu_node_label.split("=", 1)
        task.set_accelerator_type(self.gpu_resource).set_accelerator_limit(1)
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
        kubernetes.add_toleration(task, key=self.gpu_toleration_key, operator="Exists",
                                  effect="NoSchedule")
        return task
