"""Retraining on a drift alert: an Alertmanager webhook receiver that submits the training
pipeline.

Alertmanager routes alerts labelled ``action: retrain`` (``LlarappInputDrift``, see
manifests/platform/monitoring.yaml) to ``POST /alerts``. A firing one submits a run of the
training pipeline through :func:`pipelines.submit.submit`, at most once per
``cooldown_s``: a drift alert keeps firing until the new model is live, and one retraining
is enough. Resolved alerts and other actions are acknowledged and ignored.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from llarapp.config import StageConfig, require
from pipelines.platform import PlatformConfig
from pipelines.submit import SubmitConfig, submit


@dataclass
class RetrainConfig(StageConfig):
    host: str = ""  # the KFP API
    namespace: str = ""
    experiment: str = "llarapp-retrain"
    action: str = "retrain"  # the alert label value that asks for retraining
    cooldown_s: float = 86_400.0
    arguments: dict[str, Any] = field(default_factory=dict)  # the training run's parameters

    def validate(self) -> None:
        SubmitConfig(host=self.host)  # the same check and message as `pipeline submit`
        require(self.cooldown_s >= 0, "cooldown_s must be >= 0")
        require(bool(self.action), "action must not be empty")


class Alert(BaseModel):
    status: str
    labels: dict[str, str] = {}


class Notification(BaseModel):
    """Alertmanager's webhook payload (version 4); fields not used here are ignored."""

    status: str = "firing"
    alerts: list[Alert] = []


def create_app(cfg: RetrainConfig, platform: PlatformConfig | None = None,
               clock=time.monotonic) -> FastAPI:
    app = FastAPI(title="llarapp retraining webhook")
    lock = threading.Lock()
    state: dict[str, Any] = {"last": None, "runs": []}

    @app.get("/healthz")
    def health() -> dict[str, Any]:
        return {"ok": True, "runs": state["runs"]}

    @app.post("/alerts")
    def alerts(notification: Notification) -> dict[str, Any]:
        wanted = [a for a in notification.alerts
                  if a.status == "firing" and a.labels.get("action") == cfg.action]
        if not wanted:
            return {"submitted": False, "reason": f"no firing alert with action={cfg.action}"}
        with lock:
            last = state["last"]
            if last is not None and clock() - last < cfg.cooldown_s:
                return {"submitted": False, "reason": "a retraining run was submitted "
                        f"{clock() - last:.0f} s ago (cooldown {cfg.cooldown_s:.0f} s)"}
            why = ", ".join(sorted({f"{a.labels.get('alertname', '?')}"
                                    f"({a.labels.get('feature', '')})" for a in wanted}))
            run = submit(SubmitConfig(host=cfg.host, namespace=cfg.namespace,
                                      experiment=cfg.experiment, run_name="llarapp-retrain"),
                         cfg.arguments, platform)
            state["last"] = clock()
            state["runs"].append(run | {"because": why})
        return {"submitted": True, "because": why, **run}

    return app
