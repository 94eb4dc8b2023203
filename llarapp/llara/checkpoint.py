"""Loading a trained ``llara`` artifact back into a ranker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llarapp.data.dataset import StageArtifact
from llarapp.llara.backbone import Backbone, load_pretrained, load_tokenizer
from llarapp.llara.config import LlaraConfig, num_features
from llarapp.llara.lora import load_adapter
from llarapp.llara.model import LlaraRanker


@dataclass
class LlaraArtifact(StageArtifact):
    KIND: ClassVar[str] = "llara"

    @property
    def config(self) -> LlaraConfig:
        return LlaraConfig.from_dict(self.manifest["config"])

    def ranker(self) -> LlaraRanker:
        """The trained ranker on the CPU, in eval mode, adapter attached (not merged)."""
        tokenizer = load_tokenizer(self.folder / "backbone")
        backbone = Backbone(load_pretrained(self.folder / "backbone"), tokenizer,
                            self.manifest["backbone"])
        if (self.folder / "adapter").is_dir():
            load_adapter(backbone, self.folder / "adapter")
        saved = torch.load(self.folder / "projector.pt", map_location="cpu", weights_only=True)
        ranker = LlaraRanker(backbone, int(self.manifest["graph_dim"]),
                             self.config.projector_hidden, float(saved["graph_scale"]),
                             self.config.slot_context,
                             num_features(self.config), self.config.label_pointer)
        ranker.projector.load_state_dict(saved["state"])
        if ranker.feature_head is not None:
            ranker.feature_head.load_state_dict(saved["feature_head"])
        ranker.aux_head.load_state_dict(saved["aux_head"])
        if ranker.pointer is not None:
            ranker.pointer.load_state_dict(saved["pointer"])
        return ranker.eval()
