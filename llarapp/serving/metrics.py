"""The server's own Prometheus metrics (``llarapp_*``), next to KServe's request
histograms on the same ``/metrics`` (both use prometheus_client's default registry).

Every metric works in prometheus_client's multiprocess mode (``--workers``), so the model
description is a gauge of 1 with labels (an ``Info`` cannot be shared across processes)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llarapp.serving.drift import DriftMonitor
from llarapp.serving.engine import Response

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

STAGE_SECONDS = Histogram("llarapp_stage_seconds",
                          "Time of one serving stage for a whole batch",
                          ["stage"], buckets=LATENCY_BUCKETS)
COLD_START = Counter("llarapp_cold_start_requests",
                     "Playlists served, by cold-start kind", ["kind"])
UNKNOWN_TRACKS = Counter("llarapp_unknown_tracks",
                         "Seed tracks not in the catalogue, by whether metadata came with them",
                         ["with_metadata"])
BATCH_SIZE = Histogram("llarapp_batch_size", "Playlists per engine call (after coalescing)",
                       buckets=BATCH_BUCKETS)
INVALID_REQUESTS = Counter("llarapp_invalid_requests", "Requests refused with a 4xx",
                           ["protocol"])
REFUSED = Counter("llarapp_refused_requests", "Requests refused by a server limit "
                  "(body_size, cost, queue_full, deadline)", ["reason"])
IN_FLIGHT = Gauge("llarapp_requests_in_flight", "Predict requests past validation and not yet "
                  "answered (waiting in the batcher or running), summed over the workers",
                  multiprocess_mode="livesum")
PREDICT_ERRORS = Counter("llarapp_predict_errors", "Predictions that failed with a 5xx")
MODEL = Gauge("llarapp_model_info", "The loaded bundle (1, described by the labels)",
              ["model_name", "model_version", "precision", "tracks"], multiprocess_mode="max")


class DriftCollector(Collector):
    """``llarapp_drift_psi{feature}``, computed when Prometheus scrapes, not on every batch;
    no samples until the monitor's window holds enough requests."""

    def __init__(self) -> None:
        self.monitor: DriftMonitor | None = None

    def collect(self):
        family = GaugeMetricFamily("llarapp_drift_psi", "PSI of the recent requests against "
                                   "the training reference, per feature "
                                   "(llarapp.serving.drift)", labels=["feature"])
        for feature, value in (self.monitor.psi() if self.monitor is not None else {}).items():
            family.add_metric([feature], value)
        yield family


DRIFT = DriftCollector()
REGISTRY.register(DRIFT)


def observe_stage(stage: str, seconds: float) -> None:
    STAGE_SECONDS.labels(stage).observe(seconds)


def observe_batch(responses: list[Response]) -> None:
    BATCH_SIZE.observe(len(responses))
    for response in responses:
        COLD_START.labels(response.cold_start).inc()
        seed = response.seeds
        if seed.extra:
            UNKNOWN_TRACKS.labels("true").inc(len(seed.extra))
        if seed.ignored:
            UNKNOWN_TRACKS.labels("false").inc(seed.ignored)


def set_model_info(model_name: str, version: str, precision: str, tracks: int) -> None:
    MODEL.labels(model_name, version, precision, str(tracks)).set(1)


def watch_drift(monitor: DriftMonitor | None) -> None:
    DRIFT.monitor = monitor
