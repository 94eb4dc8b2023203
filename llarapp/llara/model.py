"""The LLaRA ranker, readable top to bottom.

1. Embed the prompt's tokens with the backbone's input embeddings.
2. Overwrite the slot positions, and nothing else: hybrid rows get SR2LLM(graph vector),
   text-only rows get the ``[PH]`` placeholder's embedding. With ``slot_context`` the
   projector also sees the item vector times the playlist's graph query, so the
   behaviour score of an item for this playlist is linear in its token.
3. Run the decoder body once and take the hidden state at the answer position.
4. The label pointer (one attention head from the answer state to the K label states)
   adds the attended labels' LM-head rows to the answer state (``label_pointer``).
5. Score the K candidates by the LM-head logits of their label tokens (A), (B), …
6. With ``candidate_features``, add a small MLP of each candidate's retrieval features
   (rank, hybrid / graph / text scores, popularity, artist and co-occurrence overlap:
   :mod:`llarapp.rerank.features`): the LM then learns a correction to what the retriever
   already knows, rather than having to rediscover it from tokens.

Why the pointer: choosing "(C)" means the answer position must attend to the most
relevant candidate and copy its label, a copy (induction) circuit that pretrained LLMs
carry but a small scratch model does not form in a CPU-sized budget: with the plain head
the answer loss stayed at chance (ln 20) for 500 steps while the label positions had
already learned relevance. The pointer supplies that circuit; the logits are still the
LM head's logits of the label tokens at the answer position. Pretrained SmolLM2-135M did
not copy the new label tokens either: without the pointer it stayed at chance.

Training may add an auxiliary listwise loss on a linear read-out of each candidate's
label position (``aux_head``). It gives every candidate a gradient, which breaks the long
plateau before the answer position learns to point; scoring never uses it.

Ranking all K in one forward pass needs no generation, so every output is a valid ranking.
"""

from __future__ import annotations

import torch
from torch import nn

from llarapp.llara.backbone import Backbone
from llarapp.llara.prompts import Batch
from llarapp.llara.readout import take
from llarapp.rerank.features import FEATURES


class SR2LLM(nn.Module):
    """LLaRA's projector from the recommender's item space to the LLM's token space."""

    def __init__(self, graph_dim: int, hidden: int, token_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(graph_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, token_dim))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.net(vectors)


class LabelPointer(nn.Module):
    def __init__(self, hidden: int, head_dim: int = 64):
        super().__init__()
        self.query = nn.Linear(hidden, head_dim)
        self.key = nn.Linear(hidden, head_dim)
        # Adam moves a parameter ~lr per step, so start the gain where a sharp choice needs it.
        self.gain = nn.Parameter(torch.tensor(10.0))

    def forward(self, answer: torch.Tensor, labels: torch.Tensor, label_rows: torch.Tensor
                ) -> torch.Tensor:
        """answer (B, d), labels (B, K, d) hidden states, label_rows (K, d) LM-head rows."""
        weights = torch.einsum("bkh,bh->bk", self.key(labels), self.query(answer))
        weights = torch.softmax(weights / self.query.out_features ** 0.5, dim=1)
        scale = label_rows.norm(dim=1, keepdim=True).pow(2).clamp_min(1e-6)
        return answer + self.gain * weights @ (label_rows / scale)


class FeatureHead(nn.Module):
    """Score residual from candidate features, standardised with fixed training statistics
    (buffers, so they travel in the state dict and into the ONNX graph): a linear term plus
    an MLP. It starts as the retrieval order itself (the linear weight on the standardised
    rank is ``-rank_prior``, the nonlinear part outputs zero), so the LM must earn every deviation
    from the retriever rather than rebuild its order from nothing."""

    def __init__(self, num_features: int, rank_column: int = 0, rank_prior: float = 3.0,
                 hidden: int = 32):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        self.linear = nn.Linear(num_features, 1)
        self.nonlinear = nn.Sequential(nn.Linear(num_features, hidden), nn.GELU(),
                                       nn.Linear(hidden, 1))
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()
            self.linear.weight[0, rank_column] = -rank_prior
            self.nonlinear[-1].weight.zero_()
            self.nonlinear[-1].bias.zero_()

    def fit_scale(self, features: torch.Tensor) -> None:
        """Statistics of training candidates (N, F); constant columns keep std 1."""
        self.mean.copy_(features.mean(dim=0))
        std = features.std(dim=0)
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, K, F) → (B, K)."""
        x = (features - self.mean) / self.std
        return (self.linear(x) + self.nonlinear(x)).squeeze(-1)


class LlaraRanker(nn.Module):
    def __init__(self, backbone: Backbone, graph_dim: int, projector_hidden: int,
                 graph_scale: float = 1.0, slot_context: bool = False,
                 num_features: int = 0, label_pointer: bool = True):
        super().__init__()
        self.backbone = backbone
        self.model = backbone.model  # registered so .to(), .train() and state_dict see it
        self.slot_context = slot_context
        self.projector = SR2LLM(graph_dim * (2 if slot_context else 1), projector_hidden,
                                backbone.hidden_size)
        self.aux_head = nn.Linear(backbone.hidden_size, 1)
        self.pointer = LabelPointer(backbone.hidden_size) if label_pointer else None
        # Graph vectors are divided by their catalogue RMS so the projector sees O(1) inputs.
        self.graph_scale = float(graph_scale)
        self.feature_head = (FeatureHead(num_features, FEATURES.index("retrieval_rank"))
                             if num_features else None)

    def residual(self, features: torch.Tensor) -> torch.Tensor | float:
        """The feature head's (B, K) score residual, or 0 without one."""
        return 0.0 if self.feature_head is None else self.feature_head(features.float())

    def merge_adapter(self) -> LlaraRanker:
        """Fold LoRA into the backbone weights (for export); scores stay the same."""
        from llarapp.llara.lora import merge_lora

        self.model = merge_lora(self.backbone)
        return self

    def project(self, vectors: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """SR2LLM of raw graph vectors (..., G); ``context`` is each slot's playlist vector."""
        vectors = vectors / self.graph_scale
        if self.slot_context:
            vectors = torch.cat([vectors, vectors * context / self.graph_scale], dim=-1)
        return self.projector(vectors)

    def prompt_embeddings(self, batch: Batch, hybrid: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the slots overwritten; ``hybrid`` is a (B,) bool mask."""
        embeds = self.backbone.embed(batch.input_ids)
        slot_rows = batch.slot_mask.nonzero()[:, 0]
        slot_is_hybrid = hybrid[slot_rows]
        placeholder = self.backbone.embed(
            torch.tensor([self.backbone.ids.placeholder], device=embeds.device))
        slots = placeholder.expand(len(slot_rows), -1)
        if slot_is_hybrid.any():  # text-only batches leave the projector out of the graph
            projected = self.project(batch.slot_vectors, batch.slot_context).to(embeds.dtype)
            slots = torch.where(slot_is_hybrid[:, None], projected, slots)
        embeds = embeds.clone()
        embeds[batch.slot_mask] = slots
        return embeds

    def forward(self, batch: Batch, hybrid: bool | torch.Tensor = True,
                aux: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Label logits (B, K): higher means the LM prefers that candidate. With ``aux``
        also the auxiliary read-out at the K label positions (B, K)."""
        if isinstance(hybrid, bool):
            hybrid = torch.full((len(batch.input_ids),), hybrid, device=batch.input_ids.device)
        embeds = self.prompt_embeddings(batch, hybrid)
        hidden = self.backbone.body(inputs_embeds=embeds,
                                    attention_mask=batch.attention_mask).last_hidden_state
        scores, per_label = self.read_scores(hidden, batch.answer_index, batch.label_positions)
        residual = self.residual(batch.candidate_features)
        if not aux:
            return scores + residual
        return scores + residual, self.aux_head(per_label).squeeze(-1).float() + residual

    def read_scores(self, hidden: torch.Tensor, answer_index: torch.Tensor,
                    label_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(label logits (B, K), hidden states at the K label positions (B, K, d))."""
        per_label = take(hidden, label_positions)
        answer = take(hidden, answer_index.unsqueeze(1)).squeeze(1)
        return self.label_logits(answer, per_label), per_label

    def label_logits(self, answer: torch.Tensor, per_label: torch.Tensor) -> torch.Tensor:
        """(B, K) logits of the K label tokens from the answer state (B, d), through the
        label pointer over the label states (B, K, d)."""
        labels = torch.tensor(self.backbone.ids.labels[:per_label.shape[1]],
                              device=answer.device)
        head = self.backbone.model.get_output_embeddings()
        label_rows = head.weight[labels]
        if self.pointer is not None:
            answer = self.pointer(answer, per_label, label_rows)
        # Only the K label rows of the LM head: the same logits as head(answer)[:, labels].
        bias = head.bias[labels] if getattr(head, "bias", None) is not None else None
        return nn.functional.linear(answer, label_rows, bias).float()
