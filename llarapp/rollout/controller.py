"""Move an InferenceService's canary: the same JSON merge patches as
``kubectl patch isvc NAME --type merge -p '{"spec":{"predictor":{"canaryTrafficPercent":N}}}'``,
through the official client's CustomObjectsApi, with the MLflow aliases following.

The versions live on the InferenceService: ``LLARAPP_MODEL_VERSION`` in the predictor
container is the canary (the newest revision), and annotations remember the stable one
and both registry versions. Dry-run prints each kubectl command and applies nothing.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llarapp.deploy.isvc import GROUP, PLURAL, VERSION
from llarapp.errors import DeployError
from llarapp.rollout.config import RolloutConfig
from llarapp.rollout.signals import Signals

ANNOTATION = "llarapp.io/"


@dataclass
class Verdict:
    action: str  # promote | rollback | wait
    reasons: list[str] = field(default_factory=list)


def judge(canary: Signals, stable: Signals, cfg: RolloutConfig) -> Verdict:
    """Compare the canary with the stable version on errors, p95 latency and online hit
    rate. It fails closed: no request data for either version, or a latency missing on
    either side, is a rollback that says so. The hit rate is optional (it needs
    ``llarapp simulate`` or app feedback): missing on both sides it is skipped, on one
    side it is a rollback."""
    if canary.requests == 0 and stable.requests == 0:
        return Verdict("rollback", [f"no request data for either version in the last "
                                    f"{cfg.window}: is Prometheus scraping the predictor "
                                    "pods? (failing closed)"])
    if canary.requests < cfg.min_requests:
        return Verdict("wait", [f"{canary.requests:.0f} canary requests in the window, "
                                f"need {cfg.min_requests}"])
    bad, notes = [], []
    if canary.error_rate > cfg.max_error_rate:
        bad.append(f"error rate {canary.error_rate:.2%} > {cfg.max_error_rate:.2%}")
    missing = [name for name, s in (("canary", canary), ("stable", stable))
               if math.isnan(s.p95_s)]
    if missing:
        bad.append(f"p95 latency: no data for the {' and '.join(missing)} version "
                   "(failing closed)")
    elif canary.p95_s > cfg.max_p95_ratio * stable.p95_s:
        bad.append(f"p95 {canary.p95_s * 1000:.0f} ms > {cfg.max_p95_ratio} × stable "
                   f"{stable.p95_s * 1000:.0f} ms")
    hits = [math.isnan(canary.hit_rate), math.isnan(stable.hit_rate)]
    if all(hits):
        notes.append("online hit rate: no data (no llarapp simulate or feedback running)")
    elif any(hits):
        bad.append(f"online hit rate: no data for the {'canary' if hits[0] else 'stable'} "
                   "version (failing closed)")
    elif canary.hit_rate < stable.hit_rate - cfg.max_hit_rate_drop:
        bad.append(f"online hit rate {canary.hit_rate:.3f} < stable {stable.hit_rate:.3f} "
                   f"− {cfg.max_hit_rate_drop}")
    return Verdict("rollback", bad + notes) if bad else Verdict("promote", notes or ["healthy"])


class Rollout:
    """``api``: a kubernetes CustomObjectsApi; ``registry``: a :class:`Registry` or None
    (then no alias moves); ``echo`` prints progress and dry-run commands."""

    def __init__(self, cfg: RolloutConfig, api: Any, registry: Any = None,
                 echo: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep):
        self.cfg, self.api, self.registry, self.echo, self.sleep = cfg, api, registry, echo, sleep

    # -- the InferenceService ------------------------------------------------------------
    def get(self) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.cfg.namespace,
                                                         PLURAL, self.cfg.service)
        except ApiException as exc:
            raise DeployError(f"inferenceservice {self.cfg.namespace}/{self.cfg.service}: the "
                              f"API answered {exc.status} {exc.reason}") from exc

    def patch(self, body: dict[str, Any]) -> None:
        command = (f"kubectl -n {self.cfg.namespace} patch isvc {self.cfg.service} --type merge "
                   f"-p '{json.dumps(body, separators=(',', ':'))}'")
        if self.cfg.dry_run:
            self.echo(f"[dry-run] {command}")
            return
        self.api.patch_namespaced_custom_object(GROUP, VERSION, self.cfg.namespace, PLURAL,
                                                self.cfg.service, body)
        self.echo(f"applied: {command}")

    def status(self) -> dict[str, Any]:
        return self._describe(self.get())

    def _describe(self, isvc: dict[str, Any]) -> dict[str, Any]:
        notes = isvc["metadata"].get("annotations", {})
        (container,) = isvc["spec"]["predictor"]["containers"]
        env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
        return {"service": self.cfg.service, "namespace": self.cfg.namespace,
                "canary_percent": isvc["spec"]["predictor"].get("canaryTrafficPercent", 100),
                "canary_version": env.get("LLARAPP_MODEL_VERSION", ""),
                "storage_uri": env.get("STORAGE_URI", ""),
                "stable_version": notes.get(ANNOTATION + "stable-version", ""),
                "canary_registry_version": notes.get(ANNOTATION + "canary-registry-version", ""),
                "stable_registry_version": notes.get(ANNOTATION + "stable-registry-version", ""),
                "ready": _ready(isvc)}

    def _move_alias(self, alias: str, version: str) -> None:
        if self.registry is None or not version:
            return
        if self.cfg.dry_run:
            self.echo(f"[dry-run] would move alias {alias} to version {version}")
            return
        move = self.registry.move(alias, version)
        self.echo(f"alias {alias}: {move.previous} → {move.version}")

    # -- the moves -----------------------------------------------------------------------
    def start(self, storage_uri: str, model_version: str, registry_version: str = "",
              percent: int | None = None) -> dict[str, Any]:
        """Point the predictor at a new bundle and send it ``percent`` of the traffic."""
        percent = self.cfg.steps[0] if percent is None else percent
        if not 0 < percent <= 100:
            raise DeployError(f"percent must be in 1..100, got {percent}")
        if self.registry is not None and registry_version:
            self.registry.check_move("canary", registry_version)  # before anything changes
        isvc = self.get()
        now = self._describe(isvc)
        containers = copy.deepcopy(isvc["spec"]["predictor"]["containers"])
        values = {"STORAGE_URI": storage_uri, "LLARAPP_MODEL_VERSION": model_version}
        env = [e for e in containers[0].get("env", []) if e["name"] not in values]
        containers[0]["env"] = [{"name": k, "value": v} for k, v in values.items()] + env
        self.patch({"metadata": {"annotations": {
            ANNOTATION + "stable-version": now["canary_version"],
            ANNOTATION + "stable-registry-version": now["canary_registry_version"],
            ANNOTATION + "canary-registry-version": registry_version}},
            "spec": {"predictor": {"containers": containers, "canaryTrafficPercent": percent}}})
        self._move_alias("canary", registry_version)
        return {"action": "started", "canary_percent": percent, "canary_version": model_version,
                "stable_version": now["canary_version"]}

    def set_percent(self, percent: int) -> None:
        self.patch({"spec": {"predictor": {"canaryTrafficPercent": percent}}})

    def promote(self) -> dict[str, Any]:
        """One step up (10 → 50 → 100); reaching 100 makes the canary the stable version
        and moves the ``production`` alias."""
        now = self.status()
        target = self.cfg.next_step(now["canary_percent"])
        if target < 100:
            self.set_percent(target)
            return {"action": "promoted", "canary_percent": target}
        self.patch({"metadata": {"annotations": {
            ANNOTATION + "stable-version": now["canary_version"],
            ANNOTATION + "stable-registry-version": now["canary_registry_version"]}},
            "spec": {"predictor": {"canaryTrafficPercent": 100}}})
        self._move_alias("production", now["canary_registry_version"])
        return {"action": "completed", "canary_percent": 100,
                "production_version": now["canary_version"]}

    def rollback(self, reasons: list[str] | None = None) -> dict[str, Any]:
        """All traffic back to the stable revision; no alias moves."""
        self.set_percent(0)
        return {"action": "rolled back", "canary_percent": 0, "reasons": reasons or []}

    def auto(self, signals: Any, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
        """Judge, then promote one step or roll back, until 100 % or ``timeout_s`` (which
        rolls back: a canary that never proved itself does not stay). A Prometheus that
        cannot be read, or has no data, rolls back too: the rollout fails closed."""
        deadline = clock() + self.cfg.timeout_s
        history = []
        while True:
            now = self.status()
            try:
                found = signals.collect([now["canary_version"], now["stable_version"]])
            except DeployError as exc:  # no verdict without data: fail closed
                history.append({"percent": now["canary_percent"], "verdict": "rollback",
                                "reasons": [str(exc)]})
                return self.rollback([f"cannot judge the canary, so it leaves: {exc}"]) | {
                    "history": history}
            verdict = judge(found[now["canary_version"]], found[now["stable_version"]], self.cfg)
            history.append({"percent": now["canary_percent"], "verdict": verdict.action,
                            "reasons": verdict.reasons})
            self.echo(f"canary {now['canary_version']} at {now['canary_percent']}%: "
                      f"{verdict.action} ({'; '.join(verdict.reasons)})")
            if verdict.action == "rollback":
                return self.rollback(verdict.reasons) | {"history": history}
            if verdict.action == "wait" and self.cfg.dry_run:
                return {"action": "wait", "history": history}
            if verdict.action == "promote":
                result = self.promote()
                if result["action"] == "completed" or self.cfg.dry_run:
                    return result | {"history": history}
            if clock() + self.cfg.interval_s > deadline:
                return self.rollback([f"timed out after {self.cfg.timeout_s:.0f} s"]) | {
                    "history": history}
            self.sleep(self.cfg.interval_s)


def _ready(isvc: dict[str, Any]) -> bool:
    conditions = isvc.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
