"""The model server's configuration, and where it finds its bundle."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from llarapp.config import StageConfig, require
from llarapp.errors import BundleError
from llarapp.serving.batching import BatchingConfig
from llarapp.serving.bundle import MANIFEST, RANKER
from llarapp.serving.limits import CONTROL_TOKEN_VARIABLE
from llarapp.serving.runtime import AUTO_ORDER, PROVIDERS

KSERVE_MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts STORAGE_URI


def _env_providers() -> list[str]:
    return [p.strip() for p in os.environ.get("LLARAPP_PROVIDERS", "cpu").split(",")
            if p.strip()]


@dataclass
class ServeConfig(StageConfig):
    model_name: str = "llarapp"
    model_dir: str = ""  # folder or s3://; empty: $STORAGE_URI, then /mnt/models
    precision: str = "int8"
    providers: list[str] = field(default_factory=_env_providers)
    workers: int = 1  # server processes, each with its own sessions (kserve's multi-process)
    threads: int = 0  # onnxruntime intra-op threads per worker; 0: the CPUs / workers
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queued: int = 256  # playlists waiting for the engine; more answers 429
    deadline_ms: float = 5000  # queue wait plus compute; later answers 504
    max_body_bytes: int = 1 << 20  # larger bodies answer 413 before they are read
    max_texts: int = 64  # titles + tracks with metadata to encode per request (else 400)
    max_recommendations: int = 5000  # sum of k over one request's instances (else 400)
    grace_period_s: int = 30  # SIGTERM: in-flight requests may finish for this long
    control_token: str = field(  # model load/unload over HTTP: off unless set
        default_factory=lambda: os.environ.get(CONTROL_TOKEN_VARIABLE, ""), repr=False)
    http_host: str = "127.0.0.1"  # 0.0.0.0 in containers
    http_port: int = 8080
    warmup: bool = True
    expected_version: str = field(
        default_factory=lambda: os.environ.get("LLARAPP_MODEL_VERSION", ""))
    drift_window: int = 1000  # recent requests compared with the training reference
    drift_min_requests: int = 100  # no PSI before this many
    enable_latency_logging: bool = False  # KServe's per-request log line costs ~5 ms p99

    def validate(self) -> None:
        require(bool(self.model_name.strip()), "model_name must not be empty")
        require(self.precision in RANKER, f"precision must be one of {', '.join(RANKER)}")
        for name in self.providers:
            require(name in PROVIDERS or name == "auto",
                    f"unknown provider {name!r}; choose from {', '.join(AUTO_ORDER)} or auto")
        require(self.threads >= 0, "threads must be >= 0")
        require(1 <= self.workers <= 64, f"workers must be in 1..64, got {self.workers}; one "
                "per core is the most that helps")
        require(1 <= self.http_port <= 65535, f"http_port must be in 1..65535, got "
                f"{self.http_port}")
        require(bool(self.http_host.strip()), "http_host must not be empty")
        require(self.drift_window >= self.drift_min_requests >= 1,
                "need drift_window >= drift_min_requests >= 1")
        require(100 <= self.deadline_ms <= 600_000,
                f"deadline_ms must be in 100..600000, got {self.deadline_ms}")
        require(1 <= self.grace_period_s <= 3600,
                f"grace_period_s must be in 1..3600, got {self.grace_period_s}")
        require(self.max_body_bytes >= 1024,
                f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")
        require(self.max_texts >= 1 and self.max_recommendations >= 1,
                "max_texts and max_recommendations must be at least 1")
        self.batching  # noqa: B018  (building it validates the batching keys)

    @property
    def batching(self) -> BatchingConfig:
        return BatchingConfig(max_batch_size=self.max_batch_size, max_wait_ms=self.max_wait_ms,
                              max_queued=self.max_queued)

    @property
    def worker_threads(self) -> int:
        """Threads per worker, so that workers × threads = the CPUs available."""
        return self.threads or max(1, len(os.sched_getaffinity(0)) // self.workers)

    def bundle_location(self) -> str:
        """``model_dir``, else ``$STORAGE_URI``, else KServe's /mnt/models."""
        return self.model_dir or os.environ.get("STORAGE_URI", "") or KSERVE_MODEL_DIR


def latest_local_bundle(root: str | os.PathLike[str] = "runs") -> Path:
    """The newest serving bundle under ``root`` (what ``make run`` leaves behind)."""
    manifests = sorted(Path(root).glob(f"**/export/bundle/{MANIFEST}"),
                       key=lambda p: p.stat().st_mtime)
    if not manifests:
        raise BundleError(f"no serving bundle under {root}/; run `make run` first, or pass "
                          "--model_dir")
    return manifests[-1].parent
