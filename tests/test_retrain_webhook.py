"""The retraining webhook: a firing drift alert submits the training pipeline, once per
cooldown, through the real kfp.Client against a fake KFP API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from llarapp.errors import ConfigError
from pipelines.retrain_webhook import RetrainConfig, create_app


def _alert(status="firing", action="retrain", feature="cold_start") -> dict:
    return {"status": status, "labels": {"alertname": "LlarappInputDrift", "action": action,
                                         "feature": feature, "namespace": "llarapp"}}


def _notify(client, *alerts):
    answer = client.post("/alerts", json={"version": "4", "status": "firing",
                                          "receiver": "retrain", "alerts": list(alerts)})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_drift_alert_submits_once_per_cooldown(kfp_api):
    now = [1000.0]
    cfg = RetrainConfig(host=kfp_api.url, cooldown_s=3600,
                        arguments={"data_uri": "s3://mpd/latest"})
    client = TestClient(create_app(cfg, clock=lambda: now[0]))
    first = _notify(client, _alert(), _alert(feature="history_length"))
    assert first["submitted"] and first["run_id"] == "run-1"
    assert first["because"] == "LlarappInputDrift(cold_start), LlarappInputDrift(history_length)"
    (run,) = kfp_api.posted("/runs")
    assert run["runtime_config"]["parameters"] == {"data_uri": "s3://mpd/latest"}
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "llarapp-training"
    now[0] += 600
    again = _notify(client, _alert())
    assert not again["submitted"] and "cooldown" in again["reason"]
    now[0] += 3600
    assert _notify(client, _alert())["submitted"]
    assert len(kfp_api.posted("/runs")) == 2
    assert len(client.get("/healthz").json()["runs"]) == 2


@pytest.mark.parametrize("alert", [_alert(status="resolved"), _alert(action="page")])
def test_other_alerts_are_acknowledged_not_acted_on(kfp_api, alert):
    client = TestClient(create_app(RetrainConfig(host=kfp_api.url)))
    assert not _notify(client, alert)["submitted"]
    assert kfp_api.posted("/runs") == []


def test_config_needs_the_kfp_api():
    with pytest.raises(ConfigError, match="KFP API URL"):
        RetrainConfig(host="ml-pipeline:8888")
