"""Canary rollout against a fake Kubernetes API (get and merge-patch of the
InferenceService) and a fake Prometheus: a healthy canary ends at 100 % with the
production alias moved; a bad one goes to 0 % and moves no alias; dry-run applies nothing."""

from __future__ import annotations

import math

import pytest
from fakes import FakeKube, FakePrometheus

from llarapp.deploy.config import DeployConfig
from llarapp.deploy.isvc import GROUP, PLURAL, VERSION, inference_service
from llarapp.errors import ConfigError, RegistryError
from llarapp.registry.aliases import Registry
from llarapp.rollout.config import RolloutConfig
from llarapp.rollout.controller import Rollout, judge
from llarapp.rollout.signals import PrometheusSignals, Signals

HEALTHY = {"requests": 500, "errors": 1, "p95_s": 0.08, "hit_rate": 0.30}
STABLE = {"requests": 4000, "errors": 8, "p95_s": 0.07, "hit_rate": 0.31}


@pytest.mark.parametrize("canary, stable, action, reason", [
    (Signals(500, 0.0, 0.08, 0.30), Signals(4000, 0.0, 0.07, 0.31), "promote", "healthy"),
    (Signals(50, 0.0, 0.08, 0.30), Signals(4000, 0.0, 0.07, 0.31), "wait", "need 100"),
    (Signals(500, 0.05, 0.08, 0.30), Signals(4000, 0.0, 0.07, 0.31), "rollback", "error rate"),
    (Signals(500, 0.0, 0.20, 0.30), Signals(4000, 0.0, 0.07, 0.31), "rollback", "p95"),
    (Signals(500, 0.0, 0.08, 0.20), Signals(4000, 0.0, 0.07, 0.31), "rollback", "hit rate"),
    (Signals(500, 0.0, 0.08, math.nan), Signals(4000, 0.0, 0.07, math.nan), "promote",
     "online hit rate: no data"),
    # fail closed: missing data is never a pass
    (Signals(0, 0.0, math.nan, math.nan), Signals(0, 0.0, math.nan, math.nan), "rollback",
     "no request data for either version"),
    (Signals(500, 0.0, math.nan, 0.30), Signals(4000, 0.0, 0.07, 0.31), "rollback",
     "p95 latency: no data for the canary"),
    (Signals(500, 0.0, 0.08, 0.30), Signals(4000, 0.0, math.nan, 0.31), "rollback",
     "p95 latency: no data for the stable"),
    (Signals(500, 0.0, 0.08, math.nan), Signals(4000, 0.0, 0.07, 0.31), "rollback",
     "online hit rate: no data for the canary"),
])
def test_judge(canary, stable, action, reason):
    verdict = judge(canary, stable, RolloutConfig())
    assert verdict.action == action
    assert any(reason in r for r in verdict.reasons), verdict.reasons


@pytest.mark.parametrize("values, message", [
    ({"steps": [10, 50]}, "end at 100"), ({"steps": [50, 10, 100]}, "rise strictly"),
    ({"max_p95_ratio": 0.5}, "max_p95_ratio"), ({"window": "ten"}, "window"),
])
def test_rollout_config_is_validated(values, message):
    with pytest.raises(ConfigError, match=message):
        RolloutConfig.from_dict(values)


@pytest.fixture()
def cluster(tmp_path):
    """A stable v1 (alias production) serving 100 %, v2 at staging, in a fake cluster."""
    yield from fake_cluster(tmp_path)


def fake_cluster(tmp_path, versions: tuple[str, str] = ("v1", "v2")):
    """(kube, api, registry): ``versions[0]`` registered as 1 (alias production) and
    serving 100 % of an InferenceService in a fake Kubernetes API; ``versions[1]``
    registered as 2, at staging."""
    registry = Registry("llarapp", f"sqlite:///{tmp_path / 'mlflow.db'}")
    registry.ensure_model()
    for number, version in zip(("1", "2"), versions, strict=True):
        registry.client.create_model_version("llarapp", f"s3://models/llarapp/{version}")
        registry.client.set_model_version_tag("llarapp", number, "model_version", version)
        registry.client.set_model_version_tag("llarapp", number, "storage_uri",
                                              f"s3://models/llarapp/{version}")
    for alias in ("candidate", "staging", "canary", "production"):
        registry.move(alias, "1")
    for alias in ("candidate", "staging"):
        registry.move(alias, "2")
    release = {"model_name": "llarapp", "version": "1", "model_version": versions[0],
               "storage_uri": f"s3://models/llarapp/{versions[0]}"}
    isvc = inference_service(DeployConfig(target="canary"), release)
    del isvc["spec"]["predictor"]["canaryTrafficPercent"]  # the stable version takes all
    kube = FakeKube()
    api = kube.api()
    api.create_namespaced_custom_object(GROUP, VERSION, "llarapp", PLURAL, isvc)
    yield kube, api, registry
    kube.close()


def rollout_with(api, registry, dry_run=False, **values):
    cfg = RolloutConfig(**{"interval_s": 0, "min_requests": 100, "dry_run": dry_run} | values)
    lines = []
    return Rollout(cfg, api, registry, echo=lines.append, sleep=lambda s: None), lines


def percent(kube):
    return kube.objects[(PLURAL, "llarapp", "llarapp")]["spec"]["predictor"].get(
        "canaryTrafficPercent")


def start_v2(api, registry):
    rollout, _ = rollout_with(api, registry)
    started = rollout.start("s3://models/llarapp/v2", "v2", "2", 10)
    assert started["stable_version"] == "v1"
    return rollout


def test_start_points_the_canary_at_the_new_bundle(cluster):
    kube, api, registry = cluster
    rollout = start_v2(api, registry)
    state = rollout.status()
    assert (state["canary_percent"], state["canary_version"], state["stable_version"]) == \
        (10, "v2", "v1")
    assert state["storage_uri"] == "s3://models/llarapp/v2"
    env = kube.objects[(PLURAL, "llarapp", "llarapp")]["spec"]["predictor"]["containers"][0]["env"]
    assert [e["name"] for e in env].count("STORAGE_URI") == 1
    assert registry.aliases() == {"candidate": "2", "staging": "2", "canary": "2",
                                  "production": "1"}


def test_a_healthy_canary_is_promoted_to_100_and_production_moves(cluster):
    kube, api, registry = cluster
    rollout = start_v2(api, registry)
    with FakePrometheus({"v2": HEALTHY, "v1": STABLE}) as prometheus:
        result = rollout.auto(PrometheusSignals(prometheus.url, "llarapp"))
    assert result["action"] == "completed" and percent(kube) == 100
    # judged at 10 % (→ 50) and at 50 % (→ 100, which completes)
    assert [h["percent"] for h in result["history"]] == [10, 50]
    assert registry.aliases()["production"] == "2"
    assert rollout.status()["stable_version"] == "v2"


def test_a_bad_canary_is_rolled_back_and_no_alias_moves(cluster):
    kube, api, registry = cluster
    rollout = start_v2(api, registry)
    before = registry.aliases()
    with FakePrometheus({"v2": HEALTHY | {"errors": 60}, "v1": STABLE}) as prometheus:
        result = rollout.auto(PrometheusSignals(prometheus.url, "llarapp"))
    assert result["action"] == "rolled back" and percent(kube) == 0
    assert "error rate" in result["reasons"][0]
    assert registry.aliases() == before


def test_a_canary_without_traffic_times_out_into_a_rollback(cluster):
    kube, api, registry = cluster
    rollout = start_v2(api, registry)
    rollout.cfg.timeout_s, rollout.cfg.interval_s = 3, 1
    ticks = iter(range(100))
    with FakePrometheus({"v2": HEALTHY | {"requests": 3}, "v1": STABLE}) as prometheus:
        result = rollout.auto(PrometheusSignals(prometheus.url, "llarapp"),
                              clock=lambda: next(ticks))
    assert result["action"] == "rolled back" and "timed out" in result["reasons"][0]
    assert percent(kube) == 0


def test_dry_run_prints_the_kubectl_patch_and_applies_nothing(cluster):
    kube, api, registry = cluster
    start_v2(api, registry)
    rollout, lines = rollout_with(api, registry, dry_run=True)
    patches_before = sum(r["method"] == "PATCH" for r in kube.requests)
    aliases = registry.aliases()
    with FakePrometheus({"v2": HEALTHY, "v1": STABLE}) as prometheus:
        result = rollout.auto(PrometheusSignals(prometheus.url, "llarapp"))
    assert result["action"] == "promoted" and percent(kube) == 10
    assert sum(r["method"] == "PATCH" for r in kube.requests) == patches_before
    assert registry.aliases() == aliases
    assert any(line.startswith("[dry-run] kubectl -n llarapp patch isvc llarapp --type merge "
                               "-p '{\"spec\":{\"predictor\":{\"canaryTrafficPercent\":50}}}'")
               for line in lines), lines


def test_manual_promote_and_rollback(cluster):
    kube, api, registry = cluster
    rollout = start_v2(api, registry)
    assert rollout.promote()["canary_percent"] == 50 and percent(kube) == 50
    assert rollout.rollback()["canary_percent"] == 0 and percent(kube) == 0
    assert registry.aliases()["production"] == "1"


def test_start_refuses_a_version_that_skipped_staging(cluster):
    kube, api, registry = cluster
    registry.client.create_model_version("llarapp", "s3://models/llarapp/v3")
    rollout, _ = rollout_with(api, registry)
    with pytest.raises(RegistryError, match="does not hold 'staging'"):
        rollout.start("s3://models/llarapp/v3", "v3", "3", 10)
    assert percent(kube) is None  # still all on the stable version
    assert not any(r["method"] == "PATCH" for r in kube.requests)


def test_cli_status_and_dry_run_promote_through_a_kubeconfig(cluster, tmp_path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from llarapp.cli import app

    kube, api, registry = cluster
    start_v2(api, registry)
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                  "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
                  "users": [{"name": "me", "user": {"token": "t"}}],
                  "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}]}
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    runner = CliRunner()
    status = runner.invoke(app, ["rollout", "status"])
    assert status.exit_code == 0, status.output
    assert '"canary_percent": 10' in status.output and '"stable_version": "v1"' in status.output
    promote = runner.invoke(app, ["rollout", "promote", "--dry-run",
                                  "--set", f"tracking_uri={registry.tracking_uri}"])
    assert promote.exit_code == 0, promote.output
    assert "[dry-run] kubectl -n llarapp patch isvc llarapp" in " ".join(promote.output.split())
    assert percent(kube) == 10
