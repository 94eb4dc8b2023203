"""The two-layer MLP's forward pass in numpy, for serving without torch."""

from __future__ import annotations

import numpy as np


def apply_numpy(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Linear → GELU (exact, as ``nn.GELU()``) → Linear; weights from ``to_numpy_weights``."""
    from scipy.special import erf

    hidden = x @ weights["w1"] + weights["b1"]
    hidden = 0.5 * hidden * (1.0 + erf(hidden / np.sqrt(2.0)))
    return (hidden @ weights["w2"] + weights["b2"]).astype(np.float32)
