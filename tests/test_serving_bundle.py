"""The serving bundle: hash checks with clear errors, and the engine with torch unimportable."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from llarapp.cli import app
from llarapp.errors import BundleError
from llarapp.serving.bundle import Bundle
from tests.conftest import REPO


def damage(folder, how, name):
    path = folder / name
    if how == "delete":
        path.unlink()
    elif how == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "append":
        with open(path, "ab") as handle:
            handle.write(b"x")


@pytest.mark.parametrize("how, name, message", [
    ("delete", "ranker.int8.onnx", "ranker.int8.onnx is missing"),
    ("flip", "ranker.onnx", "ranker.onnx does not match its sha256"),
    ("append", "catalogue.parquet", "catalogue.parquet does not match"),
    ("flip", "weights/fold_in_weights.npy", "fold_in_weights.npy does not match"),
    ("delete", "tokenizer/tokenizer.json", "tokenizer/tokenizer.json is missing"),
    ("delete", "manifest.json", "has no manifest.json"),
])
def test_damaged_bundle_is_refused(bundle, tmp_path, how, name, message):
    copy = shutil.copytree(bundle.folder, tmp_path / "bundle")
    damage(copy, how, name)
    with pytest.raises(BundleError, match=message):
        Bundle.load(copy)


def test_a_manifest_without_a_required_file_is_incomplete(bundle, tmp_path):
    copy = shutil.copytree(bundle.folder, tmp_path / "bundle")
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"]["text_encoder.int8.onnx"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not record text_encoder.int8.onnx"):
        Bundle.load(copy)


def drop(manifest, *keys):
    section = manifest
    for key in keys[:-1]:
        section = section[key]
    del section[keys[-1]]


def put(manifest, value, *keys):
    section = manifest
    for key in keys[:-1]:
        section = section[key]
    section[keys[-1]] = value


@pytest.mark.parametrize("change, message", [
    (lambda m: put(m, 1, "schema_version"), "has bundle schema 1; this llarapp reads 2. "
                                            "Re-export it"),
    (lambda m: put(m, "model", "kind"), "holds a 'model' artifact, not a serving-bundle"),
    (lambda m: drop(m, "ranker", "history_len"), r"ranker.history_len: Field required"),
    (lambda m: put(m, "twenty", "ranker", "num_candidates"), r"ranker.num_candidates: Input "
                                                             "should be a valid integer"),
    (lambda m: put(m, "bogus", "ranker", "kind"), r"ranker.kind: Input should be 'llara'"),
    (lambda m: put(m, 1, "retrieval", "colour"), r"retrieval.colour: Extra inputs"),
    (lambda m: put(m, "bm25", "retrieval", "title_query"), r"retrieval.title_query"),
    (lambda m: drop(m, "text_encoder"), r"text_encoder: Field required"),
    (lambda m: put(m, {"sha256": "x", "bytes": 1}, "files", "catalogue.parquet"),
     r"files.catalogue.parquet.sha256: String should match pattern"),
])
def test_the_manifest_follows_one_typed_schema(bundle, tmp_path, change, message):
    """What export wrote loads; any drift from the schema is refused, naming the field and
    the fix, before a single file is read."""
    from llarapp.serving.bundle_manifest import BundleManifest

    copy = shutil.copytree(bundle.folder, tmp_path / "bundle")
    manifest = json.loads((copy / "manifest.json").read_text())
    assert BundleManifest.model_validate(manifest).to_json() == manifest  # lossless
    change(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message) as refused:
        Bundle.load(copy, verify=False)
    assert "re-export" in str(refused.value).lower()


def test_bundle_info_cli(bundle, tmp_path):
    result = CliRunner().invoke(app, ["bundle-info", str(bundle.folder)])
    assert result.exit_code == 0, result.output
    assert bundle.version in result.output and "ranker.int8.onnx" in result.output
    copy = shutil.copytree(bundle.folder, tmp_path / "bundle")
    damage(copy, "flip", "ranker.int8.onnx")
    result = CliRunner().invoke(app, ["bundle-info", str(copy)])
    assert result.exit_code == 2 and "BundleError" in result.output


def test_bundle_loads_from_s3(bundle, s3_env):
    from llarapp.storage import upload_dir

    upload_dir(bundle.folder, f"s3://{s3_env}/bundles/v1")
    remote = Bundle.load(f"s3://{s3_env}/bundles/v1")
    assert remote.version == bundle.version


SERVE_WITHOUT_TORCH = textwrap.dedent("""
    import json, sys
    for name in ("torch", "transformers", "peft", "torch_geometric"):
        sys.modules[name] = None  # importing any of them now raises ImportError
    from llarapp.serving.bundle import Bundle
    from llarapp.serving.engine import Engine, Request

    engine = Engine(Bundle.load(sys.argv[1]))
    seeds = json.loads(sys.argv[2])
    responses = engine.recommend([Request("summer hits", seeds, k=5),
                                  Request("road trip", [], k=3),
                                  Request("", ["spotify:track:nope"], k=2)])
    loaded = [m for m in ("torch", "transformers") if sys.modules.get(m) is not None]
    print(json.dumps({"loaded": loaded, "responses": [
        {"cold_start": r.cold_start, "warnings": r.warnings, "version": r.model_version,
         "uris": [x.track_uri for x in r.recommendations],
         "scores": [x.score for x in r.recommendations]} for r in responses]}))
""")


def test_engine_serves_with_torch_unimportable(bundle):
    catalogue = bundle.catalogue
    seeds = catalogue.loc[catalogue["warm"], "track_uri"].head(4).tolist()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_TORCH, str(bundle.folder),
                           json.dumps(seeds)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    seeded, title_only, unknown = out["responses"]
    assert len(seeded["uris"]) == 5 and not set(seeded["uris"]) & set(seeds)
    assert seeded["scores"] == sorted(seeded["scores"], reverse=True)
    assert seeded["cold_start"] == "none" and seeded["version"] == bundle.version
    assert title_only["cold_start"] == "title_only" and len(title_only["uris"]) == 3
    assert unknown["cold_start"] == "unknown_tracks"
    assert "spotify:track:nope" in unknown["warnings"][0]


def test_engine_rerank_matches_the_torch_ranker(bundle, trained_llara, llara_sources):
    """Serving's prompts (tokenizers, bundle vectors) and ONNX give training's scores."""
    import torch

    from llarapp.llara.checkpoint import LlaraArtifact
    from llarapp.llara.stage import make_collator
    from llarapp.serving.engine import Engine
    from tests.test_export import prompts

    model = LlaraArtifact.load(trained_llara)
    ranker = model.ranker()
    examples = prompts(llara_sources, model, 5, seed=3)
    with torch.no_grad():
        reference = ranker(make_collator(ranker.backbone, llara_sources, model.config)(examples),
                           True).numpy()
    served = Engine(bundle, precision="fp32").rerank(examples)
    np.testing.assert_allclose(served, reference, atol=1e-4)


def test_engine_rejects_a_bad_k_and_takes_an_empty_batch(bundle):
    from llarapp.errors import ConfigError
    from llarapp.serving.engine import Engine, Request

    engine = Engine(bundle)
    assert engine.recommend([]) == []
    with pytest.raises(ConfigError, match="k must be at least 1"):
        engine.recommend([Request("x", [], k=0)])
    deep = engine.recommend([Request("summer", [], k=engine.num_candidates + 5)])[0]
    ranks = [r.retrieval_rank for r in deep.recommendations]
    assert len(ranks) == engine.num_candidates + 5
    # the ranker reorders the top K; retrieval order continues after it
    assert sorted(ranks[:engine.num_candidates]) == list(range(engine.num_candidates))
    assert ranks[engine.num_candidates:] == list(range(engine.num_candidates,
                                                       engine.num_candidates + 5))
