"""The merged LLaRA ranker as one ONNX graph.

Inputs (B: batch, T: prompt length, G: graph dim, K: candidates; B and T are dynamic):

* ``input_ids`` (B, T) int64 and ``attention_mask`` (B, T) int64, right-padded;
* ``slot_vectors`` (B, T, G) float32: each slot position's raw graph vector, zeros elsewhere;
* ``playlist_vector`` (B, G) float32: the playlist's graph query (the slot context);
* ``label_positions`` (B, K) int64 and ``answer_index`` (B,) int64;
* ``candidate_features`` (B, K, F) float32: :mod:`llarapp.rerank.features` (ignored by a
  ranker trained without them).

Output ``scores`` (B, K): the label logits, as :meth:`LlaraRanker.forward` in hybrid mode,
with the last decoder layer run only at the K+1 read-out positions
(:mod:`llarapp.llara.readout`) and, with ``fused``, the others' attention as one
onnxruntime operator each (:mod:`llarapp.llara.fused_attention`).
Slots are recognised inside the graph by their token ids, so callers pass no mask.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from llarapp.llara.model import LlaraRanker
from llarapp.llara.readout import hidden_at

INPUTS = ("input_ids", "attention_mask", "slot_vectors", "playlist_vector", "label_positions",
          "answer_index", "candidate_features")
OUTPUT = "scores"
DYNAMIC_AXES = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                "slot_vectors": {0: "batch", 1: "tokens"}, "playlist_vector": {0: "batch"},
                "label_positions": {0: "batch"}, "answer_index": {0: "batch"},
                "candidate_features": {0: "batch"}, OUTPUT: {0: "batch"}}


class ExportableRanker(nn.Module):
    """Hybrid-mode :class:`LlaraRanker` with LoRA merged, taking plain tensors."""

    def __init__(self, ranker: LlaraRanker, fused: bool = False):
        super().__init__()
        self.ranker = ranker.merge_adapter().eval()
        self.fused = fused
        self.register_buffer("slot_ids", torch.tensor(ranker.backbone.ids.slots),
                             persistent=False)
        self.eval()  # export restores this module's mode onto the ranker

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                slot_vectors: torch.Tensor, playlist_vector: torch.Tensor,
                label_positions: torch.Tensor, answer_index: torch.Tensor,
                candidate_features: torch.Tensor) -> torch.Tensor:
        ranker = self.ranker
        is_slot = (input_ids.unsqueeze(-1) == self.slot_ids).any(dim=-1, keepdim=True)
        projected = ranker.project(slot_vectors, playlist_vector.unsqueeze(1))
        embeds = torch.where(is_slot, projected, ranker.backbone.embed(input_ids))
        # the last layer runs only where scores are read: the K labels, then the answer
        read = torch.cat([label_positions, answer_index.unsqueeze(1)], dim=1)
        hidden = hidden_at(ranker.backbone.body, embeds, attention_mask, read, self.fused)
        k = label_positions.shape[1]
        scores = ranker.label_logits(hidden[:, k], hidden[:, :k])
        return scores + ranker.residual(candidate_features)


@contextlib.contextmanager
def quiet_trace() -> Iterator[None]:
    """The tracer warns about every Python-side constant in transformers' code; the ORT vs
    torch parity check at other batch sizes and lengths is what guards the export."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Exporting aten::index operator")
        yield


def torch_scores(model: ExportableRanker, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(*(torch.from_numpy(feeds[name]) for name in INPUTS)).numpy()


def export_ranker(model: ExportableRanker, sample: dict[str, np.ndarray], path: Path,
                  opset: int) -> Path:
    """Trace with ``sample`` (any batch and length) and write a single-file ONNX model."""
    args = tuple(torch.from_numpy(sample[name]) for name in INPUTS)
    with torch.no_grad(), quiet_trace():
        torch.onnx.export(model, args, str(path), input_names=list(INPUTS),
                          output_names=[OUTPUT], dynamic_axes=DYNAMIC_AXES,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    return path
