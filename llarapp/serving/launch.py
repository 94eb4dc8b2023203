"""Run the model server as a child process: for the benchmark, the tests and the
notebooks, which all need a real server on localhost and its log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from llarapp.errors import ModelNotReadyError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``with ServerProcess(bundle, "--max_batch_size", "1") as server: server.url``."""

    def __init__(self, model_dir: str | os.PathLike[str], *args: str, model_name: str = "llarapp",
                 port: int | None = None, env: dict[str, str] | None = None):
        self.model_name = model_name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="llarapp-serve-", suffix=".log")[1])
        self.command = [sys.executable, "-m", "llarapp.serving", "--model_dir", str(model_dir),
                        "--model_name", model_name, "--http_host", "127.0.0.1",
                        "--http_port", str(self.port), *args]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env)
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self, path: str) -> int | None:
        """The HTTP status of GET ``path``, or None while nothing listens."""
        try:
            return httpx.get(self.url + path, timeout=5).status_code
        except httpx.TransportError:
            return None

    def wait_listening(self, timeout: float = 120) -> None:
        self.wait_until(lambda: self.status("/") == 200, timeout, "listening")

    def wait_ready(self, timeout: float = 180) -> None:
        self.wait_until(lambda: self.status(f"/v1/models/{self.model_name}") == 200, timeout,
                   "ready")

    def wait_until(self, condition, timeout: float, what: str) -> None:
        """Poll ``condition`` until it holds; fail with the log if the server exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ModelNotReadyError(f"the server exited ({self.process.returncode}) "
                                         f"before it was {what}; its log:\n{self.log[-3000:]}")
            if condition():
                return
            time.sleep(0.2)
        raise ModelNotReadyError(f"the server was not {what} after {timeout:.0f} s; its "
                                 f"log:\n{self.log[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ServerProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
