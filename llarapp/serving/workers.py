"""``--workers N``: N server processes behind one port, on kserve's multi-process server.

1. The parent binds the port, sets each worker's thread budget (cores / N, for
   onnxruntime, faiss's OpenMP and numpy's BLAS) and a Prometheus multi-process folder,
   then spawns N processes (kserve's ``RESTServerMultiProcess``, spawn context). The model
   it pickles to them has never loaded: no ONNX session or index crosses a process.
2. Each worker loads the bundle itself, before it accepts a connection, so a worker that
   answers is ready (or has logged why it never will be) and no request meets a half-loaded
   worker. The kernel spreads connections over the workers.
3. ``/metrics`` answers for the whole pod: counters and histograms are summed over the
   workers' files (prometheus_client's multiprocess mode). Drift is the answering worker's
   recent window, a random share of the traffic.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from socket import socket

from fastapi import FastAPI, Request
from fastapi.responses import Response
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess
from kserve.protocol.rest.server import RESTServer
from prometheus_client import CollectorRegistry, exposition
from prometheus_client.multiprocess import MultiProcessCollector

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


class WorkerRESTServer(RESTServer):
    """kserve's REST server as one worker: load the models, then serve; ``/metrics`` for
    the pod."""

    def _register_endpoints(self, app: FastAPI) -> None:
        app.add_api_route("/metrics", pod_metrics, methods=["GET"])  # first match wins
        super()._register_endpoints(app)

    def run(self, sockets: list[socket] | None = None) -> None:
        from llarapp.serving.server import configure_logging

        configure_logging()
        for model in self.dataplane.model_registry.get_models().values():
            model.load()  # failures are logged and leave the model not ready
        log.info("worker %d serving", os.getpid())
        super().run(sockets)


def multiprocess_server(dataplane, repository, host: str, port: int, workers: int,
                        grace_period: int, keep_alive: int) -> RESTServerMultiProcess:
    """kserve's multi-process server whose workers are :class:`WorkerRESTServer`."""
    options = dict(workers=workers, grace_period=grace_period, timeout_keep_alive=keep_alive)
    server = RESTServerMultiProcess(APP, dataplane, repository, port, **options)
    worker = WorkerRESTServer(APP, dataplane, repository, port, **options)
    worker.config.host = host
    server._rest_server = worker  # kserve builds a plain RESTServer; the workers run ours
    return server
