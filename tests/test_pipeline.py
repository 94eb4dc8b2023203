"""The KFP pipeline: compiled for clusters, and run end to end with kfp.local."""

import json
from pathlib import Path

import pytest
import yaml

from llarapp.errors import ConfigError
from pipelines.local_run import pipeline_arguments, run_locally


def test_compiles_with_every_stage(tmp_path):
    from kfp import compiler

    from pipelines.training import training_pipeline

    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(training_pipeline, str(path))
    spec = next(yaml.safe_load_all(path.read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"synth", "ingest", "split", "baselines", "text-embed", "lightgcn",
                          "cold-mapper", "retrieve", "evaluate", "llara", "eval-llara", "export"}
    assert set(tasks["llara"]["dependentTasks"]) == {"ingest", "split", "text-embed",
                                                     "lightgcn", "cold-mapper", "retrieve"}
    assert "llara" in tasks["eval-llara"]["dependentTasks"]
    assert {"llara", "eval-llara"} <= set(tasks["export"]["dependentTasks"])
    assert tasks["evaluate"]["dependentTasks"] == ["baselines", "ingest", "retrieve", "split"]
    assert set(tasks["cold-mapper"]["dependentTasks"]) == {"ingest", "split", "text-embed",
                                                           "lightgcn"}
    assert "data_uri" in spec["root"]["inputDefinitions"]["parameters"]


def test_gpu_stages_request_an_mi100(tmp_path):
    from kfp import compiler

    from pipelines.training import training_pipeline

    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(training_pipeline, str(path))
    pipeline, platform = yaml.safe_load_all(path.read_text())
    executors = pipeline["deploymentSpec"]["executors"]
    kube = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for stage in ("lightgcn", "llara", "eval-llara", "export"):
        resources = executors[f"exec-{stage}"]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "amd.com/gpu"
        assert kube[f"exec-{stage}"]["nodeSelector"]["labels"] == {
            "amd.com/gpu.product-name": "AMD_Instinct_MI100"}
        assert kube[f"exec-{stage}"]["tolerations"][0]["key"] == "amd.com/gpu"
    assert "exec-ingest" not in kube


def test_pipeline_arguments_reject_unknown_parameters(tmp_path):
    args = pipeline_arguments(None, tmp_path, ["synth_playlists=50"])
    assert args["synth_playlists"] == 50 and args["data_uri"] == ""
    with pytest.raises(ConfigError, match="unknown pipeline parameter 'bogus'"):
        pipeline_arguments(None, tmp_path, ["bogus=1"])


# The data-plumbing tests need the stages to run, not to train well.
FAST_MODELS = ["lightgcn_epochs=2", "lightgcn_dim=16", "llara_steps=3",
               "llara_pretrain_steps=2", "export_eval_prompts=32", "export_latency_repeats=1"]


@pytest.mark.slow
def test_local_run_end_to_end(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run_locally(workdir=tmp_path / "runs",
                         overrides=["synth_playlists=300", "llara_steps=6",
                                    "llara_pretrain_steps=3", "export_eval_prompts=64",
                                    "export_latency_repeats=2"])
    evaluation = Path(result["evaluation"])
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert {"popularity", "item_knn", "lightgcn", "text", "hybrid"} <= {
        row["model"] for row in metrics["summary"]}
    assert (tmp_path / "runs" / "mlflow.db").is_file()
    stage_dirs = {p.name for p in evaluation.parent.parent.iterdir()}
    assert {"synth", "ingest", "split", "baselines", "text-embed", "lightgcn", "cold-mapper",
            "retrieve", "evaluate", "llara", "eval-llara", "export"} <= stage_dirs
    root = evaluation.parent.parent
    llara = json.loads((root / "eval-llara" / "evaluation" / "metrics.json").read_text())
    assert {r["model"] for r in llara["candidates"]} == {"llara", "lightgcn", "hybrid"}
    assert (root / "llara" / "model" / "adapter" / "adapter_config.json").is_file()
    from llarapp.serving.bundle import Bundle

    bundle = Bundle.load(root / "export" / "bundle")  # verifies every hash
    assert bundle.manifest["quantization"]["chosen"] in ("dynamic", "per_channel", "static")
    assert bundle.manifest["metrics"]["size_ratio"] > 3


@pytest.mark.slow
def test_local_run_on_a_data_folder(tmp_path, synthetic_slices, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run_locally(data=str(synthetic_slices), workdir=tmp_path / "runs",
                         overrides=FAST_MODELS)
    root = Path(result["evaluation"]).parent.parent
    pointer = json.loads((root / "synth" / "slices" / "manifest.json").read_text())
    assert pointer["kind"] == "mpd-source" and pointer["uri"] == str(synthetic_slices)
    ingested = json.loads((root / "ingest" / "dataset" / "manifest.json").read_text())
    assert ingested["counts"]["playlists"] == 600


@pytest.mark.slow
def test_local_run_on_an_s3_prefix(tmp_path, synthetic_slices, s3_env, monkeypatch):
    """make run DATA=s3://…: the component subprocesses read S3 with the same environment."""
    from llarapp.storage import upload_dir

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    upload_dir(synthetic_slices, f"s3://{s3_env}/mpd")
    result = run_locally(data=f"s3://{s3_env}/mpd", workdir=tmp_path / "runs",
                         overrides=FAST_MODELS)
    root = Path(result["evaluation"]).parent.parent
    ingested = json.loads((root / "ingest" / "dataset" / "manifest.json").read_text())
    assert ingested["counts"]["playlists"] == 600
    assert ingested["sources"][0]["uri"].startswith(f"s3://{s3_env}/mpd/")
