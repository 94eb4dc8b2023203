"""Shared fixtures: tiny synthetic MPD data, the real data in ../shared, a local S3 API."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llarapp.data.dataset import Dataset, Split
from llarapp.data.ingest import IngestConfig, run_ingest
from llarapp.data.split import SplitConfig, run_split
from llarapp.data.synth import SynthConfig, run_synth
from llarapp.serving.launch import free_port

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LLARAPP_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent (real MPD data lives in ../shared/data)")
    return path


@pytest.fixture(scope="session")
def synthetic_slices(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "slices"
    run_synth(SynthConfig(num_playlists=600, slice_size=200, seed=7), out)
    return out


@pytest.fixture(scope="session")
def synthetic_dataset(synthetic_slices, tmp_path_factory) -> Dataset:
    out = tmp_path_factory.mktemp("dataset") / "dataset"
    run_ingest(IngestConfig(input=str(synthetic_slices), workers=1), out)
    return Dataset.load(out)


@pytest.fixture(scope="session")
def synthetic_split(synthetic_dataset, tmp_path_factory) -> Split:
    out = tmp_path_factory.mktemp("split") / "split"
    run_split(SplitConfig(seed=3), synthetic_dataset, out)
    return Split.load(out)


def write_slice(folder: Path, name: str, playlists: list, raw: str | None = None) -> Path:
    """Write one MPD slice (or raw text) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(raw if raw is not None else json.dumps(
        {"info": {"slice": name}, "playlists": playlists}))
    return path


def make_playlist(pid, name="chill vibes", tracks=None, **extra) -> dict:
    tracks = tracks if tracks is not None else [
        {"pos": i, "track_uri": f"spotify:track:{pid}-{i}", "track_name": f"Song {i}",
         "artist_name": f"Artist {i % 3}", "album_name": "Album"} for i in range(5)]
    return {"pid": pid, "name": name, "tracks": tracks, **extra}


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 HTTP API on localhost (moto), for the minio client to talk to."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3_env(s3_server, monkeypatch):
    """Environment for llarapp.storage, plus a fresh bucket; yields the bucket name."""
    import uuid

    monkeypatch.setenv("S3_ENDPOINT", s3_server)
    monkeypatch.setenv("S3_USE_HTTPS", "0")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("LLARAPP_S3_BACKOFF_S", "0.01")
    from llarapp.storage import s3_client

    bucket = f"test-{uuid.uuid4().hex[:10]}"
    s3_client().make_bucket(bucket)
    return bucket


@pytest.fixture(scope="session")
def text_embeddings(synthetic_dataset, tmp_path_factory):
    """MiniLM (the packaged default encoder) over the synthetic catalogue."""
    from llarapp.models.text_embed import TextEmbedConfig, TextEmbeddings, run_text_embed

    out = tmp_path_factory.mktemp("text") / "text"
    run_text_embed(TextEmbedConfig(device="cpu"), synthetic_dataset, out)
    return TextEmbeddings.load(out)


FAST_GRAPH = {"dim": 32, "layers": 2, "epochs": 4, "patience": 2, "batch_size": 2048,
              "device": "cpu", "lr": 0.01}


@pytest.fixture(scope="session")
def graph_embeddings(synthetic_dataset, synthetic_split, tmp_path_factory):
    from llarapp.models.graph import GraphEmbeddings
    from llarapp.models.lightgcn import LightGCNConfig, run_lightgcn

    out = tmp_path_factory.mktemp("graph") / "graph"
    run_lightgcn(LightGCNConfig(**FAST_GRAPH), synthetic_dataset, synthetic_split, out)
    return GraphEmbeddings.load(out).vectors


@pytest.fixture(scope="session")
def cold_mapper(synthetic_dataset, synthetic_split, text_embeddings, graph_embeddings,
                tmp_path_factory):
    from llarapp.models.cold_mapper import ColdMapper, ColdMapperConfig, run_cold_mapper

    out = tmp_path_factory.mktemp("mapper") / "mapper"
    run_cold_mapper(ColdMapperConfig(epochs=5, device="cpu"), synthetic_dataset,
                    synthetic_split, text_embeddings, graph_embeddings, out)
    return ColdMapper.load(out)


HYBRID_PARAMS = {kind: {"lambda": 0.5, "cold_lambda": 2.0, "cold_slots": 10,
                        "cold_slots_end": 50} for kind in ("seeded", "title_only")}
TINY_LLARA = {"steps": 6, "batch_size": 4, "history_len": 3, "num_candidates": 6,
              "hard_negatives": 2, "hard_pool": 5, "item_tokens": 4, "pretrain_steps": 2,
              "pretrain_batch_size": 2, "pretrain_max_length": 24, "warmup_steps": 0,
              "device": "cpu", "track": False}


@pytest.fixture(scope="session")
def llara_sources(synthetic_dataset, synthetic_split, text_embeddings, graph_embeddings,
                  cold_mapper):
    from llarapp.llara.examples import Sources

    return Sources(synthetic_dataset, synthetic_split, text_embeddings, graph_embeddings,
                   cold_mapper, HYBRID_PARAMS)


@pytest.fixture(scope="session")
def trained_llara(llara_sources, tmp_path_factory):
    """A tiny LLaRA trained for a few steps (LoRA, curriculum), saved as an artifact."""
    from llarapp.llara.config import LlaraConfig
    from llarapp.llara.stage import run_llara

    root = tmp_path_factory.mktemp("llara")
    cfg = LlaraConfig(**{**TINY_LLARA, "track": True,
                         "tracking_uri": f"sqlite:///{root / 'mlflow.db'}"})
    run_llara(cfg, llara_sources, root / "llara")
    return root / "llara"


# index_min_tracks 0: the tests' bundle ships the IVF retrieval index, so every serving
# test runs the indexed path (tests/test_serving_index.py compares it with exact scoring)
TINY_EXPORT = {"eval_prompts": 24, "latency_batches": [1, 4], "latency_repeats": 2,
               "text_parity_texts": 200, "calibration_prompts": 8, "seed": 0,
               "index_min_tracks": 0}


@pytest.fixture(scope="session")
def bundle(trained_llara, llara_sources, text_embeddings, tmp_path_factory):
    from llarapp.export.config import ExportConfig
    from llarapp.export.stage import run_export
    from llarapp.llara.checkpoint import LlaraArtifact
    from llarapp.serving.bundle import Bundle

    out = tmp_path_factory.mktemp("export") / "bundle"
    run_export(ExportConfig(**TINY_EXPORT), LlaraArtifact.load(trained_llara), llara_sources,
               text_embeddings, out)
    return Bundle.load(out)


@pytest.fixture(scope="session")
def shuffled(bundle, tmp_path_factory):
    """The bundle with its item vectors shuffled: it recommends about at random."""
    import shutil

    import numpy as np

    from llarapp.serving.bundle import MANIFEST, Bundle, file_table

    folder = tmp_path_factory.mktemp("shuffled") / "bundle"
    shutil.copytree(bundle.folder, folder)
    rng = np.random.default_rng(0)
    for name in ("vectors/item_graph.npy", "vectors/item_text.npy",
                 "vectors/lightgcn_items.npy"):
        vectors = np.load(folder / name)
        np.save(folder / name, vectors[rng.permutation(len(vectors))])
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = file_table(folder)
    manifest["model_version"] += "-shuffled"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return Bundle.load(folder)


@pytest.fixture(scope="session")
def pipeline_specs(tmp_path_factory) -> dict[str, dict]:
    """The compiled pipeline spec of training, tune and batch, compiled once."""
    import yaml

    from pipelines.submit import compile_pipeline

    root = tmp_path_factory.mktemp("compiled")
    return {name: next(yaml.safe_load_all(compile_pipeline(name, root / f"{name}.yaml")
                                          .read_text()))
            for name in ("training", "tune", "batch")}


@pytest.fixture(scope="session")
def server(bundle):
    """The real model server on localhost, serving the tiny bundle."""
    from llarapp.serving.launch import ServerProcess

    # a long wait makes coalescing certain for the concurrent-request test
    with ServerProcess(bundle.folder, "--max_wait_ms", "30", "--max_batch_size", "8") as live:
        yield live


def kserve_model(obj: dict):
    """An InferenceService dict as kserve's model classes; fields they do not know are
    dropped, so serialising it back and comparing catches unknown fields."""
    import kubernetes.client

    import kserve

    for name in dir(kubernetes.client):  # kserve's models refer to the core V1* classes
        if name.startswith("V1") and not hasattr(kserve.models, name):
            setattr(kserve.models, name, getattr(kubernetes.client, name))

    class Response:
        data = json.dumps(obj)

    return kserve.ApiClient().deserialize(Response(), "V1beta1InferenceService")


def kserve_serialize(model) -> dict:
    import kserve

    return kserve.ApiClient().sanitize_for_serialization(model)


def _serve(fake):
    yield fake
    fake.close()


@pytest.fixture()
def kube():
    """A fake Kubernetes API (custom objects) on localhost; see tests/fakes.py."""
    from fakes import FakeKube

    yield from _serve(FakeKube())


@pytest.fixture()
def kfp_api():
    """A fake Kubeflow Pipelines REST API on localhost; see tests/fakes.py."""
    from fakes import FakeKfp

    yield from _serve(FakeKfp())


NEWCOMER = "test_newcomer.py"


def pytest_collection_modifyitems(items):
    # The newcomer journey waits on its background `make run`: last, so the suite overlaps it.
    items.sort(key=lambda item: item.path.name == NEWCOMER)


@pytest.fixture(scope="session", autouse=True)
def newcomer_journey(request, tmp_path_factory):
    """The clone + `make run` of test_newcomer.py, started before the first test (or None
    when no newcomer test is selected, or git or make is missing)."""
    from newcomer_journey import Journey

    if Journey.missing_tools() or not any(
            item.path.name == NEWCOMER for item in request.session.items):
        yield None
        return
    journey = Journey(tmp_path_factory.mktemp("newcomer") / "llarapp")
    yield journey
    journey.stop()
