"""LambdaMART over the candidate features: LightGBM's ``lambdarank`` objective.

One query is one playlist's retrieved top K; a candidate's label is 1 when it is one of the
playlist's held-out tracks. Queries without a positive teach nothing and are dropped. The
model is LightGBM's own text format, so serving loads it with ``lightgbm.Booster`` and no
torch. LightGBM is imported where it is used, so the LLaRA scoring code that shares this
package runs where LightGBM is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from llarapp.config import require
from llarapp.rerank.features import FEATURES

if TYPE_CHECKING:
    import lightgbm as lgb

MODEL_FILE = "lambdamart.txt"


@dataclass
class LambdaMartParams:
    """The defaults of eval-llara's ``lambdamart_*`` settings."""

    trees: int = 200
    leaves: int = 7
    learning_rate: float = 0.05
    min_child_samples: int = 50
    seed: int = 0

    def validate(self) -> None:
        require(self.trees >= 1 and self.leaves >= 2, "lambdamart needs trees >= 1 and "
                "leaves >= 2")
        require(self.learning_rate > 0, "lambdamart learning_rate must be > 0")


class LambdaMart:
    def __init__(self, booster: lgb.Booster):
        self.booster = booster

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, params: LambdaMartParams
            ) -> LambdaMart:
        """``features`` (queries, K, F), ``labels`` (queries, K) in {0, 1}."""
        keep = labels.any(axis=1)
        require(keep.any(), "no training playlist has a held-out track among its retrieved "
                "candidates; LambdaMART needs more validation playlists or a larger K")
        import lightgbm as lgb

        x, y = features[keep], labels[keep]
        k = x.shape[1]
        dataset = lgb.Dataset(x.reshape(-1, x.shape[2]), y.reshape(-1).astype(np.float32),
                              group=np.full(len(x), k), feature_name=list(FEATURES),
                              free_raw_data=True)
        config = {"objective": "lambdarank", "num_leaves": params.leaves,
                  "learning_rate": params.learning_rate,
                  "min_child_samples": params.min_child_samples, "seed": params.seed,
                  "deterministic": True, "force_row_wise": True, "verbosity": -1,
                  "lambdarank_truncation_level": k}
        return cls(lgb.train(config, dataset, num_boost_round=params.trees))

    def score(self, features: np.ndarray) -> np.ndarray:
        """(queries, K) scores; higher ranks first."""
        flat = features.reshape(-1, features.shape[-1])
        return self.booster.predict(flat, num_threads=1).reshape(features.shape[:2])

    def save(self, folder: Path) -> Path:
        path = folder / MODEL_FILE
        self.booster.save_model(str(path))
        return path

    @classmethod
    def load(cls, folder: Path) -> LambdaMart:
        import lightgbm as lgb

        path = folder / MODEL_FILE
        require(path.is_file(), f"{path} is missing; re-run eval-llara to train LambdaMART")
        booster = lgb.Booster(model_file=str(path))
        require(booster.feature_name() == list(FEATURES),
                f"{path} was trained on other features ({booster.feature_name()}); re-run "
                "eval-llara with this version")
        return cls(booster)
