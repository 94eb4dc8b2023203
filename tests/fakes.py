"""Small fake HTTP APIs for code that talks to a cluster: real HTTP, recorded requests.

* :class:`FakeKube`: the Kubernetes API for namespaced custom objects (get, create,
  merge-patch), enough for the official ``kubernetes`` client's CustomObjectsApi.
* :class:`FakeKfp`: the parts of the KFP v2beta1 REST API that ``kfp.Client`` calls to
  create a run or a recurring run.
* :class:`FakePrometheus`: the instant-query API, answering llarapp's rollout queries
  from per-version numbers.
* :class:`FakeCanary`: a V1 model server split between two model versions, each with its
  own fixed answer; :class:`FakePushgateway` records what is pushed.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1 whose handler calls ``self.handle``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                json_body = "json" in (self.headers.get("Content-Type") or "json")
                body = (json.loads(raw) if json_body else raw.decode()) if raw else None
                fake.requests.append({"method": self.command, "path": self.path, "body": body,
                                      "content_type": self.headers.get("Content-Type")})
                status, payload = fake.dispatch(self.command, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def dispatch(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        return self.handle(method, raw_path.split("?")[0], body)

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FakeKube(FakeServer):
    _OBJECT = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)"
                         r"/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$")

    def __init__(self, deny: int | None = None) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.deny = deny  # answer every request with this status (e.g. 403)
        super().__init__()

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        match = self._OBJECT.match(path)
        if self.deny:
            return self.deny, {"kind": "Status", "code": self.deny, "reason": "Forbidden"}
        if not match:
            return 404, {"kind": "Status", "code": 404}
        key = (match["plural"], match["ns"], match["name"] or (body or {}).get(
            "metadata", {}).get("name"))
        if method == "POST":
            if key in self.objects:
                return 409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"}
            self.objects[key] = body
            return 201, body
        if key not in self.objects:
            return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        if method == "PATCH":
            self.objects[key] = merge_patch(self.objects[key], body)
        return 200, self.objects[key]

    def api(self) -> Any:
        from kubernetes import client

        config = client.Configuration(host=self.url)
        return client.CustomObjectsApi(client.ApiClient(config))


class FakeKfp(FakeServer):
    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path.endswith("/experiments") and method == "GET":
            return 200, {}
        if path.endswith("/experiments") and method == "POST":
            return 200, {"experiment_id": "exp-1", **body}
        if path.endswith("/runs") and method == "POST":
            return 200, {"run_id": "run-1", "experiment_id": "exp-1", **body}
        if path.endswith("/recurringruns") and method == "POST":
            return 200, {"recurring_run_id": "rec-1", **body}
        if path.startswith("/apis/v2beta1/healthz"):
            return 200, {"multi_user": False}
        return 404, {"error": f"fake KFP has no {method} {path}"}

    def posted(self, suffix: str) -> list[Any]:
        return [r["body"] for r in self.requests
                if r["method"] == "POST" and r["path"].split("?")[0].endswith(suffix)]


class FakePrometheus(FakeServer):
    """``/api/v1/query``: the rollout's four queries, told apart by the metric they read,
    answered from ``versions = {model_version: {requests, errors, p95_s, hit_rate}}``."""

    SIGNALS = (("llarapp_predict_errors_total", "errors"), ("histogram_quantile", "p95_s"),
               ("llarapp_online_hits_total", "hit_rate"),
               ("request_predict_seconds_count", "requests"))

    def __init__(self, versions: dict[str, dict[str, float]]) -> None:
        self.versions = versions
        super().__init__()

    def dispatch(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(raw_path)
        if parts.path != "/api/v1/query":
            return 404, {"status": "error", "error": f"no {parts.path}"}
        query = parse_qs(parts.query).get("query", [""])[0]
        signal = next((name for metric, name in self.SIGNALS if metric in query), None)
        if signal is None:
            return 400, {"status": "error", "error": f"unexpected query {query}"}
        result = [{"metric": {"model_version": version}, "value": [0, str(values[signal])]}
                  for version, values in self.versions.items() if signal in values]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


class FakeCanary(FakeServer):
    """V1 ``:predict`` whose requests alternate between ``answers = {version: [uris]}``."""

    def __init__(self, answers: dict[str, list[str]], model_name: str = "llarapp") -> None:
        self.answers, self.model_name, self.turn = answers, model_name, 0
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == f"/v1/models/{self.model_name}":
            return 200, {"name": self.model_name, "ready": True}
        if method != "POST" or path != f"/v1/models/{self.model_name}:predict":
            return 404, {"error": f"no route {method} {path}"}
        with self.lock:
            version = list(self.answers)[self.turn % len(self.answers)]
            self.turn += 1
        recs = [{"track_uri": uri, "track_name": "", "artist_name": "", "score": 0.0,
                 "reason": ""} for uri in self.answers[version]]
        return 200, {"predictions": [{"model_version": version, "cold_start": "none",
                                      "warnings": [], "recommendations": recs}
                                     for _ in body["instances"]]}


class FakePushgateway(FakeServer):
    """Accepts pushes (``PUT /metrics/job/...``); ``requests`` keeps each exposition text."""

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        return (200, {}) if path.startswith("/metrics/job/") else (404, {})
