"""Hybrid and text-only prompts as token ids plus the positions of their slots; torch-free,
so the serving engine builds exactly the prompts training saw.

Layout (one line here, one sequence in the model)::

    playlist: <title> [USR] history: <item> [HIS] <item> [HIS] … candidates:
    <item> [CAN] (A) <item> [CAN] (B) … answer:

``<item>`` is the first ``item_tokens`` wordpieces of "track by artist". Each ``[HIS]``
/``[CAN]`` slot belongs to the item before it, ``[USR]`` (optional) to the playlist.
A label follows its candidate's slot, so the label position sees the whole candidate
(attention is causal) and the answer position can point back at it.
The model overwrites slot embeddings: with the projected graph vector in the hybrid form,
with the ``[PH]`` placeholder's embedding in the text-only form. The token ids are the
same for both forms, so one packed batch serves either. The answer is read at the last
position, from the logits of the K label tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from llarapp.llara.tokens import SpecialIds, TokenEncoder
from llarapp.rerank.features import FEATURES

PLAYLIST_SLOT = -1  # slot_items value of the playlist slot


def extra_item(j: int) -> int:
    """The history id of an example's ``j``-th extra item (one outside the catalogue); its
    own inverse, so ``extra_item(history_id)`` gives ``j`` back."""
    return -2 - j


@dataclass
class Example:
    """One ranking question: ``label`` is the index of the true item in ``candidates``
    (-1 when unknown, e.g. reranking retrieval lists); ``positives`` (K,) marks every true
    item when there are several (a retrieved list with several held-out tracks), and
    defaults to ``label`` alone.

    ``history`` may name tracks the catalogue lacks (serving's unknown tracks with
    metadata) as ``extra_item(j)``: their text is ``extra_texts[j]`` and their graph vector
    ``extra_vectors[j]``."""

    title: str
    history: np.ndarray
    candidates: np.ndarray
    label: int
    playlist_vector: np.ndarray
    extra_texts: Sequence[str] = ()
    extra_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    positives: np.ndarray | None = None
    features: np.ndarray | None = None  # (K, len(FEATURES)): the candidates' place in a
    # retrieved list (llarapp.rerank.features); None (zeros) for other candidate sets

    def positive_mask(self) -> np.ndarray:
        if self.positives is not None:
            return np.asarray(self.positives, bool)
        mask = np.zeros(len(self.candidates), bool)
        if self.label >= 0:
            mask[self.label] = True
        return mask


@dataclass
class Prompt:
    input_ids: list[int]
    slot_positions: list[int]
    slot_items: list[int]  # item index per slot, PLAYLIST_SLOT for the playlist slot
    label_positions: list[int]


@dataclass
class Packed:
    """Prompts right-padded into arrays: what :class:`~llarapp.llara.prompts.Batch` and the
    ONNX ranker's inputs are both made of."""

    input_ids: np.ndarray  # (B, T) int64
    attention_mask: np.ndarray  # (B, T) int64
    slot_mask: np.ndarray  # (B, T) bool
    slot_vectors: np.ndarray  # (number of slots, graph dim), row-major slot order
    slot_context: np.ndarray  # (number of slots, graph dim): the slot's playlist vector
    answer_index: np.ndarray  # (B,) last real position
    label_positions: np.ndarray  # (B, K)
    labels: np.ndarray  # (B,)
    candidates: np.ndarray  # (B, K)
    playlist_vectors: np.ndarray  # (B, graph dim)
    positives: np.ndarray  # (B, K) bool
    candidate_features: np.ndarray  # (B, K, len(FEATURES)) float32, zeros where unknown

    def onnx_inputs(self) -> dict[str, np.ndarray]:
        """The exported ranker's feeds; slot vectors are dense (B, T, graph dim)."""
        dense = np.zeros((*self.input_ids.shape, self.slot_vectors.shape[1]), np.float32)
        dense[self.slot_mask] = self.slot_vectors
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "slot_vectors": dense, "playlist_vector": self.playlist_vectors,
                "label_positions": self.label_positions, "answer_index": self.answer_index,
                "candidate_features": self.candidate_features}


def candidate_rows(example: Example) -> np.ndarray:
    """The example's candidate features, or zeros (K, len(FEATURES))."""
    if example.features is None:
        return np.zeros((len(example.candidates), len(FEATURES)), np.float32)
    return np.asarray(example.features, np.float32)


def track_by_artist(tracks) -> list[str]:
    """The item text of the prompts, "track by artist", per row of a tracks table."""
    return (tracks["track_name"].fillna("").str.strip() + " by "
            + tracks["artist_name"].fillna("").str.strip()).tolist()


class ItemTokens:
    """Wordpieces of "track by artist" per item, truncated, tokenized once on first use."""

    def __init__(self, encoder: TokenEncoder, texts: Sequence[str], max_tokens: int):
        self.encoder = encoder
        self.texts = texts
        self.max_tokens = max_tokens
        self.cache: dict[int, list[int]] = {}

    def __call__(self, items: Sequence[int]) -> list[list[int]]:
        # membership per item: ``set - dict.keys()`` walks the whole cache, which grows to
        # the catalogue on a server (11% of its CPU on mpd-popular)
        missing = sorted({i for i in map(int, items) if i not in self.cache})
        if missing:
            encoded = self.encoder([self.texts[i] for i in missing], self.max_tokens)
            self.cache.update(zip(missing, encoded, strict=True))
        return [self.cache[int(i)] for i in items]


class PromptBuilder:
    """``tokenizer``: a transformers fast tokenizer, a `tokenizers` one or a TokenEncoder."""

    def __init__(self, tokenizer, ids: SpecialIds, item_texts: Sequence[str],
                 max_item_tokens: int, playlist_slot: bool = True, max_title_tokens: int = 16):
        self.encoder = TokenEncoder.of(tokenizer)
        self.ids = ids
        self.items = ItemTokens(self.encoder, item_texts, max_item_tokens)
        self.playlist_slot = playlist_slot
        self.max_title_tokens = max_title_tokens
        words = ("playlist:", "history:", "candidates:", "answer:")
        self.words = dict(zip(words, self.encoder(words), strict=True))

    def build(self, example: Example) -> Prompt:
        ids, positions, owners, labels = [], [], [], []

        def slot(token: int, owner: int) -> None:
            positions.append(len(ids))
            owners.append(owner)
            ids.append(token)

        ids += self.words["playlist:"] + self.encoder([example.title or ""],
                                                      self.max_title_tokens)[0]
        if self.playlist_slot:
            slot(self.ids.playlist_slot, PLAYLIST_SLOT)
        ids += self.words["history:"]
        for item, tokens in zip(example.history, self._history_tokens(example), strict=True):
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

    def _history_tokens(self, example: Example) -> list[list[int]]:
        history = [int(i) for i in example.history]
        known = iter(self.items([i for i in history if i >= 0]))
        extra = [i for i in history if i < 0]
        texts = iter(self.encoder([example.extra_texts[extra_item(i)] for i in extra],
                                  self.items.max_tokens) if extra else [])
        return [next(known) if i >= 0 else next(texts) for i in history]

    def pack(self, examples: Sequence[Example], item_vectors: np.ndarray, pad_id: int) -> Packed:
        """Build and right-pad the prompts of ``examples``; slots take ``item_vectors`` rows
        (the playlist slot its example's playlist vector)."""
        prompts = [self.build(e) for e in examples]
        width = max(len(p.input_ids) for p in prompts)
        input_ids = np.full((len(prompts), width), pad_id, dtype=np.int64)
        attention = np.zeros((len(prompts), width), dtype=np.int64)
        slot_mask = np.zeros((len(prompts), width), dtype=bool)
        vectors, context = [], []
        for row, (prompt, example) in enumerate(zip(prompts, examples, strict=True)):
            input_ids[row, :len(prompt.input_ids)] = prompt.input_ids
            attention[row, :len(prompt.input_ids)] = 1
            slot_mask[row, prompt.slot_positions] = True
            owners = np.asarray(prompt.slot_items, dtype=np.int64)
            rows = item_vectors[np.maximum(owners, 0)].astype(np.float32)
            rows[owners == PLAYLIST_SLOT] = example.playlist_vector
            extra = owners < PLAYLIST_SLOT
            if extra.any():
                rows[extra] = example.extra_vectors[extra_item(owners[extra])]
            vectors.append(rows)
            context.append(np.broadcast_to(example.playlist_vector, rows.shape))
        return Packed(input_ids, attention, slot_mask,
                      np.concatenate(vectors).astype(np.float32),
                      np.concatenate(context).astype(np.float32),
                      attention.sum(axis=1) - 1,
                      np.array([p.label_positions for p in prompts], dtype=np.int64),
                      np.array([e.label for e in examples], dtype=np.int64),
                      np.stack([e.candidates for e in examples]).astype(np.int64),
                      np.stack([e.playlist_vector for e in examples]).astype(np.float32),
                      np.stack([e.positive_mask() for e in examples]),
                      np.stack([candidate_rows(e) for e in examples]))
