"""``--workers N``: N server processes behind one port, on kserve's multi-process server.

1. The parent sets each worker's thread budget (cores / N, for onnxruntime, faiss's
   OpenMP and numpy's BLAS) and a Prometheus multi-process folder, binds N
   ``SO_REUSEPORT`` sockets to the port, then spawns N processes (kserve's
   ``RESTServerMultiProcess``, spawn context). The model it pickles to them has never
   loaded: no ONNX session or index crosses a process.
   Each worker listens on its own socket, so the kernel spreads new
   connections over the workers by hash; with one shared socket, whichever worker won
   the accept() races kept its keep-alive connections, and on 2 cores one worker
   ended up with most of them.
2. Each worker loads the bundle itself, before it accepts a connection, so a worker that
   answers is ready (or has logged why it never will be) and no request meets a half-loaded
   worker.
3. ``/metrics`` answers for the whole pod: counters and histograms are summed over the
   workers' files (prometheus_client's multiprocess mode). Drift is the answering worker's
   recent window, a random share of the traffic.
4. SIGTERM is passed to every worker from the signal handler itself, and no worker is
   restarted after it: each drains its requests in flight, as a single server does.
5. The hash spreads keep-alive connections unevenly (16 on two workers: 5/11 or worse in 6
   of 30 tries), so a worker over its share closes connections until the split is even
   (:mod:`llarapp.serving.balance`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess
from prometheus_client import CollectorRegistry, exposition
from prometheus_client.multiprocess import MultiProcessCollector

from llarapp.serving.balance import (
    BOARD_VARIABLE,
    SLOT_VARIABLE,
    ConnectionBalance,
    ConnectionBoard,
)
from llarapp.serving.http import LlaraRESTServer

log = logging.getLogger("llarapp.serving")

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
METRICS_FOLDER = "PROMETHEUS_MULTIPROC_DIR"
APP = "kserve.model_server:app"


def prepare_environment(threads: int) -> None:
    """What every worker inherits: its thread budget (unless the user set one) and a fresh
    folder for the metrics files."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    if not os.environ.get(METRICS_FOLDER):
        os.environ[METRICS_FOLDER] = tempfile.mkdtemp(prefix="llarapp-metrics-")
        atexit.register(shutil.rmtree, os.environ[METRICS_FOLDER], ignore_errors=True)


async def pod_metrics(request: Request) -> Response:
    """Every worker's counters and histograms, plus this worker's drift gauge."""
    from llarapp.serving.metrics import DRIFT

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(DRIFT)
    encoder, content_type = exposition.choose_encoder(request.headers.get("accept"))
    return Response(content=encoder(registry), headers={"content-type": content_type})


class WorkerRESTServer(LlaraRESTServer):
    """Our REST server as one worker: load the models, then serve; ``/metrics`` for
    the pod."""

    def _register_endpoints(self, app: FastAPI) -> None:
        app.add_api_route("/metrics", pod_metrics, methods=["GET"])  # first match wins
        super()._register_endpoints(app)

    def _add_middlewares(self, app: FastAPI) -> None:
        super()._add_middlewares(app)
        shared = ConnectionBoard.from_environment()
        if shared is not None:
            board, slot = shared
            app.add_middleware(ConnectionBalance, board=board, slot=slot,
                               open_connections=lambda: {connection.client for connection
                                                         in self._server.server_state.connections})

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        from llarapp.serving.server import configure_logging

        configure_logging()
        for model in self.dataplane.model_registry.get_models().values():
            model.load()  # failures are logged and leave the model not ready
        log.info("worker %d serving", os.getpid())
        super().run(sockets)


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that other processes may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class BalancedMultiProcess(RESTServerMultiProcess):
    """kserve's multi-process server with one SO_REUSEPORT socket per worker (a restarted
    worker takes over its predecessor's)."""

    def __init__(self, *args, host: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.host = host
        self._sockets: list[socket.socket] = []
        self.stopping = False

    def begin_shutdown(self) -> None:
        """From the SIGTERM handler, at once (the event loop may be blocked pinging a busy
        worker for seconds): no more restarts, the parent's copies of the sockets closed,
        and SIGTERM passed to every worker, which then drains like a single server."""
        self.stopping = True
        for sock in self._sockets:
            sock.close()
        for process in self._processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):  # already gone
                    os.kill(process.pid, signal.SIGTERM)

    async def start(self) -> None:
        """As kserve's, without its one shared socket (it would hold the port alone)."""
        self.init_processes([])
        while not (self.stopping or self.should_exit.is_set()):
            try:
                await asyncio.wait_for(self.should_exit.wait(), 0.5)
            except TimeoutError:
                await self.keep_subprocess_alive([])
        await self.terminate_all()

    def init_processes(self, sockets: list[socket.socket]) -> None:
        port, workers = self._rest_server.config.port, self._rest_server.config.workers
        self._sockets = [listening_socket(self.host, port) for _ in range(workers)]
        board = Path(os.environ[METRICS_FOLDER]) / "connections.board"
        ConnectionBoard.create(board, workers)
        os.environ[BOARD_VARIABLE] = str(board)
        for slot in range(workers):
            self._processes.append(self._spawn(slot))
            log.info("started worker process %s", self._processes[-1].pid)

    def _spawn(self, slot: int) -> RESTServerProcess:
        """Worker ``slot`` on its socket; a spawned process takes os.environ as it is now."""
        os.environ[SLOT_VARIABLE] = str(slot)
        process = RESTServerProcess([self._sockets[slot]], self._rest_server.run)
        process.start()
        return process

    async def keep_subprocess_alive(self, sockets: list[socket.socket]) -> None:
        for slot, process in enumerate(self._processes):
            if self.stopping or self.should_exit.is_set() or process.is_alive():
                continue
            process.kill()  # hung or gone: replace it on its own socket
            await process.wait_for_termination()
            if self.stopping or self.should_exit.is_set():
                return
            log.warning("worker process %s died; starting another", process.pid)
            self._processes[slot] = self._spawn(slot)


def multiprocess_server(dataplane, repository, cfg, grace_period: int, keep_alive: int
                        ) -> RESTServerMultiProcess:
    """kserve's multi-process server whose workers are :class:`WorkerRESTServer`s, each
    on its own socket (``cfg``: a :class:`~llarapp.serving.config.ServeConfig`)."""
    options = dict(workers=cfg.workers, grace_period=grace_period, timeout_keep_alive=keep_alive)
    server = BalancedMultiProcess(APP, dataplane, repository, cfg.http_port, host=cfg.http_host,
                                  **options)
    worker = WorkerRESTServer(APP, dataplane, repository, cfg.http_port, **options)
    worker.configure(cfg)
    server._rest_server = worker  # kserve builds a plain RESTServer; the workers run ours
    return server
