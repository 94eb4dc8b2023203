"""hidden_at: the last layer run only at the read-out positions gives the full body's
hidden states there, for each architecture it handles (and the fallback for others)."""

import pytest
import torch
from transformers import GPT2Config, GPT2Model, LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model

from llarapp.llara.readout import hidden_at, reads_rows_only, take

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, vocab_size=50)

BODIES = [  # (what, body factory, whether only the read-out rows run in the last layer)
    ("llama, multi-head", lambda: LlamaModel(LlamaConfig(**SMALL, num_attention_heads=4,
                                                         num_key_value_heads=4)), True),
    ("llama, grouped-query (SmolLM2's layout)",
     lambda: LlamaModel(LlamaConfig(**SMALL, num_attention_heads=4, num_key_value_heads=2)),
     True),
    ("qwen2, with q/k/v biases",
     lambda: Qwen2Model(Qwen2Config(**SMALL, num_attention_heads=4, num_key_value_heads=2)),
     True),
    ("gpt-2: the whole body, then the rows",
     lambda: GPT2Model(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=50)), False),
]


@pytest.mark.parametrize("make_body, rows_only", [case[1:] for case in BODIES],
                         ids=[case[0] for case in BODIES])
def test_hidden_at_equals_the_full_body_at_those_positions(make_body, rows_only):
    torch.manual_seed(0)
    body = make_body().eval()
    assert reads_rows_only(body) == rows_only
    lengths = torch.tensor([17, 11, 6])  # right-padded to 17
    mask = (torch.arange(17) < lengths.unsqueeze(1)).long()
    embeds = torch.randn(3, 17, 64)
    positions = torch.stack([torch.randperm(int(n))[:5] for n in lengths])
    positions[:, -1] = lengths - 1  # the answer: each prompt's last real token
    with torch.no_grad():
        full = body(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        rows = hidden_at(body, embeds, mask, positions)
    assert rows.shape == (3, 5, 64)
    assert torch.allclose(rows, take(full, positions), atol=1e-5)
