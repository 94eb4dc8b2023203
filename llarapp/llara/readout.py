"""Decoder hidden states at a few positions, for the cost of a little more than L-1 layers.

The ranker reads the final hidden state at K+1 of a prompt's ~100 positions (the K labels
and the answer). Every layer but the last must still run on all positions, since later
positions attend to their keys and values; the last layer's output is needed only at the
read-out positions. So, for the Llama family (Llama, SmolLM2, Mistral, Qwen2):

1. Run layers 0..L-2 on every position, as ``LlamaModel.forward`` does (transformers'
   causal mask and rotary embeddings).
2. In the last layer, project keys and values for every position, but queries only at the
   read-out positions; attend causally (a query at p sees keys 0..p, all real tokens, as
   prompts are right-padded); then the output projection, MLP and final norm on those
   rows alone.

This is exact (the same arithmetic on the rows that are kept) and saves about 80% of the
last layer: 17% of the scratch backbone's four. Other architectures run the whole body
and gather the rows. With ``fused``, layers 0..L-2 take their attention from
:mod:`llarapp.llara.fused_attention` (one onnxruntime operator per layer, causal only).
"""

from __future__ import annotations

import torch
from torch import nn

from llarapp.llara.fused_attention import causal_self_attention, rotary_tables

LLAMA_FAMILY = ("llama", "mistral", "qwen2")
FIXED_ROPE = ("default", "linear", "llama3")  # tables that do not depend on the length


def take(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rows ``positions`` (B, P) of ``x`` (B, T, d); gather keeps the batch axis dynamic
    in an ONNX trace."""
    return x.gather(1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def reads_rows_only(body: nn.Module) -> bool:
    """Whether :func:`hidden_at` can skip the last layer's other rows for this body."""
    attention = body.layers[-1].self_attn if hasattr(body, "layers") else None
    return (getattr(body.config, "model_type", None) in LLAMA_FAMILY
            and not hasattr(attention, "q_norm")  # Qwen3-style query norms differ
            and hasattr(body, "rotary_emb"))


def fuses_attention(body: nn.Module) -> bool:
    """Whether :func:`hidden_at` can run this body's attention as the fused operator."""
    config = body.config
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return (reads_rows_only(body) and rope in FIXED_ROPE and head_dim % 8 == 0  # ORT's kernel
            and not getattr(config, "sliding_window", None))


def hidden_at(body: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor,
              positions: torch.Tensor, fused: bool = False) -> torch.Tensor:
    """The body's last hidden state (after its final norm) at ``positions`` (B, P):
    (B, P, d), equal to ``take(body(inputs_embeds=embeds, ...).last_hidden_state, ...)``
    for right-padded prompts. ``fused`` asks for :mod:`llarapp.llara.fused_attention`
    where the body allows it."""
    if not reads_rows_only(body):
        hidden = body(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        return take(hidden, positions)
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

    length = embeds.shape[1]
    position_ids = torch.arange(length, device=embeds.device).unsqueeze(0)
    cos, sin = body.rotary_emb(embeds, position_ids=position_ids)
    hidden = embeds
    if fused and fuses_attention(body):
        tables = rotary_tables(body)
        for layer in body.layers[:-1]:
            attention = layer.self_attn
            attended = causal_self_attention(attention, layer.input_layernorm(hidden), *tables)
            hidden = hidden + attention.o_proj(attended)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    else:
        from transformers.masking_utils import create_causal_mask

        mask = create_causal_mask(config=body.config, inputs_embeds=embeds,
                                  attention_mask=attention_mask, past_key_values=None,
                                  position_ids=position_ids)
        for layer in body.layers[:-1]:
            hidden = layer(hidden, attention_mask=mask, position_ids=position_ids,
                           position_embeddings=(cos, sin))

    layer = body.layers[-1]
    attention = layer.self_attn
    normed = layer.input_layernorm(hidden)
    batch, rows = positions.shape

    def heads(x: torch.Tensor) -> torch.Tensor:  # (B, n, heads·dim) → (B, heads, n, dim)
        return x.view(batch, x.shape[1], -1, attention.head_dim).transpose(1, 2)

    query = heads(attention.q_proj(take(normed, positions)))
    key, value = heads(attention.k_proj(normed)), heads(attention.v_proj(normed))
    cos_rows, sin_rows = (take(x.expand(batch, -1, -1), positions) for x in (cos, sin))
    query = apply_rotary_pos_emb(query, query, cos_rows, sin_rows)[0]
    key = apply_rotary_pos_emb(key, key, cos, sin)[1]
    groups = attention.num_key_value_groups
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    causal = torch.arange(length, device=embeds.device) <= positions.unsqueeze(-1)
    attended = nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=causal.unsqueeze(1), scale=attention.scaling)
    attended = attended.transpose(1, 2).reshape(batch, rows, -1)
    hidden = take(hidden, positions) + attention.o_proj(attended)
    hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    return body.norm(hidden)
