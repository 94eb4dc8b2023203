"""Real Prometheus, Pushgateway and Alertmanager for the tests: the Debian binaries
(`make monitoring-tools` installs them), each started on a free localhost port with a
config written for the test, and stopped afterwards.

The packages' services never run here; :class:`Daemon` starts the binary itself and waits
for its ``/-/ready``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llarapp.serving.launch import free_port

BINARIES = ("prometheus", "promtool", "prometheus-pushgateway", "prometheus-alertmanager")


def require_binaries() -> None:
    """Skip outside CI when the tools are missing; in CI their absence is a failure."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        message = f"{', '.join(missing)} not on PATH: run `make monitoring-tools`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


class Daemon:
    """One monitoring binary on 127.0.0.1:``port``; ``with Daemon(...) as d: d.url``."""

    def __init__(self, binary: str, args: list[str], port: int, folder: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = folder / f"{binary}.log"
        self.command = [binary, *args]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Daemon:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"{self.command[0]} not ready in 60 s: {self.log_path.read_text()}")

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="llarapp-monitoring-"))


def prometheus(targets: dict[str, dict[str, str]], rule_files: list[Path] = (),
               alertmanager: str = "", honor_labels: bool = False) -> Daemon:
    """Prometheus scraping each ``host:port`` of ``targets`` every second, with that
    target's labels (e.g. the namespace and pod a Kubernetes scrape would add)."""
    folder, port = _folder(), free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "llarapp", "honor_labels": honor_labels,
                            "static_configs": [{"targets": [address], "labels": labels}
                                               for address, labels in targets.items()]}],
        "rule_files": [str(p) for p in rule_files],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [
            {"targets": [alertmanager.removeprefix("http://")]}]}]}
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    return Daemon("prometheus", [f"--config.file={folder / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={folder / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], port, folder)


def pushgateway() -> Daemon:
    folder, port = _folder(), free_port()
    return Daemon("prometheus-pushgateway", [f"--web.listen-address=127.0.0.1:{port}"], port,
                  folder)


def alertmanager(webhook_url: str, token: str) -> Daemon:
    """Alertmanager routing ``action=retrain`` alerts to ``webhook_url`` with a bearer
    token, as the AlertmanagerConfig in manifests/platform/retrain-webhook.yaml does."""
    folder, port = _folder(), free_port()
    (folder / "token").write_text(token)
    config = {
        "route": {"receiver": "ignore", "group_wait": "1s", "group_interval": "1s",
                  "routes": [{"receiver": "retrain", "matchers": ['action="retrain"'],
                              "group_by": ["alertname"], "group_wait": "1s"}]},
        "receivers": [{"name": "ignore"},
                      {"name": "retrain", "webhook_configs": [{
                          "url": webhook_url, "send_resolved": False,
                          "http_config": {"authorization": {
                              "credentials_file": str(folder / "token")}}}]}],
    }
    (folder / "alertmanager.yml").write_text(yaml.safe_dump(config))
    return Daemon("prometheus-alertmanager", [
        f"--config.file={folder / 'alertmanager.yml'}", f"--storage.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="], port, folder)


def query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"not {what} after {timeout:.0f} s")
