"""Prompts as torch tensors for training; the layout itself is in
:mod:`llarapp.llara.layout` (torch-free, shared with serving)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from llarapp.llara.layout import PLAYLIST_SLOT, Example, Prompt, PromptBuilder

__all__ = ["PLAYLIST_SLOT", "Batch", "Collator", "Example", "Prompt", "PromptBuilder"]


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T), right-padded
    attention_mask: torch.Tensor  # (B, T)
    slot_mask: torch.Tensor  # (B, T) bool
    slot_vectors: torch.Tensor  # (number of slots, graph dim), row-major slot order
    slot_context: torch.Tensor  # (number of slots, graph dim): the slot's playlist vector
    answer_index: torch.Tensor  # (B,) last real position
    label_positions: torch.Tensor  # (B, K) position of each candidate's label token
    labels: torch.Tensor  # (B,)
    candidates: torch.Tensor  # (B, K) item indices
    positives: torch.Tensor  # (B, K) bool: every true candidate (``labels`` is one of them)
    candidate_features: torch.Tensor  # (B, K, F): see llarapp.rerank.features

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in vars(self).values()))


class Collator:
    """Examples → a padded :class:`Batch`. Holds no state that changes during training, so
    DataLoader workers may copy it freely (the curriculum lives in the trainer)."""

    def __init__(self, builder: PromptBuilder, item_vectors: np.ndarray, pad_id: int):
        self.builder = builder
        self.item_vectors = item_vectors
        self.pad_id = pad_id

    def __call__(self, examples: list[Example]) -> Batch:
        packed = self.builder.pack(examples, self.item_vectors, self.pad_id)
        return Batch(*(torch.from_numpy(getattr(packed, name)) for name in (
            "input_ids", "attention_mask", "slot_mask", "slot_vectors", "slot_context",
            "answer_index", "label_positions", "labels", "candidates", "positives",
            "candidate_features")))
