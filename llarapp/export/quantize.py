"""QInt8 variants of the exported ranker with onnxruntime.quantization.

Every variant starts from the pre-processed model (symbolic shape inference and ORT
graph optimisation, ``quant_pre_process``):

* ``dynamic``: int8 weights, per tensor; activations quantized at run time;
* ``per_channel``: the same with one scale per output channel;
* ``static``: weights per channel and activations with fixed scales from a calibration
  reader over validation prompts (QDQ).

The LLaRA head (SR2LLM projector, label pointer, label logits; about 3% of the weights)
stays fp32 by default: the pointer's sharp softmax (gain 10) amplified int8 error about
six-fold in the measurements (max logit error 1.2 → 0.2). The backbone, embedding
included, is quantized.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

VARIANTS = ("dynamic", "per_channel", "static")
HEAD_SCOPES = ("/projector/", "/pointer/", "/feature_head/")
_QUANTIZABLE = ("MatMul", "Gemm", "Gather")


def preprocess(source: Path, target: Path, symbolic_shapes: bool = True) -> Path:
    """Shape inference and ORT optimisation before quantization. Symbolic shape inference
    is skipped when it cannot follow a graph (BERT's position-id slice); onnxruntime then
    leaves a debug model in the working folder, so this runs inside ``target``'s folder."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with contextlib.chdir(target.parent):
        try:
            quant_pre_process(str(source), str(target), skip_symbolic_shape=not symbolic_shapes)
        except Exception as exc:  # onnxruntime raises a bare Exception here
            if "symbolic shape inference" not in str(exc):
                raise
            quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    return target


def head_nodes(model_path: Path) -> list[str]:
    """The nodes outside the backbone: the LLaRA head, kept in fp32."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in _QUANTIZABLE
            and (n.name.count("/") <= 1 or any(s in n.name for s in HEAD_SCOPES))]


def graph_inputs(path: Path) -> set[str]:
    import onnx

    return {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}


class FeedReader(CalibrationDataReader):
    """A CalibrationDataReader over batches of ranker feeds, limited to ``inputs`` (the
    graph's own: the exporter drops inputs it never reads)."""

    def __init__(self, batches: list[dict[str, np.ndarray]], inputs: set[str]):
        self.batches: Iterator[dict[str, np.ndarray]] = (
            {k: v for k, v in feeds.items() if k in inputs} for feeds in batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def quantize(variant: str, source: Path, target: Path, calibration: list[dict[str, np.ndarray]],
             keep_head_fp32: bool = True) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    exclude = head_nodes(source) if keep_head_fp32 else []
    if variant in ("dynamic", "per_channel"):
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         per_channel=variant == "per_channel", nodes_to_exclude=exclude)
    elif variant == "static":
        quantize_static(str(source), str(target), FeedReader(calibration, graph_inputs(source)),
                        quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QInt8, nodes_to_exclude=exclude,
                        op_types_to_quantize=["MatMul", "Gather"],
                        extra_options={"ActivationSymmetric": True})
    else:
        raise ValueError(f"unknown quantization variant {variant!r}; choose from {VARIANTS}")
    return target
