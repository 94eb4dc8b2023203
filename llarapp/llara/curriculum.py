"""Curriculum prompt tuning: the chance that a training step uses hybrid prompts.

LLaRA's reference code keeps this counter in its collater; every DataLoader worker gets a
copy and it restarts each epoch. Here the trainer owns the one global step counter and
decides per step, in the main process, so the schedule is the same whatever the number
of workers or epochs. A step is wholly hybrid or wholly text-only; on text-only steps
the projector gets no gradient, so the optimizer leaves it untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llarapp.llara.config import SCHEDULES


def hybrid_probability(schedule: str, step: int, total: int) -> float:
    """p(hybrid) at global ``step`` of ``total``: curriculum rises linearly from 0 to 1."""
    if schedule == "curriculum":
        return min(step / total, 1.0)
    if schedule == "text":
        return 0.0
    if schedule == "hybrid":
        return 1.0
    if schedule == "two_stage":
        return 0.0 if step < total // 2 else 1.0
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")


@dataclass
class Curriculum:
    schedule: str
    total_steps: int
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def probability(self, step: int) -> float:
        return hybrid_probability(self.schedule, step, self.total_steps)

    def draw(self, step: int) -> tuple[float, bool]:
        """(p, whether this step is hybrid)."""
        p = self.probability(step)
        return p, bool(self.rng.random() < p)
