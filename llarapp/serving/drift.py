"""Input drift: live requests against the reference the export stage fitted on the
validation playlists, feature by feature, as the Population Stability Index.

Features of one request (the same code computes them at export and in the server):

* ``history_length``: usable seed tracks;
* ``cold_start``: 1 when the request has no known seed (title only or unknown tracks);
* ``seed_popularity``: mean log(1 + training degree) of its known seeds (none: skipped);
* ``embedding_norm``: L2 norm of its graph-space query (fold-in or cold-mapped title).

PSI = Σ (live − ref) · ln(live / ref) over the reference's bins; above 0.2 is the usual
"significant shift".
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from llarapp.config import require
from llarapp.errors import BundleError

FEATURES = ("history_length", "cold_start", "seed_popularity", "embedding_norm")
REFERENCE_FILE = "drift_reference.json"
SIGNIFICANT_PSI = 0.2
_FLOOR = 1e-4  # an empty bin counts as this share, so PSI stays finite


def request_features(known: list[int], history: int, graph_query: np.ndarray,
                     degree: np.ndarray) -> dict[str, float]:
    return {"history_length": float(history),
            "cold_start": float(not known),
            "seed_popularity": float(np.log1p(degree[known]).mean()) if known else math.nan,
            "embedding_norm": float(np.linalg.norm(graph_query))}


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = np.maximum(np.asarray(expected, np.float64), _FLOOR)
    actual = np.maximum(np.asarray(actual, np.float64), _FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass
class Binned:
    """Inner bin edges of one feature and the reference's share in each bin."""

    edges: list[float]
    expected: list[float]

    @classmethod
    def fit(cls, values: np.ndarray, bins: int) -> Binned:
        distinct = np.unique(values)
        if len(distinct) == 1:  # a constant: any other value must land in another bin
            edges = distinct[0] + np.array([-0.5, 0.5])
        elif len(distinct) <= bins:  # discrete: one bin per value
            edges = (distinct[:-1] + distinct[1:]) / 2
        else:
            edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        binned = cls(edges.tolist(), [])
        binned.expected = binned.shares(values).tolist()
        return binned

    def shares(self, values: np.ndarray) -> np.ndarray:
        counts = np.bincount(np.searchsorted(self.edges, values, side="right"),
                             minlength=len(self.edges) + 1)
        return counts / max(1, counts.sum())


@dataclass
class Reference:
    features: dict[str, Binned]
    requests: int
    source: str = ""

    @classmethod
    def fit(cls, rows: list[Mapping[str, float]], bins: int = 10, source: str = "") -> Reference:
        require(len(rows) > 0, "the drift reference needs at least one request")
        columns = _columns(rows)
        return cls({name: Binned.fit(values, bins) for name, values in columns.items()
                    if len(values)}, len(rows), source)

    def psi(self, rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
        """PSI per feature of ``rows`` (features with no finite value are left out)."""
        columns = _columns(list(rows))
        return {name: psi(binned.expected, binned.shares(columns[name]))
                for name, binned in self.features.items() if len(columns[name])}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"requests": self.requests, "source": self.source,
                                    "features": {k: asdict(v) for k, v in self.features.items()}},
                                   indent=1))

    @classmethod
    def load(cls, path: Path) -> Reference:
        try:
            data = json.loads(path.read_text())
            return cls({k: Binned(**v) for k, v in data["features"].items()},
                       int(data["requests"]), data.get("source", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"{path} is not a drift reference ({exc}); re-run "
                              "`llarapp export`") from exc


def _columns(rows: list[Mapping[str, float]]) -> dict[str, np.ndarray]:
    out = {}
    for name in FEATURES:
        values = np.array([row[name] for row in rows], np.float64)
        out[name] = values[np.isfinite(values)]
    return out


class DriftMonitor:
    """The last ``window`` requests' features; PSI once at least ``min_requests`` are in."""

    def __init__(self, reference: Reference, window: int = 1000, min_requests: int = 100):
        require(window >= min_requests >= 1, "need window >= min_requests >= 1")
        self.reference, self.min_requests = reference, min_requests
        self.rows: deque[Mapping[str, float]] = deque(maxlen=window)
        self.lock = threading.Lock()

    def observe(self, rows: Iterable[Mapping[str, float]]) -> None:
        with self.lock:
            self.rows.extend(rows)

    def psi(self) -> dict[str, float]:
        """PSI per feature over the window, or {} while it is too short."""
        with self.lock:
            rows = list(self.rows)
        return self.reference.psi(rows) if len(rows) >= self.min_requests else {}
