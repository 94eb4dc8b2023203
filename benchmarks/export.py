"""Export benchmark: fp32 vs QInt8 rankers (size, ORT latency at batch 1/8/32, ΔHR@1 and
ΔNDCG on the test split) and the int8 text encoder's cosine, through the export stage
itself; plus ORT's int8 vs fp32 GEMM speed at the backbone's shapes, which bounds what
quantization can gain on this CPU.

Reads a pipeline run's upstream artifacts and a trained llara artifact (by default the
curriculum model of ``make bench-llara``). Prints tables; writes
benchmarks/results/export[-TAG].json, .md and .png.

    python benchmarks/export.py [--run RUN] [--llara .bench/llara/lora/curriculum]
        [--prompts 500] [--repeats 20] [--set attention=sdpa] [--tag sdpa]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from llara_ablations import ARTIFACTS, latest_run  # noqa: E402
from machine import describe  # noqa: E402

from llarapp.config import parse_overrides  # noqa: E402
from llarapp.export.config import ExportConfig  # noqa: E402
from llarapp.export.stage import run_export  # noqa: E402
from llarapp.llara.checkpoint import LlaraArtifact  # noqa: E402
from llarapp.llara.examples import Sources  # noqa: E402
from llarapp.models.text_embed import TextEmbeddings  # noqa: E402
from llarapp.serving.runtime import session  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def gemm_table(hidden: int, intermediate: int, rows: int, repeats: int) -> pd.DataFrame:
    """ORT MatMul fp32 vs dynamic QInt8 for (rows × K) @ (K × N) at the backbone's shapes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for k, n in ((hidden, hidden), (hidden, intermediate), (intermediate, hidden),
                     (1024, 1024)):
            weight = numpy_helper.from_array((rng.normal(size=(k, n)) * 0.05).astype(np.float32),
                                             "w")
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])], [weight])
            fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 8  # onnx 1.23 writes IR 14; onnxruntime 1.31 reads up to 13
            onnx.save(model, fp32)
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
            x = rng.normal(size=(rows, k)).astype(np.float32)
            times = {}
            for name, path in (("fp32", fp32), ("int8", int8)):
                sess = session(path)
                sess.run(None, {"x": x})
                calls = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    sess.run(None, {"x": x})
                    calls.append((time.perf_counter() - start) * 1e3)
                times[name] = float(np.median(calls))
            out.append({"K×N": f"{k}×{n}", "rows": rows, "fp32_ms": times["fp32"],
                        "int8_ms": times["int8"], "speedup": times["fp32"] / times["int8"]})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="pipeline run folder")
    parser.add_argument("--llara", type=Path, default=REPO / ".bench/llara/lora/curriculum")
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    backbone = json.loads((args.llara / "backbone" / "config.json").read_text())
    gemm = gemm_table(backbone["hidden_size"], backbone["intermediate_size"], 8 * 240, 100)
    run = args.run or latest_run()
    paths = {k: run / v for k, v in ARTIFACTS.items()}
    sources = Sources.load(**paths)
    cfg = ExportConfig.from_dict({"eval_prompts": args.prompts, "latency_repeats": args.repeats,
                                  "track": False} | parse_overrides(args.overrides))
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_export(cfg, LlaraArtifact.load(args.llara), sources,
                            TextEmbeddings.load(paths["text"]), Path(tmp) / "bundle")
        stem = "export" + (f"-{args.tag}" if args.tag else "")
        RESULTS.mkdir(parents=True, exist_ok=True)
        report = Path(tmp) / "bundle" / "report"
        shutil.copy(report / "quantization.png", RESULTS / f"{stem}.png")
        markdown = (report / "quantization.md").read_text()
    seconds = time.monotonic() - started
    table = pd.DataFrame(result["variants"])
    print(table.to_markdown(index=False, floatfmt=".4f"))
    print(f"chosen: {result['chosen']} ({result['why']})")
    print(json.dumps(result["summary"], indent=1))
    print(gemm.to_markdown(index=False, floatfmt=".3f"))
    (RESULTS / f"{stem}.md").write_text(
        markdown + "\n## ORT MatMul, fp32 vs dynamic QInt8 (batch 8 × ~240 tokens)\n\n"
        + gemm.to_markdown(index=False, floatfmt=".3f") + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps({
        "command": " ".join(sys.argv), "machine": describe(), "run": str(run),
        "llara": str(args.llara), "seconds": seconds, "config": cfg.to_dict(),
        "chosen": result["chosen"], "why": result["why"], "summary": result["summary"],
        "variants": result["variants"], "text_encoder": result["text_encoder"],
        "ranker_parity": result["ranker_parity"], "gemm": gemm.to_dict(orient="records")},
        indent=2, default=str))


if __name__ == "__main__":
    main()
