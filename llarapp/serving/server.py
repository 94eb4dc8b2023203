"""The KServe model server: V1 ``:predict`` and V2 ``/infer`` on the torch-free engine.

The HTTP server starts at once and the bundle loads in the background, so the readiness
endpoint (``/v1/models/<name>``, ``/v2/models/<name>/ready``) answers 503 until the load
and a warm-up inference have succeeded. A bundle that fails to load (missing, corrupt,
wrong version) is logged with the reason and the model never becomes ready; liveness
(``/``) stays up, so Kubernetes holds traffic back and the rollout stalls, then rolls back.

Requests are validated with pydantic (a 400 names the field), coalesced by the
:class:`~llarapp.serving.batching.Batcher`, and counted in ``llarapp_*`` metrics. With
``--workers N`` (:mod:`llarapp.serving.workers`) N processes share the port, and each loads
the bundle before it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import threading
import warnings
from typing import Any

from kserve.errors import InvalidInput, ModelNotReady

from kserve import InferRequest, Model, ModelServer
from llarapp.errors import BundleError, InvalidRequestError
from llarapp.serving import metrics
from llarapp.serving.batching import Batcher
from llarapp.serving.bundle import Bundle
from llarapp.serving.config import ServeConfig, add_flags, given_flags
from llarapp.serving.drift import REFERENCE_FILE, DriftMonitor, Reference
from llarapp.serving.engine import Engine, Request, Response
from llarapp.serving.http import LlaraRESTServer
from llarapp.serving.limits import DeadlineExceeded, Overloaded, check_cost
from llarapp.serving.protocol import v1_prediction, v2_instance, v2_response
from llarapp.serving.schema import parse_v1
from llarapp.serving.workers import multiprocess_server, prepare_environment

log = logging.getLogger("llarapp.serving")


def warm_up(engine: Engine) -> None:
    """One title-only and one seeded request: the first ONNX runs allocate their arenas."""
    catalogue = engine.bundle.catalogue
    seeds = catalogue["track_uri"].head(engine.ranker_meta["history_len"]).tolist()
    engine.recommend([Request("warm up", [], k=5), Request("", seeds, k=5)])


class LlaraModel(Model):
    def __init__(self, cfg: ServeConfig):
        super().__init__(cfg.model_name)
        self.cfg = cfg
        self.recommender: Engine | None = None  # kserve.Model uses `engine` for itself
        self.batcher: Batcher[Request, Response] | None = None
        self.load_error: str | None = None
        self.was_ready = False  # liveness fails if a model that was ready is gone
        self.drift: DriftMonitor | None = None
        self.enable_latency_logging = cfg.enable_latency_logging

    def start(self) -> None:
        """kserve's default marks the model ready; here only a successful load does."""

    def validate(self, payload: Any) -> Any:
        return payload  # predict validates with pydantic, naming the field

    def load(self) -> bool:
        location = self.cfg.bundle_location()
        try:
            bundle = Bundle.load(location)
            expected = self.cfg.expected_version
            if expected and bundle.version != expected:
                raise BundleError(f"{location} holds model version {bundle.version}, but "
                                  f"{expected} was asked for (LLARAPP_MODEL_VERSION); point "
                                  "STORAGE_URI at that version's bundle")
            engine = Engine(bundle, self.cfg.precision, self.cfg.providers,
                            self.cfg.worker_threads)
            if self.cfg.warmup:
                warm_up(engine)
        except Exception as exc:  # every failure leaves the model not ready, and says why
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("model %s will NOT become ready: cannot load the bundle at %s: %s",
                      self.name, location, self.load_error)
            return False
        self.recommender = engine
        self.drift = self._drift_monitor(bundle)
        metrics.watch_drift(self.drift)
        self.batcher = Batcher(self._run, self.cfg.batching, cost=lambda r: r.cost)
        metrics.set_model_info(self.name, bundle.version, self.cfg.precision,
                               len(engine.uris))
        log.info("model %s ready: bundle %s (%s, %d tracks, %s ranker, batches of up to %d "
                 "within %.1f ms)", self.name, bundle.version, location, len(engine.uris),
                 self.cfg.precision, self.cfg.max_batch_size, self.cfg.max_wait_ms)
        # the loaded bundle's objects leave the collector's full scans: on mpd-popular one
        # took 53-75 ms, a pause for every request in flight (10 ms after 2,000 new requests
        # once frozen; README, "Garbage collection")
        gc.collect()
        gc.freeze()
        self.ready = self.was_ready = True
        return True

    @property
    def lost(self) -> bool:
        return self.was_ready and not self.ready

    def _drift_monitor(self, bundle: Bundle) -> DriftMonitor | None:
        path = bundle.path(REFERENCE_FILE)
        if not path.is_file():
            log.warning("bundle %s has no %s (exported before drift monitoring): "
                        "llarapp_drift_psi is not exported", bundle.version, REFERENCE_FILE)
            return None
        return DriftMonitor(Reference.load(path), self.cfg.drift_window,
                            self.cfg.drift_min_requests)

    def _run(self, requests: list[Request]) -> list[Response]:
        responses = self.recommender.recommend(requests, observe=metrics.observe_stage)
        metrics.observe_batch(responses)
        if self.drift is not None:
            self.drift.observe(r.features for r in responses)
        return responses

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if not self.ready or self.batcher is None:
            raise ModelNotReady(self.name, self.load_error or "the bundle is still loading")
        protocol = "v2" if isinstance(payload, InferRequest) else "v1"
        cfg = self.cfg
        try:
            instances = [v2_instance(payload)] if protocol == "v2" else parse_v1(payload)
            check_cost(instances, cfg.max_texts, cfg.max_recommendations)
        except InvalidRequestError as exc:
            metrics.INVALID_REQUESTS.labels(protocol).inc()
            raise InvalidInput(str(exc)) from None
        try:
            with metrics.IN_FLIGHT.track_inprogress():
                async with asyncio.timeout(cfg.deadline_ms / 1000):
                    responses = await self.batcher.submit_all([i.to_request() for i in instances])
        except Overloaded:
            metrics.REFUSED.labels("queue_full").inc()
            raise
        except TimeoutError:  # a 5xx: it counts against a canary too
            metrics.REFUSED.labels("deadline").inc()
            metrics.PREDICT_ERRORS.inc()
            raise DeadlineExceeded(cfg.deadline_ms) from None
        except Exception:
            metrics.PREDICT_ERRORS.inc()  # the canary's error rate (llarapp rollout auto)
            raise
        if protocol == "v2":
            return v2_response(payload, self.name, responses[0])
        return {"predictions": [v1_prediction(r) for r in responses]}

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.ready = False
        gc.unfreeze()  # an unloaded bundle's cycles can be collected again


class LlaraModelServer(ModelServer):
    """kserve's ModelServer with the REST server bound to ``cfg.http_host`` (kserve binds
    0.0.0.0), without gRPC, with our limits and health (:mod:`llarapp.serving.http`), and
    with ``cfg.workers`` processes (:mod:`llarapp.serving.workers`)."""

    def __init__(self, cfg: ServeConfig):
        super().__init__(http_port=cfg.http_port, enable_grpc=False,
                         enable_latency_logging=False, workers=cfg.workers,
                         grace_period=cfg.grace_period_s)
        self.cfg = cfg

    def start(self, models: list[Model]) -> None:
        for model in models:
            self.register_model(model)  # registered while not ready: readiness says 503
        if self.workers > 1:
            self._rest_multiprocess_server = multiprocess_server(
                self.dataplane, self.model_repository_extension, self.cfg, self.grace_period,
                self.timeout_keep_alive)
            self.servers.append(self._rest_multiprocess_server.start())
        else:
            rest = LlaraRESTServer("kserve.model_server:app", self.dataplane,
                                   self.model_repository_extension, self.http_port,
                                   access_log_format=self.access_log_format, workers=1,
                                   grace_period=self.grace_period, event_loop=self.event_loop,
                                   timeout_keep_alive=self.timeout_keep_alive)
            rest.configure(self.cfg)
            self._rest_server = rest
            self.servers.append(rest.start())
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())

    def stop(self, sig: int) -> None:
        if self._rest_multiprocess_server is not None:
            self._rest_multiprocess_server.begin_shutdown()  # now, not when the loop is free
        super().stop(sig)


def parser() -> argparse.ArgumentParser:
    """Our flags, generated from :class:`ServeConfig`."""
    return add_flags(argparse.ArgumentParser(description="LLaRA++ KServe model server"))


def config_from_args(argv: list[str] | None = None) -> ServeConfig:
    """Flags of kserve's own server that ours do not serve (``--grpc_port``, …) are
    accepted and ignored, as KServe may pass them."""
    args, _ = parser().parse_known_args(argv)
    return ServeConfig(**given_flags(args))


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)  # a line per request
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")


def serve(cfg: ServeConfig) -> None:
    """Start the HTTP server now and load the bundle in the background; with several
    workers, each loads it before it accepts connections."""
    configure_logging()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # faiss's threads: sleep, as ORT's
    model = LlaraModel(cfg)
    if cfg.workers > 1:
        prepare_environment(cfg.worker_threads)
    else:
        threading.Thread(target=model.load, name="llarapp-load", daemon=True).start()
    LlaraModelServer(cfg).start([model])


def main(argv: list[str] | None = None) -> None:
    serve(config_from_args(argv))
