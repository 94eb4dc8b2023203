"""A serving bundle as an MLflow pyfunc model: ``mlflow.pyfunc.load_model(uri).predict``.

1. ``register`` calls :func:`log_bundle_model`: the bundle folder becomes the model's
   artifact ``bundle``, and :data:`MODEL_CODE` builds the model (MLflow's models from
   code), with a signature, an input example and the package's requirements.
2. ``load_context`` loads that bundle (every file's hash checked) into the server's
   :class:`~llarapp.serving.engine.Engine`.
3. ``predict`` takes one playlist per row (``pid``, ``playlist_name``, ``track_uris``),
   validates each with the server's own schema and limits (a bad row is MLflow's
   ``INVALID_PARAMETER_VALUE``, a 400 from ``mlflow models serve``), and returns one row
   per recommendation: ``pid, rank, track_uri, score, reason``.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from llarapp.errors import InvalidRequestError
from llarapp.recommend.batch import COLUMNS
from llarapp.serving.bundle import PYFUNC_ARTIFACT as ARTIFACT
from llarapp.serving.schema import MAX_INSTANCES, Instance, parse_instance

MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
DEFAULT_K = Instance.model_fields["k"].default


def signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("long", "pid", required=False),
                     ColSpec("string", "playlist_name", required=False),
                     ColSpec(Array("string"), "track_uris", required=False)])
    outputs = Schema([ColSpec("long", "pid"), ColSpec("long", "rank"),
                      ColSpec("string", "track_uri"), ColSpec("double", "score"),
                      ColSpec("string", "reason")])
    return ModelSignature(inputs, outputs, ParamSchema([ParamSpec("k", "long", DEFAULT_K)]))


def requirements() -> list[str]:
    """The installed package's own runtime requirements (its extras left out)."""
    return [r for r in importlib.metadata.requires("llarapp") or [] if "extra ==" not in r]


def log_bundle_model(bundle: Any, name: str = "model") -> Any:
    """Log ``bundle`` (a :class:`~llarapp.serving.bundle.Bundle`) as a pyfunc model in the
    active run; return MLflow's ModelInfo."""
    uris = bundle.catalogue["track_uri"].head(2).tolist()
    example = pd.DataFrame({"pid": [0], "playlist_name": ["road trip"], "track_uris": [uris]})
    return mlflow.pyfunc.log_model(name=name, python_model=str(MODEL_CODE),
                                   artifacts={ARTIFACT: str(bundle.folder)},
                                   signature=signature(), input_example=example,
                                   pip_requirements=requirements())


def row_fields(row: dict[str, Any]) -> dict[str, Any]:
    """One frame row as the server's instance fields (missing values dropped)."""
    fields: dict[str, Any] = {}
    name = row.get("playlist_name")
    if isinstance(name, str):
        fields["playlist_name"] = name
    uris = row.get("track_uris")
    if isinstance(uris, list | tuple | np.ndarray):
        fields["track_uris"] = [str(u) for u in uris]
    return fields


class BundleRecommender(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from llarapp.serving.bundle import Bundle
        from llarapp.serving.engine import Engine

        self.engine = Engine(Bundle.load(context.artifacts[ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        k = int((params or {}).get("k", DEFAULT_K))
        frame = pd.DataFrame(model_input)
        records = frame.to_dict("records")
        try:
            requests = [parse_instance({**row_fields(row), "k": k}, f"rows.{i}").to_request()
                        for i, row in enumerate(records)]
        except InvalidRequestError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        pids = (frame["pid"].fillna(-1).astype(np.int64).tolist() if "pid" in frame
                else list(range(len(records))))
        rows = []
        for start in range(0, len(requests), MAX_INSTANCES):
            responses = self.engine.recommend(requests[start:start + MAX_INSTANCES])
            for pid, response in zip(pids[start:], responses, strict=False):
                rows += [(pid, rank, r.track_uri, r.score, r.reason)
                         for rank, r in enumerate(response.recommendations, start=1)]
        return pd.DataFrame(rows, columns=COLUMNS)
