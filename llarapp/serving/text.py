"""Cold-start text through the exported encoder: strings → unit vectors, with `tokenizers`
and onnxruntime only (the ONNX graph pools and normalises)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llarapp.serving.runtime import session


class OnnxTextEncoder:
    def __init__(self, model: str | Path, tokenizer: str | Path, max_length: int,
                 providers: Sequence[str] = ("cpu",), threads: int | None = None,
                 batch_size: int = 128, cache_size: int = 4096):
        from tokenizers import Tokenizer

        self.session = session(model, providers, threads)
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.enable_truncation(max_length)
        self.pad_id = (self.tokenizer.padding or {}).get("pad_id", 0)
        self.tokenizer.no_padding()  # encode pads its batches itself
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.batch_size = batch_size
        self.cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self.cache_size = cache_size

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors; an empty text gives a zero vector.
        ``batch_size`` (default the encoder's): texts per ORT call.
        Recent inputs come from an LRU cache keyed by token ids, so texts the tokenizer
        reads alike ("JAZZ", "jazz") are encoded once; playlist titles repeat."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        pending: dict[tuple[int, ...], list[int]] = {}
        for i, text in enumerate(texts):
            if not (text and text.strip()):
                continue
            key = tuple(self.tokenizer.encode(text).ids)
            if key in self.cache:
                out[i] = self.cache[key]
                self.cache.move_to_end(key)
            else:
                pending.setdefault(key, []).append(i)
        keys, size = list(pending), batch_size or self.batch_size
        for start in range(0, len(keys), size):
            chunk = keys[start:start + size]
            width = max(len(key) for key in chunk)
            ids = np.full((len(chunk), width), self.pad_id, np.int64)
            mask = np.zeros((len(chunk), width), np.int64)
            for row, key in enumerate(chunk):
                ids[row, :len(key)], mask[row, :len(key)] = key, 1
            vectors = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            for key, vector in zip(chunk, vectors, strict=True):
                out[pending[key]] = vector
                self.cache[key] = vector
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return out
