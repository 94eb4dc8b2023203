"""``llarapp drift report``: PSI per feature of logged requests against a bundle's reference.

The requests come as JSON lines, each a V1 instance or a whole V1 body (``{"instances":
[...]}``): what ``llarapp simulate`` writes to ``requests.jsonl``, or a dump of KServe's
payload logger. The server exports the same PSI live as ``llarapp_drift_psi{feature}``;
this report is the offline view, with the histograms behind each number.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llarapp.errors import BundleError, DataValidationError, InvalidRequestError
from llarapp.eval.plots import save_figure
from llarapp.serving.bundle import Bundle
from llarapp.serving.drift import FEATURES, REFERENCE_FILE, SIGNIFICANT_PSI, Reference
from llarapp.serving.engine import Engine, Request
from llarapp.serving.schema import parse_v1
from llarapp.storage import atomic_dir, atomic_write_bytes

MODERATE_PSI = 0.1


def read_requests(path: str | os.PathLike[str]) -> list[Request]:
    """Validated requests from a JSON-lines file; a bad line is named by its number."""
    requests = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise DataValidationError(f"cannot read requests from {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
            body = body if isinstance(body, dict) and "instances" in body else {"instances": [body]}
            requests += [instance.to_request() for instance in parse_v1(body)]
        except (ValueError, InvalidRequestError) as exc:
            raise DataValidationError(f"{path}, line {number}: not a V1 instance or body "
                                      f"({exc})") from None
    if not requests:
        raise DataValidationError(f"{path} holds no requests")
    return requests


def verdict(value: float) -> str:
    if value >= SIGNIFICANT_PSI:
        return "significant"
    return "moderate" if value >= MODERATE_PSI else "stable"


def _plot(reference: Reference, rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib.pyplot as plt

    names = list(reference.features)
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        binned = reference.features[name]
        values = np.array([r[name] for r in rows], np.float64)
        live = binned.shares(values[np.isfinite(values)])
        positions = np.arange(len(binned.expected))
        axis.bar(positions - 0.2, binned.expected, 0.4, label="reference")
        axis.bar(positions + 0.2, live, 0.4, label="live")
        axis.set_title(name)
        axis.set_xlabel("bin")
        axis.grid(alpha=0.3)
    axes[0][0].legend()
    figure.suptitle("Request features: training reference against live requests")
    save_figure(figure, path)


def drift_report(bundle_uri: str, requests_path: str | os.PathLike[str],
                 output: str | os.PathLike[str]) -> dict[str, Any]:
    bundle = Bundle.load(bundle_uri)
    if not bundle.path(REFERENCE_FILE).is_file():
        raise BundleError(f"{bundle_uri} has no {REFERENCE_FILE} (exported before drift "
                          "monitoring); re-run `llarapp export` to fit one")
    reference = Reference.load(bundle.path(REFERENCE_FILE))
    requests = read_requests(requests_path)
    rows = Engine(bundle).drift_features(requests)
    psi = reference.psi(rows)
    table = pd.DataFrame([{"feature": name, "psi": psi[name], "verdict": verdict(psi[name])}
                          for name in FEATURES if name in psi])
    result = {"model_version": bundle.version, "reference": reference.source,
              "requests": len(rows), "psi": psi,
              "drifted": sorted(f for f, v in psi.items() if v >= SIGNIFICANT_PSI)}
    with atomic_dir(output) as out:
        atomic_write_bytes(out / "drift.json", json.dumps(result, indent=2).encode())
        _plot(reference, rows, out / "drift.png")
        atomic_write_bytes(out / "drift.md", (
            f"# Input drift: {len(rows)} requests against {reference.source} "
            f"(model {bundle.version})\n\nPSI ≥ {SIGNIFICANT_PSI} is a significant shift, ≥ "
            f"{MODERATE_PSI} a moderate one.\n\n{table.to_markdown(index=False, floatfmt='.4f')}"
            "\n\n![reference against live](drift.png)\n").encode())
    return result | {"table": table}
