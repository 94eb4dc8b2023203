"""LLaRA ablations: text-only, direct hybrid, two-stage and curriculum prompt tuning,
against LightGCN and the hybrid retrieval on the same 20 candidates (protocol a), and
against retrieval alone and LambdaMART reranking the hybrid's top 20 (protocol b).

Reads the upstream artifacts of one pipeline run (``make run``, or ``make run
DATA=../shared/data/mpd-popular`` for the real dev data). Domain pre-training runs once;
every schedule starts from that backbone with the same seed, examples and steps.
Prints a table; writes benchmarks/results/llara-ablations[-TAG].json and a bar chart.

    python benchmarks/llara_ablations.py [--run runs/pipeline-root/<run>] [--steps 600]
        [--schedules curriculum text hybrid two_stage] [--set finetune=full] [--tag full]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import pandas as pd
import torch
from machine import describe

from llarapp.config import parse_overrides
from llarapp.eval.plots import save_grid
from llarapp.llara.backbone import SCRATCH_CONFIG, Backbone
from llarapp.llara.checkpoint import LlaraArtifact
from llarapp.llara.config import SCHEDULES, SCRATCH, LlaraConfig
from llarapp.llara.eval_llara import FEATURE_HEAD, LlaraEvalConfig, run_eval_llara
from llarapp.llara.examples import Sources
from llarapp.llara.pretrain import domain_pretrain, playlist_documents
from llarapp.llara.stage import run_llara
from llarapp.models.torch_utils import resolve_device, seed_everything

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# rows each schedule's model contributes (the rest are baselines, reported once)
OWN = {"llara": "llara-{schedule}", FEATURE_HEAD: "llara-{schedule} feature head alone"}


def row_name(model: str, schedule: str) -> str:
    return OWN.get(model, "{model}").format(schedule=schedule, model=model)


ARTIFACTS = {"dataset": "ingest/dataset", "split": "split/splits",
             "text": "text-embed/embeddings", "graph": "lightgcn/graph",
             "mapper": "cold-mapper/mapper", "retrieved": "retrieve/recommendations"}


def latest_run() -> Path:
    runs = sorted((REPO / "runs" / "pipeline-root").glob("*/retrieve"))
    if not runs:
        raise SystemExit("no pipeline run found; run `make run` first or pass --run")
    return runs[-1].parent


def backbone_tag(name: str) -> str:
    """The shared pre-training's cache name: for the scratch backbone, a hash of its spec,
    so a changed ``scratch_llama.json`` never reuses a pre-training of the old shape."""
    if name != SCRATCH:
        return hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"scratch-{hashlib.sha1(SCRATCH_CONFIG.read_bytes()).hexdigest()[:8]}"


def pretrained_backbone(cfg: LlaraConfig, sources: Sources, folder: Path) -> Path:
    if (folder / "backbone" / "config.json").is_file():
        return folder / "backbone"
    seed_everything(cfg.seed, deterministic=False)
    backbone = Backbone.load(cfg.backbone, cfg.tokenizer)
    docs = playlist_documents(sources.split.train, sources.titles, sources.item_texts)
    domain_pretrain(backbone, docs, cfg.pretrain_steps, cfg.pretrain_batch_size,
                    cfg.pretrain_max_length, cfg.domain_pretrain_lr, resolve_device(cfg.device),
                    cfg.bf16, cfg.seed)
    backbone.save(folder)
    return folder / "backbone"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="pipeline run folder")
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "llara")
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=SCHEDULES)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    run = args.run or latest_run()
    sources = Sources.load(*(run / ARTIFACTS[k] for k in ARTIFACTS))
    base = LlaraConfig.from_dict({"steps": args.steps, "track": False,
                                  **parse_overrides(args.overrides)})
    out = args.out / (args.tag or "default")
    backbone = pretrained_backbone(base, sources, args.out / (
        f"pretrained-{base.pretrain_steps}-{backbone_tag(base.backbone)}-{run.name}"))
    rows, reranked = [], []
    for schedule in args.schedules:
        cfg = base.replace(schedule=schedule, backbone=str(backbone), pretrain=False)
        started = time.perf_counter()
        manifest = run_llara(cfg, sources, out / schedule)
        seconds = time.perf_counter() - started
        result = run_eval_llara(LlaraEvalConfig(track=False, device=cfg.device),
                                LlaraArtifact.load(out / schedule), sources,
                                out / f"{schedule}-eval")
        table = pd.DataFrame(result["candidates"])
        for _, row in table.iterrows():
            if row["model"] in OWN or schedule == args.schedules[0]:
                name = row_name(row["model"], schedule)
                rows.append({"model": name, "segment": row["segment"], "hr@1": row["hr@1"],
                             "hr@5": row["hr@5"], "ndcg@20": row["ndcg@20"],
                             "train_s": round(seconds, 1) if row["model"] == "llara" else None,
                             **(result["position_bias"] | result["rerank"]
                                if row["model"] == "llara" else {})})
        for row in result["rankers"]["table"]:
            if row["ranker"] in OWN or schedule == args.schedules[0]:
                name = row_name(row["ranker"], schedule)
                reranked.append({"model": name, **{k: v for k, v in row.items()
                                                   if k != "ranker"}})
        graph_first = result["rankers"]["graph_first_share"]
        print(f"{schedule}: {manifest['summary']}; graph score ranks a positive first on "
              f"{manifest['summary'].get('graph_first_share', float('nan')):.3f} of training "
              f"questions, {graph_first['test']:.3f} of test lists")
    frame = pd.DataFrame(rows)
    wide = frame.pivot_table(index="model", columns="segment", values="hr@1", sort=False)
    print(f"\nHR@1 over {base.num_candidates} candidates (target + random), "
          f"{args.steps} steps, run {run.name}\n")
    print(wide.to_markdown(floatfmt=".4f"))
    rerank = pd.DataFrame(reranked)
    print(f"\nProtocol (b): reranking the hybrid's top {base.num_candidates}\n")
    print(rerank.to_markdown(index=False, floatfmt=".4f"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "llara-ablations" + (f"-{args.tag}" if args.tag else "")
    save_grid(frame, "segment", "model", ["hr@1", "hr@5"], RESULTS / f"{stem}.png",
              "LLaRA ablations vs LightGCN and hybrid (same candidates)", bars=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({
        "run": str(run), "steps": args.steps, "config": base.to_dict(),
        "machine": {**describe(), "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "rows": frame.to_dict(orient="records"),
        "protocol_b": rerank.to_dict(orient="records")}, indent=2, default=str))


if __name__ == "__main__":
    main()
