"""LoRA through peft: attach, save, load, and merge for export."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from llarapp.llara.backbone import Backbone
from llarapp.llara.config import LlaraConfig

ALL_LINEAR = "all-linear"  # peft: every linear layer except the LM head


def lora_config(cfg: LlaraConfig, special_ids: list[int]):
    from peft import LoraConfig

    targets = ALL_LINEAR if cfg.lora_targets == [ALL_LINEAR] else list(cfg.lora_targets)
    # The new special tokens (slots, placeholder, labels) have no pretrained embedding, so
    # their rows train alongside the adapter; the rest of the vocabulary stays frozen.
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, trainable_token_indices=special_ids,
                      task_type="CAUSAL_LM")


def attach_lora(backbone: Backbone, cfg: LlaraConfig) -> nn.Module:
    """Wrap the backbone in a peft model; its modules are adapted in place."""
    from peft import get_peft_model

    backbone.peft = get_peft_model(backbone.model, lora_config(cfg, backbone.ids.all))
    return backbone.peft


def load_adapter(backbone: Backbone, folder: Path) -> nn.Module:
    from peft import PeftModel

    backbone.peft = PeftModel.from_pretrained(backbone.model, folder, is_trainable=False)
    return backbone.peft


def merge_lora(backbone: Backbone) -> nn.Module:
    """Fold the adapter into the weights (for export); the backbone becomes plain again."""
    if getattr(backbone, "peft", None) is not None:
        backbone.model = backbone.peft.merge_and_unload()
        backbone.peft = None
    return backbone.model
