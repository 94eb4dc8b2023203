"""The serving benchmarks' own logic: the ranker's work count (benchmarks/ceilings.py) and
the synthetic catalogue growth (benchmarks/serving_scale.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from ceilings import ranker_ops, shares  # noqa: E402
from serving_scale import grow_bundle  # noqa: E402

from llarapp.serving.bundle import Bundle  # noqa: E402
from llarapp.serving.engine import Engine, Request  # noqa: E402


def attention_like_model(path: Path, width: int = 8, hidden: int = 16) -> None:
    """x·W1·W2 (weights), then one attention's two weight-free MatMuls."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
               for name, shape in (("w1", (width, hidden)), ("w2", (hidden, width)),
                                   ("embedding", (100, width)))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("MatMul", ["h", "w2"], ["q"]),
             helper.make_node("Transpose", ["q"], ["k"], perm=[1, 0]),
             helper.make_node("MatMul", ["q", "k"], ["a"]),
             helper.make_node("MatMul", ["a", "q"], ["y"])]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["t", width])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["t", width])], weights)
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("tokens", [[10], [10, 4]])
def test_ranker_ops_count_each_matmul_at_the_shapes_a_run_gives(tmp_path, tokens):
    attention_like_model(tmp_path / "toy.onnx")
    feeds = [{"input_ids": np.zeros((1, t), np.int64), "x": np.ones((t, 8), np.float32)}
             for t in tokens]
    # per prompt of t tokens: x·W1 and h·W2 (2·t·8·16 each), q·kᵀ (2·t·t·8), a·q (2·t·8·t)
    expected = np.mean([4 * t * 8 * 16 + 4 * t * t * 8 for t in tokens])
    assert ranker_ops(tmp_path / "toy.onnx", feeds) == pytest.approx(expected)


@pytest.mark.parametrize("batch, tokens", [(1, 6), (3, 10)])
def test_ranker_ops_count_fused_attention_as_its_two_products(tmp_path, batch, tokens):
    width, heads = 16, 2  # onnxruntime takes heads of a multiple of 8 wide
    dims = ["b", "t", width]
    node = helper.make_node("GroupQueryAttention", ["q", "k", "v", "", "", "seqlens", "total"],
                            ["y", "present_k", "present_v"], domain="com.microsoft",
                            num_heads=heads, kv_num_heads=heads)
    graph = helper.make_graph(
        [node], "toy", [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n in "qkv"]
        + [helper.make_tensor_value_info("seqlens", TensorProto.INT32, ["b"]),
           helper.make_tensor_value_info("total", TensorProto.INT32, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    model = helper.make_model(graph, ir_version=10, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    (tmp_path / "gqa.onnx").write_bytes(model.SerializeToString())
    x = np.ones((batch, tokens, width), np.float32)
    feeds = [{"input_ids": np.zeros((batch, tokens), np.int64), "q": x, "k": x, "v": x,
              "seqlens": np.full(batch, tokens - 1, np.int32),
              "total": np.array(tokens, np.int32)}]
    # q·kᵀ and the weights·v, each 2·heads·t·t·(width / heads) per prompt
    assert ranker_ops(tmp_path / "gqa.onnx", feeds) == pytest.approx(4 * tokens * tokens * width)


@pytest.mark.parametrize("throughput, expected", [(0.0, 0.0), (50.0, 0.5), (200.0, 2.0)])
def test_ceiling_shares(throughput, expected):
    limits = {"ranker_ceiling_rps": 100.0, "retrieval_ceiling_rps": 400.0}
    assert shares(throughput, limits) == {"ranker_ceiling_share": expected,
                                          "retrieval_ceiling_share": expected / 4}


def test_a_grown_bundle_verifies_indexes_every_track_and_serves(bundle, tmp_path):
    tracks = 3 * len(bundle.catalogue)
    grow_bundle(bundle.folder, tmp_path / "grown", tracks)
    grown = Bundle.load(tmp_path / "grown")  # every file matches its hash
    assert len(grown.catalogue) == tracks == grown.manifest["counts"]["tracks"]
    assert grown.catalogue["track_uri"].is_unique
    engine = Engine(grown)
    assert sum(index.ntotal for index in engine.index.indexes.values()) == tracks
    warm_share = engine.scorer.warm.mean()
    assert abs(warm_share - bundle.catalogue["warm"].mean()) < 0.1
    seeds = grown.catalogue["track_uri"].iloc[-3:].tolist()
    response = engine.recommend([Request("synthetic", seeds, k=5)])[0]
    assert len(response.recommendations) == 5
    assert not {r.track_uri for r in response.recommendations} & set(seeds)


@pytest.mark.parametrize("kind", ["ivf", "hnsw", None])
def test_retrieval_reads_are_counted_for_every_index_kind(bundle, kind):
    """The retrieval ceiling divides by these bytes: each index kind must count its own
    reads (IVF once read HNSW's counter and gave zero), and exact scoring reads the whole
    catalogue."""
    from ceilings import measured_requests

    from llarapp.models.hybrid_index import HybridIndex

    engine = Engine(bundle)
    if kind is None:
        engine.index = None
    elif kind != engine.index.kind:
        engine.index = HybridIndex(engine.index.form, kind)
    warm = bundle.catalogue.loc[bundle.catalogue["warm"], "track_uri"].tolist()
    instances = [{"playlist_name": "rainy day", "track_uris": warm[i:i + 4]}
                 for i in range(0, 40, 8)]
    read = measured_requests(engine, instances)[0]["retrieval_bytes_per_request"]
    row_bytes = 4 * (engine.item_graph.shape[1] + engine.scorer.item_text.shape[1])
    if kind is None:
        assert read == len(engine.uris) * row_bytes
    else:
        assert 0 < read
        if kind == "ivf":  # whole projected rows: a multiple of one row of the index
            assert read * len(instances) % (4 * engine.index.indexes["warm"].d) == 0


def test_ranker_feeds_records_each_call_and_puts_the_session_back(bundle):
    from ceilings import ranker_feeds

    engine = Engine(bundle)
    serving_session = engine.ranker.session
    warm = bundle.catalogue.loc[bundle.catalogue["warm"], "track_uri"].tolist()
    instances = [{"playlist_name": f"mix {i}", "track_uris": warm[i:i + 3]} for i in range(5)]
    serving_feeds = engine.ranker.feeds
    feeds = ranker_feeds(engine, instances, batch=2)
    assert [len(f["input_ids"]) for f in feeds] == [2, 2, 1]
    # every input the prompts pack, whether or not this graph reads it (another may)
    assert set(feeds[0]) == set(bundle.manifest["ranker"]["inputs"])
    assert engine.ranker.session is serving_session and engine.ranker.feeds is serving_feeds
    assert serving_session.run(None, serving_feeds(feeds[0]))[0].shape[0] == 2
