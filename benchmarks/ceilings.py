"""The machine's ceilings for one bundle: how fast could this hardware serve it at best?

1. Ranker work per request: 2 operations per multiply-add of every MatMul and Gemm in the
   ranker's fp32 ONNX graph, at the shapes a run on each real playlist's prompt gives (as
   the engine packs them, one playlist a call), so a layer that runs on a few rows counts
   only those.
2. Retrieval bytes per request: faiss counts the distance computations, each reading one
   of the index's rows: ``hnsw_stats.ndis`` float32 graph and text rows for HNSW;
   ``indexIVF_stats.ndis`` projected rows for IVF, plus its coarse quantizer's centroids
   (the warm group's, once per search). Without an index the whole catalogue's float32
   graph and text vectors are read.
3. The machine: an int8 GEMM of the ranker's shapes through onnxruntime (dynamic
   quantisation, as the ranker is exported) at the worker's thread count, and the memory
   read bandwidth of numpy summing a 512 MiB array.
4. Where the ranker's time goes: onnxruntime's profile of the ranker on those prompts,
   summed by operator type.

A throughput's share of a ceiling is (requests/s × work per request) / rate; 100% would
mean the hardware does nothing else.

5. With ``--against OTHER``: this bundle's int8 ranker against another's on the same
   prompts, alternating (an A/B of an export change at equal weights).

    python benchmarks/ceilings.py --bundle BUNDLE [--threads 2] [--against OTHER]

Writes benchmarks/results/ceilings[-TAG].json and .md; benchmarks/serving.py prints the
same ceilings beside its measured points.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

RESULTS = REPO / "benchmarks" / "results"
BANDWIDTH_BYTES = 512 << 20


def ranker_ops(model_path: Path, feeds: list[dict[str, np.ndarray]]) -> float:
    """Mean operations per prompt in the graph's MatMul and Gemm nodes (2 per multiply-add)
    and in its fused attention (``GroupQueryAttention``: the scores and the weighted sum of
    values, counted in full as the unfused MatMuls were), from the shapes that running the
    fp32 graph on ``feeds`` gives: exact for any graph, whichever rows each layer runs on."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    products = [node for node in model.graph.node
                if node.op_type in ("MatMul", "Gemm", "GroupQueryAttention")]
    shown = list(dict.fromkeys(name for node in products for name in node.input[:1]
                               + node.output[:1] if name not in weights))
    declared = {output.name for output in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name)
                              for name in shown if name not in declared)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    inputs, total = {i.name for i in session.get_inputs()}, 0
    for feed in feeds:
        ran = session.run(shown, {name: feed[name] for name in inputs})
        shapes = {**weights, **{name: value.shape for name, value in zip(shown, ran,
                                                                         strict=True)}}
        for node in products:
            left = shapes[node.input[0]]
            if node.op_type == "GroupQueryAttention":  # query (B, T, heads·dim)
                total += 2 * 2 * int(np.prod(left)) * int(left[1])
                continue
            transposed = any(a.name == "transA" and a.i for a in node.attribute)
            inner = left[-2] if transposed else left[-1]
            total += 2 * int(np.prod(shapes[node.output[0]])) * int(inner)
    return total / sum(len(feed["input_ids"]) for feed in feeds)


def int8_gemm_rate(threads: int, rows: int = 2048, inner: int = 256, cols: int = 512,
                   repeats: int = 30) -> float:
    """Operations per second of a dynamically quantised MatMul of the ranker's shapes."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight = np.random.default_rng(0).standard_normal((inner, cols)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, inner])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, cols])],
        [numpy_helper.from_array(weight, "w")])
    with tempfile.TemporaryDirectory() as folder:
        fp32, int8 = Path(folder) / "gemm.onnx", Path(folder) / "gemm.int8.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                    ir_version=8),
                  str(fp32))
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((rows, inner)).astype(np.float32)
    session.run(None, {"x": x})
    started = time.perf_counter()
    for _ in range(repeats):
        session.run(None, {"x": x})
    return repeats * 2 * rows * inner * cols / (time.perf_counter() - started)


def read_bandwidth(repeats: int = 5) -> float:
    """Bytes per second numpy reads (one core, as the engine's numpy scoring does)."""
    array = np.ones(BANDWIDTH_BYTES // 4, np.float32)
    array.sum()
    started = time.perf_counter()
    for _ in range(repeats):
        array.sum()
    return repeats * array.nbytes / (time.perf_counter() - started)


def ranker_feeds(engine, instances: list[dict], batch: int) -> list[dict[str, np.ndarray]]:
    """The ranker's inputs as the engine builds them, ``batch`` playlists a call, all of
    them, before the session's graph drops those it does not read (its session is wrapped
    to record them, then put back)."""
    from llarapp.serving.engine import Request
    from llarapp.serving.runtime import declared_feeds

    feeds: list[dict[str, np.ndarray]] = []
    ranker = getattr(engine.ranker, "session", None)
    if ranker is not None:
        declared, serving_feeds = declared_feeds(ranker), engine.ranker.feeds

        def recording(outputs, inputs, *rest):
            feeds.append(inputs)
            return ranker.run(outputs, declared(inputs), *rest)

        engine.ranker.session = type("Recording", (), {"run": staticmethod(recording)})()
        engine.ranker.feeds = lambda inputs: inputs
    try:
        requests = [Request(i["playlist_name"], i["track_uris"], k=10) for i in instances]
        for start in range(0, len(requests), batch):
            engine.recommend(requests[start:start + batch])
    finally:
        if ranker is not None:
            engine.ranker.session, engine.ranker.feeds = ranker, serving_feeds
    return feeds


def ranker_against(engine, other: Path, instances: list[dict], threads: int,
                   repeats: int = 8) -> dict[str, dict[str, float]]:
    """Median int8 ranker milliseconds per request, this bundle's against ``other``'s, on
    the same prompts, at batch 1 and 32; the two alternate, each first in every other
    round, so a change in the machine's speed (common on a shared VM) meets both."""
    from llarapp.serving.bundle import RANKER
    from llarapp.serving.runtime import declared_feeds, session

    sessions = {"this": engine.ranker.session,
                "other": session(other / RANKER["int8"], threads=threads)}
    out: dict[str, dict[str, float]] = {}
    for batch in (1, 32):
        feeds = ranker_feeds(engine, instances, batch)
        # each graph gets the inputs it reads (a fused one reads no attention mask)
        feeds_of = {name: [declared_feeds(ranker)(inputs) for inputs in feeds]
                    for name, ranker in sessions.items()}
        spent: dict[str, list[float]] = {name: [] for name in sessions}
        for repeat in range(repeats):  # ABBA: neither goes first every time
            for name, ranker in list(sessions.items())[::1 if repeat % 2 else -1]:
                started = time.perf_counter()
                for inputs in feeds_of[name]:
                    ranker.run(None, inputs)
                spent[name].append((time.perf_counter() - started) * 1000 / len(instances))
        out[f"batch_{batch}"] = {name: float(np.median(ms)) for name, ms in spent.items()}
    return out


def measured_requests(engine, instances: list[dict]
                      ) -> tuple[dict[str, float], list[dict[str, np.ndarray]]]:
    """Prompt tokens and retrieval bytes per request, one playlist at a time, and the
    ranker's inputs for each."""
    import faiss

    hnsw, ivf = faiss.cvar.hnsw_stats, faiss.cvar.indexIVF_stats
    hnsw.reset()
    ivf.reset()
    prompts = ranker_feeds(engine, instances, batch=1)
    row_bytes = 4 * (engine.item_graph.shape[1] + engine.scorer.item_text.shape[1])
    if engine.index is None:
        read = len(engine.uris) * row_bytes
    elif engine.index.kind == "ivf":
        warm = engine.index.indexes["warm"]
        read = 4 * warm.d * (ivf.ndis + ivf.nq * warm.nlist) / len(instances)
    else:
        read = hnsw.ndis * row_bytes / len(instances)
    tokens = [feeds["input_ids"].size for feeds in prompts]
    return {"tokens_per_request": float(np.mean(tokens)) if tokens else 0.0,
            "retrieval_bytes_per_request": float(read)}, prompts


def load_engine(bundle_folder: Path, threads: int):
    """The serving engine on ``threads`` threads, with the int8 ranker."""
    from llarapp.serving.bundle import Bundle
    from llarapp.serving.engine import Engine

    return Engine(Bundle.load(bundle_folder, verify=False), "int8", threads=threads)


def ceilings(engine, threads: int, instances: list[dict]) -> dict[str, float]:
    """Work per request, the machine's rates, and the requests/s each would allow."""
    from llarapp.serving.bundle import RANKER

    bundle = engine.bundle
    out, prompts = measured_requests(engine, instances)
    llara = bundle.ranker_kind == "llara"
    out["ranker_gop_per_request"] = (ranker_ops(bundle.path(RANKER["fp32"]), prompts) / 1e9
                                     if llara else 0.0)
    out["int8_gemm_gops"] = int8_gemm_rate(threads) / 1e9
    out["read_gb_per_s"] = read_bandwidth() / 1e9
    out["ranker_ceiling_rps"] = (out["int8_gemm_gops"] / out["ranker_gop_per_request"]
                                 if llara else float("inf"))
    out["retrieval_ceiling_rps"] = out["read_gb_per_s"] * 1e9 / out[
        "retrieval_bytes_per_request"]
    out["threads"] = threads
    return out


def shares(throughput: float, limits: dict[str, float]) -> dict[str, float]:
    """The achieved share of each ceiling at ``throughput`` requests per second."""
    return {f"{name}_ceiling_share": throughput / limits[f"{name}_ceiling_rps"]
            for name in ("ranker", "retrieval")}


def ranker_profile(engine, threads: int, instances: list[dict], batch: int
                   ) -> dict[str, float]:
    """Milliseconds per request by onnxruntime operator type, ``batch`` playlists a call
    (the engine's ranker session is swapped for a profiling one, then put back)."""
    import onnxruntime as ort

    from llarapp.serving.bundle import RANKER

    bundle, serving_session = engine.bundle, engine.ranker.session
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ranker")
        profiling = ort.InferenceSession(str(bundle.path(RANKER["int8"])), options,
                                         providers=["CPUExecutionProvider"])
        engine.ranker.session = profiling
        try:
            ranker_feeds(engine, instances, batch)
        finally:
            engine.ranker.session = serving_session
        events = json.loads(Path(profiling.end_profiling()).read_text())
    spent: Counter[str] = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            spent[event["args"]["op_name"]] += event["dur"] / 1000 / len(instances)
    return dict(spent.most_common())


def main() -> None:
    from machine import describe, headline
    from serving import add_playlist_arguments, real_playlists

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    add_playlist_arguments(parser, 64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="")
    parser.add_argument("--against", type=Path, default=None,
                        help="another bundle whose int8 ranker to time on the same prompts")
    args = parser.parse_args()
    instances = real_playlists(args.data, args.history, args.playlists)
    engine = load_engine(args.bundle, args.threads)
    limits = ceilings(engine, args.threads, instances)
    profiles = {batch: ranker_profile(engine, args.threads, instances, batch)
                for batch in (1, 32)}
    machine = describe()
    lines = [f"# Ceilings of {args.bundle} on {args.threads} threads\n",
             f"Machine: {headline(machine)}.\n", "| measure | value |",
             "| --- | --- |", *(f"| {k} | {v:,.3f} |" for k, v in limits.items()), "",
             "## Ranker time by operator (ms per request)\n", "| operator | batch 1 | batch 32 |",
             "| --- | --- | --- |"]
    for op in profiles[1]:
        lines.append(f"| {op} | {profiles[1][op]:.3f} | {profiles[32].get(op, 0.0):.3f} |")
    lines.append(f"| total | {sum(profiles[1].values()):.3f} | {sum(profiles[32].values()):.3f} |")
    against = (ranker_against(engine, args.against, instances, args.threads)
               if args.against else {})
    if against:
        lines += ["", f"## Int8 ranker ms per request, interleaved: this bundle against "
                  f"{args.against}\n", "| batch | this | other | this / other |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {batch.split('_')[1]} | {ms['this']:.3f} | {ms['other']:.3f} | "
                  f"{ms['this'] / ms['other']:.3f} |" for batch, ms in against.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    stem = RESULTS / ("ceilings" + (f"-{args.tag}" if args.tag else ""))
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(
        {"bundle": str(args.bundle), "machine": machine, "ceilings": limits,
         "ranker_ms_by_op": profiles,
         "against": {"bundle": str(args.against), "ranker_ms": against} if against else None},
        indent=2))


if __name__ == "__main__":
    main()
