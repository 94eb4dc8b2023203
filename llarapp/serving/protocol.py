"""The wire formats: V1 JSON predictions, and the V2 (Open Inference Protocol) tensors.

V2 request, one playlist per request:

    track_uris     BYTES  [n]   seed track URIs (optional)
    playlist_name  BYTES  [1]   (optional)
    k              INT32  [1]   (optional, default 10)
    exclude_seen   BOOL   [1]   (optional, default true)

V2 response: ``track_uris``, ``track_names``, ``artist_names``, ``reasons`` (BYTES [k]),
``scores`` (FP32 [k]), ``cold_start`` (BYTES [1]) and ``warnings`` (BYTES [w]); the
bundle's model version is the response's ``model_version``.
"""

from __future__ import annotations

import uuid
from typing import Any

from kserve import InferOutput, InferRequest, InferResponse
from llarapp.errors import InvalidRequestError
from llarapp.serving.engine import Response
from llarapp.serving.schema import Instance, parse_instance

V2_INPUTS = {"track_uris": ("BYTES",), "playlist_name": ("BYTES",),
             "k": ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32"),
             "exclude_seen": ("BOOL",)}
LIST_INPUTS = ("track_uris",)


def v1_prediction(response: Response) -> dict[str, Any]:
    return {"recommendations": [{"track_uri": r.track_uri, "track_name": r.track_name,
                                 "artist_name": r.artist_name, "score": r.score,
                                 "reason": r.reason} for r in response.recommendations],
            "model_version": response.model_version, "cold_start": response.cold_start,
            "warnings": response.warnings}


def _values(tensor, field: str) -> list[Any]:
    try:
        values = tensor.as_numpy().ravel().tolist()
    except Exception as exc:  # malformed data for its shape or datatype
        raise InvalidRequestError(f"cannot be read as {tensor.datatype} with shape "
                                  f"{tensor.shape}: {exc}", field=field) from None
    if tensor.datatype != "BYTES":
        return values
    try:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
    except UnicodeDecodeError:
        raise InvalidRequestError("is not UTF-8 text", field=field) from None


def v2_instance(request: InferRequest) -> Instance:
    fields: dict[str, Any] = {}
    for tensor in request.inputs:
        field = f"inputs.{tensor.name}"
        if tensor.name not in V2_INPUTS:
            raise InvalidRequestError(f"unknown input; the inputs are {', '.join(V2_INPUTS)}",
                                      field=field)
        if tensor.name in fields:
            raise InvalidRequestError("given twice", field=field)
        if tensor.datatype not in V2_INPUTS[tensor.name]:
            raise InvalidRequestError(f"datatype must be {' or '.join(V2_INPUTS[tensor.name])}"
                                      f", got {tensor.datatype}", field=f"{field}.datatype")
        values = _values(tensor, field)
        if tensor.name in LIST_INPUTS:
            fields[tensor.name] = values
        elif len(values) != 1:
            raise InvalidRequestError(f"must hold exactly one value, got {len(values)}",
                                      field=field)
        else:
            fields[tensor.name] = values[0]
    return parse_instance(fields, "inputs")


def v2_response(request: InferRequest, model_name: str, response: Response) -> InferResponse:
    recs = response.recommendations

    def text(name: str, values: list[str]) -> InferOutput:
        return InferOutput(name, [len(values)], "BYTES", data=values)

    outputs = [text("track_uris", [r.track_uri for r in recs]),
               text("track_names", [r.track_name for r in recs]),
               text("artist_names", [r.artist_name for r in recs]),
               InferOutput("scores", [len(recs)], "FP32", data=[r.score for r in recs]),
               text("reasons", [r.reason for r in recs]),
               text("cold_start", [response.cold_start]),
               text("warnings", list(response.warnings))]
    # kserve 0.21 resets the connection when the id is None, so always set one
    return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=model_name,
                         infer_outputs=outputs, model_version=response.model_version)
