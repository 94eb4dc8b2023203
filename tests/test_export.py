"""Export: ORT parity with torch, QInt8 variants and the choice, the text encoder on real
track texts, the report and the bundle manifest."""

import gzip
import json

import numpy as np
import pandas as pd
import pytest
import torch

from llarapp.errors import ConfigError
from llarapp.export.config import ExportConfig
from llarapp.export.ranker import ExportableRanker, torch_scores
from llarapp.export.report import choose_variant
from llarapp.llara.checkpoint import LlaraArtifact
from llarapp.llara.examples import ExampleFactory
from llarapp.llara.stage import make_collator
from llarapp.serving.runtime import first_output, resolve_providers, session
from tests.conftest import shared_data


def prompts(sources, model, count, seed):
    heldout = sources.split.heldout_for("test").head(count)
    return ExampleFactory(sources, model.config.num_candidates, model.config.history_len,
                          seed).random_candidates(heldout)


@pytest.mark.parametrize("count", [1, 3, 7])  # batch sizes and lengths unlike the trace's
def test_ort_fp32_matches_torch(bundle, trained_llara, llara_sources, count):
    model = LlaraArtifact.load(trained_llara)
    ranker = model.ranker()
    ranker.backbone.model.set_attn_implementation("eager")
    collator = make_collator(ranker.backbone, llara_sources, model.config)
    examples = prompts(llara_sources, model, count, seed=count)
    with torch.no_grad():
        reference = ranker(collator(examples), True).numpy()
    feeds = collator.builder.pack(examples, llara_sources.item_vectors,
                                  ranker.backbone.tokenizer.pad_token_id).onnx_inputs()
    exported = first_output(session(bundle.path("ranker.onnx")))(feeds)
    assert np.abs(exported - reference).max() <= 1e-4
    for fused in (False, True):
        exportable = ExportableRanker(ranker, fused)
        assert np.abs(torch_scores(exportable, feeds) - reference).max() <= 1e-4
    int8 = first_output(session(bundle.path("ranker.int8.onnx")))(feeds)
    assert int8.shape == reference.shape and np.isfinite(int8).all()


def test_report_and_manifest(bundle):
    manifest = bundle.manifest
    report = json.loads(bundle.path("report/quantization.json").read_text())
    assert {v["model"] for v in report["variants"]} == {"fp32", "dynamic", "per_channel",
                                                        "static"}
    assert report["chosen"] == manifest["quantization"]["chosen"]
    assert manifest["ranker"]["parity_max_abs_diff"] <= 1e-4
    sizes = {n: manifest["files"][n]["bytes"] for n in ("ranker.onnx", "ranker.int8.onnx")}
    assert sizes["ranker.onnx"] / sizes["ranker.int8.onnx"] == pytest.approx(
        report["summary"]["size_ratio"], rel=1e-6)
    assert report["summary"]["size_ratio"] > 3
    assert {"speedup_b1", "speedup_b4", "test_delta_hr@1"} <= set(report["summary"])
    for variant in report["variants"]:  # p50 and p99 per batch size
        assert 0 < variant["latency_b4_ms"] <= variant["p99_b4_ms"]
    assert bundle.path("report/quantization.png").stat().st_size > 0
    assert manifest["text_encoder"]["parity"]["mean_cosine"] >= 0.99
    assert set(manifest["files"]) >= {"catalogue.parquet", "tokenizer/tokenizer.json",
                                      "weights/item_mapper.npz", "vectors/item_graph.npy"}
    assert manifest["model_version"].startswith("llara-")


def real_track_texts(limit=600):
    texts = []
    for path in sorted(shared_data("mpd-sample").glob("*.json*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as handle:
            for playlist in json.load(handle)["playlists"]:
                texts += [" — ".join(filter(None, (t.get("track_name"), t.get("artist_name"),
                                                    t.get("album_name"))))
                          for t in playlist["tracks"]]
    return list(dict.fromkeys(texts))[:limit]


def test_int8_text_encoder_keeps_cosine_on_real_tracks(bundle):
    from llarapp.models.text_encoder import TextEncoder
    from llarapp.serving.text import OnnxTextEncoder

    texts = real_track_texts()
    reference = TextEncoder("minilm", device="cpu").encode(texts)
    served = OnnxTextEncoder(bundle.path("text_encoder.int8.onnx"),
                             bundle.path("text_tokenizer/tokenizer.json"), 64).encode(texts)
    cosine = np.sum(reference * served, axis=1)
    assert len(texts) > 300 and cosine.mean() >= 0.99 and cosine.min() > 0.9


TABLE = pd.DataFrame([
    {"model": "fp32", "val_hr@1": 0.50, "latency_b8_ms": 100.0},
    {"model": "dynamic", "val_hr@1": 0.50, "latency_b8_ms": 80.0},
    {"model": "per_channel", "val_hr@1": 0.498, "latency_b8_ms": 70.0},
    {"model": "static", "val_hr@1": 0.40, "latency_b8_ms": 50.0},
])


@pytest.mark.parametrize("quantization, tolerance, expected", [
    ("auto", 0.005, "per_channel"),  # fastest within tolerance; static is faster but worse
    ("auto", 0.0, "dynamic"),  # only the exact one qualifies
    ("auto", 0.2, "static"),
    ("dynamic", 0.0, "dynamic"),  # named
])
def test_choose_variant(quantization, tolerance, expected):
    assert choose_variant(TABLE, quantization, tolerance)[0] == expected


def test_choose_variant_falls_back_to_the_most_accurate():
    table = TABLE.assign(**{"val_hr@1": [0.5, 0.45, 0.48, 0.40]})
    chosen, why = choose_variant(table, "auto", 0.005)
    assert chosen == "per_channel" and "no variant" in why


@pytest.mark.parametrize("overrides, message", [
    ({"variants": ["int4"]}, "variants"),
    ({"quantization": "static", "variants": ["dynamic"]}, "quantization"),
    ({"providers": ["tpu"]}, "providers"),
    ({"opset": 13}, "opset"),
    ({"attention": "flash"}, "attention"),
])
def test_export_config_rejects(overrides, message):
    with pytest.raises(ConfigError, match=message):
        ExportConfig(**overrides)


def test_unavailable_provider_says_what_is_installed():
    with pytest.raises(ConfigError, match="CPUExecutionProvider"):
        resolve_providers(["migraphx"])
    assert resolve_providers(["cpu"]) == ["CPUExecutionProvider"]


@pytest.mark.slow
def test_a_fused_attention_bundle_has_one_operator_per_layer_and_serves(
        trained_llara, llara_sources, text_embeddings, tmp_path):
    import onnx

    from llarapp.export.stage import run_export
    from llarapp.serving.bundle import Bundle
    from llarapp.serving.engine import Engine, Request
    from tests.conftest import TINY_EXPORT

    model = LlaraArtifact.load(trained_llara)
    run_export(ExportConfig(**{**TINY_EXPORT, "attention": "fused", "variants": ["dynamic"],
                               "quantization": "dynamic"}),
               model, llara_sources, text_embeddings, tmp_path / "bundle")
    fused = Bundle.load(tmp_path / "bundle")
    assert fused.manifest["ranker"]["parity_max_abs_diff"] <= 1e-4
    layers = model.ranker().backbone.body.config.num_hidden_layers
    for precision in ("ranker.onnx", "ranker.int8.onnx"):
        graph = onnx.load(str(fused.path(precision))).graph
        assert [n.op_type for n in graph.node].count("GroupQueryAttention") == layers - 1
        assert "attention_mask" not in {i.name for i in graph.input}  # causal alone
    warm = fused.catalogue.loc[fused.catalogue["warm"], "track_uri"].tolist()
    (answer,) = Engine(fused).recommend([Request("road trip", warm[:4], k=5)])
    assert len(answer.recommendations) == 5
