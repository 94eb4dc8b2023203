"""Hybrid and text-only prompts as token ids plus the positions of their slots.

Layout (one line here, one sequence in the model)::

    playlist: <title> [USR] history: <item> [HIS] <item> [HIS] … candidates:
    <item> [CAN] (A) <item> [CAN] (B) … answer:

``<item>`` is the first ``item_tokens`` wordpieces of "track by artist". Each ``[HIS]``
/``[CAN]`` slot belongs to the item before it, ``[USR]`` (optional) to the playlist.
A label follows its candidate's slot, so the label position sees the whole candidate
(attention is causal) and the answer position can point back at it.
The model overwrites slot embeddings: with the projected graph vector in the hybrid form,
with the ``[PH]`` placeholder's embedding in the text-only form. The token ids are the
same for both forms, so one collated batch serves either. The answer is read at the last
position, from the logits of the K label tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from llarapp.llara.backbone import SpecialIds

PLAYLIST_SLOT = -1  # slot_items value of the playlist slot


@dataclass
class Example:
    """One ranking question: ``label`` is the index of the true item in ``candidates``
    (-1 when unknown, e.g. reranking retrieval lists)."""

    title: str
    history: np.ndarray
    candidates: np.ndarray
    label: int
    playlist_vector: np.ndarray


@dataclass
class Prompt:
    input_ids: list[int]
    slot_positions: list[int]
    slot_items: list[int]  # item index per slot, PLAYLIST_SLOT for the playlist slot
    label_positions: list[int]


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

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in vars(self).values()))


class ItemTokens:
    """Wordpieces of "track by artist" per item, truncated, tokenized once on first use."""

    def __init__(self, tokenizer, texts: Sequence[str], max_tokens: int):
        self.tokenizer = tokenizer
        self.texts = texts
        self.max_tokens = max_tokens
        self.cache: dict[int, list[int]] = {}

    def __call__(self, items: Sequence[int]) -> list[list[int]]:
        missing = sorted({int(i) for i in items} - self.cache.keys())
        if missing:
            # split_special_tokens: a title such as "Intro (A)" must not become a label token
            encoded = self.tokenizer([self.texts[i] for i in missing], add_special_tokens=False,
                                     truncation=True, max_length=self.max_tokens,
                                     split_special_tokens=True)["input_ids"]
            self.cache.update(zip(missing, encoded, strict=True))
        return [self.cache[int(i)] for i in items]


class PromptBuilder:
    def __init__(self, tokenizer, ids: SpecialIds, item_texts: Sequence[str], max_item_tokens: int,
                 playlist_slot: bool = True, max_title_tokens: int = 16):
        self.tokenizer = tokenizer
        self.ids = ids
        self.items = ItemTokens(tokenizer, item_texts, max_item_tokens)
        self.playlist_slot = playlist_slot
        self.max_title_tokens = max_title_tokens
        words = ("playlist:", "history:", "candidates:", "answer:")
        self.words = {w: self._encode(w) for w in words}

    def _encode(self, text: str, limit: int | None = None) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, truncation=limit is not None,
                              max_length=limit, split_special_tokens=True)["input_ids"]

    def build(self, example: Example) -> Prompt:
        ids, positions, owners, labels = [], [], [], []

        def slot(token: int, owner: int) -> None:
            positions.append(len(ids))
            owners.append(owner)
            ids.append(token)

        ids += self.words["playlist:"] + self._encode(example.title or "", self.max_title_tokens)
        if self.playlist_slot:
            slot(self.ids.playlist_slot, PLAYLIST_SLOT)
        ids += self.words["history:"]
        for item, tokens in zip(example.history, self.items(example.history), strict=True):
            ids += tokens
            slot(self.ids.history_slot, int(item))
        ids += self.words["candidates:"]
        for k, (item, tokens) in enumerate(zip(example.candidates,
                                               self.items(example.candidates), strict=True)):
            ids += tokens
            slot(self.ids.candidate_slot, int(item))
            labels.append(len(ids))
            ids.append(self.ids.labels[k])
        ids += self.words["answer:"]
        return Prompt(ids, positions, owners, labels)


class Collator:
    """Examples → a padded :class:`Batch`. Holds no state that changes during training, so
    DataLoader workers may copy it freely (the curriculum lives in the trainer)."""

    def __init__(self, builder: PromptBuilder, item_vectors: np.ndarray, pad_id: int):
        self.builder = builder
        self.item_vectors = item_vectors
        self.pad_id = pad_id

    def __call__(self, examples: list[Example]) -> Batch:
        prompts = [self.builder.build(e) for e in examples]
        width = max(len(p.input_ids) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        slot_mask = torch.zeros((len(prompts), width), dtype=torch.bool)
        vectors, context = [], []
        for row, (prompt, example) in enumerate(zip(prompts, examples, strict=True)):
            input_ids[row, :len(prompt.input_ids)] = torch.tensor(prompt.input_ids)
            attention[row, :len(prompt.input_ids)] = 1
            slot_mask[row, prompt.slot_positions] = True
            owners = np.asarray(prompt.slot_items, dtype=np.int64)
            rows = self.item_vectors[np.maximum(owners, 0)]
            rows[owners == PLAYLIST_SLOT] = example.playlist_vector
            vectors.append(rows)
            context.append(np.broadcast_to(example.playlist_vector, rows.shape))
        return Batch(input_ids, attention, slot_mask,
                     torch.from_numpy(np.concatenate(vectors).astype(np.float32)),
                     torch.from_numpy(np.concatenate(context).astype(np.float32)),
                     attention.sum(dim=1) - 1,
                     torch.tensor([p.label_positions for p in prompts], dtype=torch.long),
                     torch.tensor([e.label for e in examples], dtype=torch.long),
                     torch.from_numpy(np.stack([e.candidates for e in examples]).astype(np.int64)))
