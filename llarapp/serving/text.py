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
        pad = self.tokenizer.padding or {}
        self.tokenizer.enable_padding(pad_id=pad.get("pad_id", 0),
                                      pad_token=pad.get("pad_token", "[PAD]"))
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.batch_size = batch_size
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = cache_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors; an empty text gives a zero vector.
        Recent texts come from an LRU cache (playlist titles repeat: "country", "chill")."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        rows = []
        for i, text in enumerate(texts):
            if text in self.cache:
                out[i] = self.cache[text]
                self.cache.move_to_end(text)
            elif text and text.strip():
                rows.append(i)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            encoded = self.tokenizer.encode_batch([texts[i] for i in chunk])
            feeds = {"input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                     "attention_mask": np.array([e.attention_mask for e in encoded],
                                                dtype=np.int64)}
            out[chunk] = self.session.run(None, feeds)[0]
        for i in rows:
            self.cache[texts[i]] = out[i]
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return out
