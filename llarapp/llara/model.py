"""The LLaRA ranker, readable top to bottom.

1. Embed the prompt's tokens with the backbone's input embeddings.
2. Overwrite the slot positions, and nothing else: hybrid rows get SR2LLM(graph vector),
   text-only rows get the ``[PH]`` placeholder's embedding.
3. Run the decoder body once and take the hidden state at the answer position.
4. Score the K candidates by the LM-head logits of their label tokens (A), (B), …

Ranking all K in one forward pass needs no generation, so every output is a valid ranking.
"""

from __future__ import annotations

import torch
from torch import nn

from llarapp.llara.backbone import Backbone
from llarapp.llara.prompts import Batch


class SR2LLM(nn.Module):
    """LLaRA's projector from the recommender's item space to the LLM's token space."""

    def __init__(self, graph_dim: int, hidden: int, token_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(graph_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, token_dim))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.net(vectors)


class LlaraRanker(nn.Module):
    def __init__(self, backbone: Backbone, graph_dim: int, projector_hidden: int,
                 graph_scale: float = 1.0):
        super().__init__()
        self.backbone = backbone
        self.model = backbone.model  # registered so .to(), .train() and state_dict see it
        self.projector = SR2LLM(graph_dim, projector_hidden, backbone.hidden_size)
        # Graph vectors are divided by their catalogue RMS so the projector sees O(1) inputs.
        self.graph_scale = float(graph_scale)

    def merge_adapter(self) -> LlaraRanker:
        """Fold LoRA into the backbone weights (for export); scores stay the same."""
        from llarapp.llara.lora import merge_lora

        self.model = merge_lora(self.backbone)
        return self

    def prompt_embeddings(self, batch: Batch, hybrid: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the slots overwritten; ``hybrid`` is a (B,) bool mask."""
        embeds = self.backbone.embed(batch.input_ids)
        slot_rows = batch.slot_mask.nonzero()[:, 0]
        slot_is_hybrid = hybrid[slot_rows]
        placeholder = self.backbone.embed(
            torch.tensor([self.backbone.ids.placeholder], device=embeds.device))
        slots = placeholder.expand(len(slot_rows), -1)
        if slot_is_hybrid.any():  # text-only batches leave the projector out of the graph
            projected = self.projector(batch.slot_vectors / self.graph_scale).to(embeds.dtype)
            slots = torch.where(slot_is_hybrid[:, None], projected, slots)
        embeds = embeds.clone()
        embeds[batch.slot_mask] = slots
        return embeds

    def forward(self, batch: Batch, hybrid: bool | torch.Tensor = True) -> torch.Tensor:
        """Label logits (B, K): higher means the LM prefers that candidate."""
        if isinstance(hybrid, bool):
            hybrid = torch.full((len(batch.input_ids),), hybrid, device=batch.input_ids.device)
        embeds = self.prompt_embeddings(batch, hybrid)
        hidden = self.backbone.body(inputs_embeds=embeds,
                                    attention_mask=batch.attention_mask).last_hidden_state
        answer = hidden[torch.arange(len(hidden), device=hidden.device), batch.answer_index]
        logits = self.backbone.model.get_output_embeddings()(answer)
        labels = torch.tensor(self.backbone.ids.labels[:batch.candidates.shape[1]],
                              device=logits.device)
        return logits[:, labels].float()
