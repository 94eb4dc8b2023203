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


TOKEN = "webhook-token"


def _notify(client, *alerts, token=TOKEN, status=200):
    answer = client.post("/alerts", json={"version": "4", "status": "firing",
                                          "receiver": "retrain", "alerts": list(alerts)},
                         headers={"authorization": f"Bearer {token}"} if token else {})
    assert answer.status_code == status, answer.text
    return answer.json()


def test_drift_alert_submits_once_per_cooldown(kfp_api):
    now = [1000.0]
    cfg = RetrainConfig(host=kfp_api.url, cooldown_s=3600, token=TOKEN,
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
    client = TestClient(create_app(RetrainConfig(host=kfp_api.url, token=TOKEN)))
    assert not _notify(client, alert)["submitted"]
    assert kfp_api.posted("/runs") == []


@pytest.mark.parametrize("token", ["", "not-the-token"])
def test_an_alert_without_the_bearer_token_is_refused(kfp_api, token):
    client = TestClient(create_app(RetrainConfig(host=kfp_api.url, token=TOKEN)))
    answer = _notify(client, _alert(), token=token, status=401)
    assert "LLARAPP_WEBHOOK_TOKEN" in answer["detail"]
    assert kfp_api.posted("/runs") == []


@pytest.mark.parametrize("fields, message", [
    ({"host": "ml-pipeline:8888", "token": TOKEN}, "KFP API URL"),
    ({"host": "http://ml-pipeline:8888", "token": ""}, "LLARAPP_WEBHOOK_TOKEN"),
])
def test_config_needs_the_kfp_api_and_a_token(monkeypatch, fields, message):
    monkeypatch.delenv("LLARAPP_WEBHOOK_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=message):
        RetrainConfig(**fields)
