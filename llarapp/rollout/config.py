"""The rollout's configuration: which service, the traffic steps, and the health bars a
canary must clear against the stable version."""

from __future__ import annotations

from dataclasses import dataclass, field

from llarapp.config import StageConfig, require


@dataclass
class RolloutConfig(StageConfig):
    service: str = "llarapp"
    namespace: str = "llarapp"
    model_name: str = "llarapp"  # the MLflow registered model
    tracking_uri: str = ""
    kube_context: str = ""
    steps: list[int] = field(default_factory=lambda: [10, 50, 100])
    prometheus_url: str = "http://prometheus-operated.monitoring:9090"
    window: str = "10m"  # PromQL range each verdict looks at
    min_requests: int = 100  # canary requests in the window before any verdict
    max_error_rate: float = 0.01  # canary 5xx share
    max_p95_ratio: float = 1.25  # canary p95 ≤ ratio × stable p95
    max_hit_rate_drop: float = 0.02  # canary online hit rate ≥ stable's − drop
    interval_s: float = 300.0  # between verdicts, so each step sees fresh traffic
    timeout_s: float = 7200.0  # auto rolls back if the canary has not reached 100 by then
    dry_run: bool = False

    def validate(self) -> None:
        require(bool(self.steps) and all(0 < s <= 100 for s in self.steps)
                and self.steps == sorted(set(self.steps)) and self.steps[-1] == 100,
                f"steps must rise strictly within 1..100 and end at 100, got {self.steps}")
        require(self.min_requests >= 0, "min_requests must be >= 0")
        require(0 <= self.max_error_rate <= 1, "max_error_rate must be in 0..1")
        require(self.max_p95_ratio >= 1, "max_p95_ratio must be >= 1")
        require(self.max_hit_rate_drop >= 0, "max_hit_rate_drop must be >= 0")
        require(self.interval_s >= 0 and self.timeout_s > 0,
                "interval_s must be >= 0 and timeout_s > 0")
        require(self.window[:-1].isdigit() and self.window[-1] in "smh",
                f"window must look like 10m, got {self.window!r}")

    def next_step(self, percent: int) -> int:
        return next((s for s in self.steps if s > percent), 100)
