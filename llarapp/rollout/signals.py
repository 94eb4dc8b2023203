"""Canary health from Prometheus, per model version.

Each predictor pod serves one bundle and exports ``llarapp_model_info{model_version}``;
joining on (namespace, pod) labels KServe's request histograms and the server's error
counter by version, so canary and stable compare however Knative splits the traffic.
The online hit rate comes from ``llarapp simulate`` (or an app's feedback), already
labelled by version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx

from llarapp.errors import DeployError


@dataclass
class Signals:
    requests: float = 0.0
    error_rate: float = 0.0
    p95_s: float = math.nan
    hit_rate: float = math.nan


class PrometheusSignals:
    def __init__(self, url: str, namespace: str, model_name: str = "llarapp",
                 window: str = "10m", client: httpx.Client | None = None):
        self.url = url.rstrip("/")
        self.namespace, self.model_name, self.window = namespace, model_name, window
        self.client = client or httpx.Client(timeout=30)

    def _by_version(self, series: str) -> str:
        info = f'llarapp_model_info{{namespace="{self.namespace}"}}'
        return (f"({series}) * on (namespace, pod) group_left (model_version) max by "
                f"(namespace, pod, model_version) ({info})")

    def queries(self) -> dict[str, str]:
        ns, w = f'namespace="{self.namespace}"', self.window
        predict = f'request_predict_seconds_count{{{ns}, model_name="{self.model_name}"}}'
        return {
            "requests": f"sum by (model_version) ({self._by_version(f'increase({predict}[{w}])')})",
            "errors": "sum by (model_version) ("
                      + self._by_version(f"increase(llarapp_predict_errors_total{{{ns}}}[{w}])")
                      + ")",
            "p95_s": "histogram_quantile(0.95, sum by (le, model_version) (" + self._by_version(
                f'rate(request_predict_seconds_bucket{{{ns}, model_name="{self.model_name}"}}'
                f"[{w}])") + "))",
            "hit_rate": f"sum by (model_version) (increase(llarapp_online_hits_total{{{ns}}}[{w}]))"
                        f" / sum by (model_version) "
                        f"(increase(llarapp_online_requests_total{{{ns}}}[{w}]))",
        }

    def query(self, promql: str) -> dict[str, float]:
        """{model_version: value} of an instant vector query."""
        try:
            answer = self.client.get(f"{self.url}/api/v1/query", params={"query": promql})
            answer.raise_for_status()
            body = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DeployError(f"Prometheus at {self.url} did not answer ({exc}); set "
                              "prometheus_url to its API (e.g. http://prometheus:9090)") from exc
        if body.get("status") != "success":
            raise DeployError(f"Prometheus refused the query: {body.get('error', body)}")
        return {r["metric"].get("model_version", ""): float(r["value"][1])
                for r in body["data"]["result"]}

    def collect(self, versions: list[str]) -> dict[str, Signals]:
        values = {name: self.query(q) for name, q in self.queries().items()}
        out = {}
        for version in versions:
            requests = values["requests"].get(version, 0.0)
            errors = values["errors"].get(version, 0.0)
            out[version] = Signals(requests, errors / requests if requests else 0.0,
                                   values["p95_s"].get(version, math.nan),
                                   values["hit_rate"].get(version, math.nan))
        return out
