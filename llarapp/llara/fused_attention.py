"""Rotary causal self-attention as one onnxruntime operator, for the exported ranker.

Traced as transformers writes it, a Llama layer's attention becomes about twenty ONNX nodes
per layer: rotary embedding (Slice, Neg, Concat, Mul, Add on queries and keys), the
padding-and-causal mask (Where, Expand), the key-value repeat, two MatMuls and a Softmax,
and the transposes between them. onnxruntime has all of it as one contrib operator,
``com.microsoft::GroupQueryAttention`` (grouped keys and values, rotary from cos/sin
tables, causal), so the exported graph uses that instead:

1. ``rotary_tables(body)``: cos and sin for every position the body supports, from the
   body's own rotary module (so rope scaling is whatever the checkpoint says), half width.
2. ``CausalAttention.apply(q, k, v, cos, sin, heads, kv_heads, scale)`` takes the
   projections in (B, T, heads·dim) and returns the attended values in the same layout.
   In torch it computes rotary, the key-value repeat and causal SDPA; traced for ONNX it
   is the one operator.

It is exact only where the mask is causal alone: prompts are right-padded, so a real token
at p attends to keys 0..p, all real, and padded rows are never read. The export's parity
check and ``tests/test_readout.py`` compare against the full body with its padding mask.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.onnx import symbolic_helper


def rotary_tables(body: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (max positions, head dim / 2): the halves Llama's rotary repeats."""
    positions = torch.arange(body.config.max_position_embeddings).unsqueeze(0)
    probe = torch.zeros(1, dtype=torch.float32)
    cos, sin = body.rotary_emb(probe, position_ids=positions)
    half = cos.shape[-1] // 2
    return cos[0, :, :half].contiguous(), sin[0, :, :half].contiguous()


class CausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                cos: torch.Tensor, sin: torch.Tensor, heads: int, kv_heads: int,
                scale: float) -> torch.Tensor:
        batch, length, width = query.shape
        dim = width // heads

        def split(x: torch.Tensor, n: int) -> torch.Tensor:
            return x.view(batch, length, n, dim).transpose(1, 2)

        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

        cos, sin = (torch.cat([x[:length], x[:length]], dim=-1).unsqueeze(0) for x in (cos, sin))
        q, k = apply_rotary_pos_emb(split(query, heads), split(key, kv_heads), cos, sin)
        groups = heads // kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(split(value, kv_heads), groups)
        out = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        return out.transpose(1, 2).reshape(batch, length, width)

    @staticmethod
    def symbolic(g, query, key, value, cos, sin, heads, kv_heads, scale):
        shape = g.op("Shape", query)
        batch = g.op("Gather", shape, g.op("Constant", value_t=torch.tensor([0])), axis_i=0)
        length = g.op("Gather", shape, g.op("Constant", value_t=torch.tensor(1)), axis_i=0)
        total = g.op("Cast", length, to_i=6)  # int32 scalar: the keys every query may see
        last = g.op("Sub", total, g.op("Constant", value_t=torch.tensor(1, dtype=torch.int32)))
        seqlens = g.op("Expand", last, batch)  # (B,) int32: a prompt, no past
        none = symbolic_helper._optional_input_placeholder_tensor(g)
        out, _, _ = g.op("com.microsoft::GroupQueryAttention", query, key, value, none, none,
                         seqlens, total, cos, sin, num_heads_i=heads, kv_num_heads_i=kv_heads,
                         do_rotary_i=1, scale_f=scale, outputs=3)
        return out


def causal_self_attention(attention: nn.Module, normed: torch.Tensor, cos: torch.Tensor,
                          sin: torch.Tensor) -> torch.Tensor:
    """A Llama attention module's output (before ``o_proj``) on ``normed`` (B, T, d)."""
    config = attention.config
    return CausalAttention.apply(attention.q_proj(normed), attention.k_proj(normed),
                                 attention.v_proj(normed), cos, sin,
                                 config.num_attention_heads, config.num_key_value_heads,
                                 float(attention.scaling))
