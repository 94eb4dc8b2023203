"""Retraining on a drift alert: an Alertmanager webhook receiver that submits the training
pipeline.

Alertmanager routes alerts labelled ``action: retrain`` (``LlarappInputDrift``, see
manifests/platform/monitoring.yaml) to ``POST /alerts``. A firing one submits a run of the
training pipeline through :func:`pipelines.submit.submit`, at most once per
``cooldown_s``: a drift alert keeps firing until the new model is live, and one retraining
is enough. Resolved alerts and other actions are acknowledged and ignored.

Every ``POST /alerts`` must carry ``Authorization: Bearer <token>``, the token from the
``llarapp-retrain-webhook`` Secret (``LLARAPP_WEBHOOK_TOKEN``), which Alertmanager sends
from the same Secret; anything else is a 401 and submits nothing.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

from llarapp.config import StageConfig, require
from pipelines.platform import PlatformConfig
from pipelines.submit import SubmitConfig, submit

TOKEN_VARIABLE = "LLARAPP_WEBHOOK_TOKEN"


@dataclass
class RetrainConfig(StageConfig):
    host: str = ""  # the KFP API
    namespace: str = ""
    experiment: str = "llarapp-retrain"
    action: str = "retrain"  # the alert label value that asks for retraining
    cooldown_s: float = 86_400.0
    arguments: dict[str, Any] = field(default_factory=dict)  # the training run's parameters
    token: str = field(default_factory=lambda: os.environ.get(TOKEN_VARIABLE, ""), repr=False)

    def validate(self) -> None:
        require(bool(self.token), f"the webhook needs a bearer token: set {TOKEN_VARIABLE} "
                "(in the cluster, from the llarapp-retrain-webhook Secret; see "
                "manifests/README.md)")
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
    def alerts(notification: Notification,
               authorization: str = Header(default="")) -> dict[str, Any]:
        if not hmac.compare_digest(authorization.encode(), f"Bearer {cfg.token}".encode()):
            raise HTTPException(401, "send 'Authorization: Bearer <token>' with the token "
                                f"of the webhook's Secret ({TOKEN_VARIABLE})")
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
