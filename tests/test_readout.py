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


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("make_body, rows_only", [case[1:] for case in BODIES],
                         ids=[case[0] for case in BODIES])
def test_hidden_at_equals_the_full_body_at_those_positions(make_body, rows_only, fused):
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
        rows = hidden_at(body, embeds, mask, positions, fused=fused)
    assert rows.shape == (3, 5, 64)
    assert torch.allclose(rows, take(full, positions), atol=1e-5)


class ReadOut(torch.nn.Module):
    def __init__(self, body, fused: bool):
        super().__init__()
        self.body, self.fused = body, fused

    def forward(self, embeds, mask, positions):
        return hidden_at(self.body, embeds, mask, positions, fused=self.fused)


def right_padded(lengths: list[int], seed: int):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    mask = (torch.arange(int(lengths.max())) < lengths.unsqueeze(1)).long()
    embeds = torch.randn(len(lengths), int(lengths.max()), 64, generator=generator)
    positions = torch.stack([torch.randperm(int(n), generator=generator)[:4] for n in lengths])
    positions[:, -1] = lengths - 1
    return embeds, mask, positions


@pytest.mark.parametrize("fused, operators", [(False, 0), (True, 2)], ids=["unfused", "fused"])
@pytest.mark.parametrize("make_body", [case[1] for case in BODIES[:3]],
                         ids=[case[0] for case in BODIES[:3]])
def test_the_onnx_graph_reads_what_the_full_body_does(tmp_path, make_body, fused, operators):
    """Traced at one batch and length, run by onnxruntime at others: the fused graph holds
    one GroupQueryAttention per layer before the last, and still matches the full body."""
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    body = make_body().eval()
    path = tmp_path / "readout.onnx"
    with torch.no_grad():
        torch.onnx.export(ReadOut(body, fused), right_padded([9, 5], seed=1), str(path),
                          input_names=["embeds", "mask", "positions"], output_names=["rows"],
                          dynamic_axes={"embeds": {0: "b", 1: "t"}, "mask": {0: "b", 1: "t"},
                                        "positions": {0: "b"}, "rows": {0: "b"}},
                          opset_version=17, dynamo=False)
    kinds = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert kinds.count("GroupQueryAttention") == operators
    runner = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for lengths in ([17, 11, 6], [4]):
        embeds, mask, positions = right_padded(lengths, seed=len(lengths))
        with torch.no_grad():
            full = body(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        feeds = {"embeds": embeds.numpy(), "mask": mask.numpy(), "positions": positions.numpy()}
        declared = {i.name for i in runner.get_inputs()}  # fused: causal alone, no mask
        rows = runner.run(None, {k: v for k, v in feeds.items() if k in declared})[0]
        assert abs(rows - take(full, positions).numpy()).max() < 1e-4
