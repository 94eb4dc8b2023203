"""LLaRA backbones on the same questions: the scratch Llama against pretrained SmolLM2-135M,
with and without domain adaptation, with the label pointer on and off.

Three commands, so training can run on a GPU machine that has neither the dev data nor the
retrieval stack (faiss, LightGBM, MLflow):

1. ``pack``, on a pipeline run's artifacts (``make run DATA=../shared/data/mpd-popular``):
   the ranker's training questions (as ``llarapp llara`` builds them), the protocol (a) test
   prompts with their segments and baseline scores, the protocol (b) test lists (the
   hybrid's top K with features and held-out targets), the domain-adaptation documents, and
   the catalogue rows (text, graph vector) any of them names: one compressed pickle of
   numpy and python values, plus the scratch model's tokenizer beside it.
2. ``run``, anywhere: every variant trains on the same examples and steps with the
   project's own trainer, then scores both protocols with the project's scoring and
   metrics code; also the ranker's latency at batch 1 and 8 on that device. Prints tables;
   writes benchmarks/results/llara-backbones[-TAG].json and a bar chart.
3. ``cpu-cost``: seconds per SmolLM2 training step on this machine by prompt setting.

    python benchmarks/llara_backbones.py pack [--run RUN] [--out .bench/backbones]
    python benchmarks/llara_backbones.py run [--pack .bench/backbones] [--variants ...]
        [--set pretrain_steps=300] [--tag gpu]
    python benchmarks/llara_backbones.py cpu-cost [--pack .bench/backbones]
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from machine import describe

from llarapp.config import parse_overrides
from llarapp.eval.plots import save_grid
from llarapp.llara.config import SMOLLM2, LlaraConfig
from llarapp.llara.eval_llara import candidate_table, llara_list_scorer, score_examples
from llarapp.llara.model import FeatureHead
from llarapp.llara.prompts import Example
from llarapp.llara.stage import build_ranker, listwise_loss, prefit_feature_head, train_ranker
from llarapp.models.torch_utils import resolve_device, seed_everything
from llarapp.rerank.features import FEATURES
from llarapp.rerank.lists import RetrievedLists, list_metrics

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
METRIC_K = 10
VARIANTS = {  # name → LlaraConfig overrides; the rest is the shared base
    "scratch": {"backbone": "scratch"},
    "smollm2": {"backbone": SMOLLM2, "pretrain": False, "label_pointer": False},
    "smollm2-pointer": {"backbone": SMOLLM2, "pretrain": False, "label_pointer": True},
    "smollm2-da": {"backbone": SMOLLM2, "pretrain": True, "label_pointer": False},
}


@dataclass
class PackedSources:
    """What training and scoring read from :class:`~llarapp.llara.examples.Sources`: the
    catalogue rows the pack names (others stay empty), the graph scale and the titles."""

    item_texts: list[str]
    item_vectors: np.ndarray
    graph_scale: float
    titles: dict[int, str]
    num_items: int


@dataclass
class Pack:
    config: dict
    sources: PackedSources
    train: list[Example]
    question_stats: dict
    protocol_a: list[Example]
    segments: dict[str, np.ndarray]
    baselines: dict[str, np.ndarray]
    lists: dict  # RetrievedLists fields; heldout as plain columns
    documents: list[str]
    retrieval_b: dict[str, float]

    def retrieved(self) -> RetrievedLists:
        fields = dict(self.lists)
        return RetrievedLists(pd.DataFrame(fields.pop("heldout")), **fields)


def named_items(examples: list[Example], lists: RetrievedLists, history_len: int) -> np.ndarray:
    ids = [np.r_[e.history, e.candidates] for e in examples]
    ids += [lists.candidates.ravel()]
    ids += [np.asarray(s, np.int64)[-history_len:] for s in lists.heldout["seeds"]]
    ids = np.concatenate([np.asarray(i, np.int64) for i in ids])
    return np.unique(ids[ids >= 0])


def build_pack(run: Path, overrides: dict, out: Path) -> None:
    from llara_ablations import ARTIFACTS  # benchmarks/ is the script's folder

    from llarapp.llara.eval_llara import LlaraEvalConfig, baseline_scores, segments_of
    from llarapp.llara.examples import ExampleFactory, Sources
    from llarapp.llara.pretrain import playlist_documents
    from llarapp.models.text_encoder import resolve_encoder
    from llarapp.rerank.lists import retrieved_lists

    sources = Sources.load(*(run / ARTIFACTS[k] for k in ARTIFACTS))
    cfg = LlaraConfig.from_dict({"track": False, **overrides})
    factory = ExampleFactory(sources, cfg.num_candidates, cfg.history_len, cfg.seed)
    train, stats = factory.validation_training(cfg.steps * cfg.batch_size, cfg.hard_negatives,
                                               cfg.list_share)
    heldout = sources.split.heldout_for("test")
    evaluation = ExampleFactory(sources, cfg.num_candidates, cfg.history_len,
                                LlaraEvalConfig.seed)
    protocol_a = evaluation.random_candidates(heldout)
    lists = retrieved_lists(sources, sources.catalogue_features, heldout, cfg.num_candidates,
                            desc="test lists")
    items = named_items(train + protocol_a, lists, cfg.history_len)
    texts = sources.item_texts
    pack = {"config": cfg.to_dict() | {"run": str(run)}, "num_items": sources.num_items,
            "items": items, "texts": [texts[i] for i in items],
            "vectors": sources.item_vectors[items], "graph_scale": sources.graph_scale,
            "titles": {int(p): str(sources.titles.get(p, "")) for p in lists.heldout["pid"]},
            "train": train, "question_stats": stats, "protocol_a": protocol_a,
            "segments": segments_of(sources, heldout, protocol_a),
            "baselines": baseline_scores(sources, protocol_a),
            "lists": {"heldout": {c: list(lists.heldout[c]) for c in ("pid", "seeds", "targets")},
                      "candidates": lists.candidates, "features": lists.features,
                      "labels": lists.labels, "graph_queries": lists.graph_queries},
            "documents": playlist_documents(sources.split.train, sources.titles, texts),
            "retrieval_b": list_metrics(lists, None, sources.num_items, METRIC_K)}
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(out / "pack.pkl.gz", "wb", compresslevel=6) as handle:
        pickle.dump(pack, handle, protocol=pickle.HIGHEST_PROTOCOL)
    from transformers import AutoTokenizer

    minilm = resolve_encoder(cfg.tokenizer)  # the scratch backbone's tokenizer travels too
    AutoTokenizer.from_pretrained(minilm).save_pretrained(out / "tokenizer")
    (out / "tokenizer" / "config.json").write_text((minilm / "config.json").read_text())
    print(f"packed {len(train)} training questions, {len(protocol_a)} protocol (a) prompts, "
          f"{len(lists)} protocol (b) lists, {len(items)} catalogue rows: "
          f"{(out / 'pack.pkl.gz').stat().st_size / 2**20:.1f} MiB in {out}")


def load_pack(folder: Path) -> Pack:
    with gzip.open(folder / "pack.pkl.gz", "rb") as handle:
        raw = pickle.load(handle)
    texts = [""] * raw["num_items"]
    for item, text in zip(raw["items"], raw["texts"], strict=True):
        texts[item] = text
    vectors = np.zeros((raw["num_items"], raw["vectors"].shape[1]), np.float32)
    vectors[raw["items"]] = raw["vectors"]
    sources = PackedSources(texts, vectors, raw["graph_scale"], raw["titles"], raw["num_items"])
    return Pack(raw["config"], sources, raw["train"], raw["question_stats"], raw["protocol_a"],
                raw["segments"], raw["baselines"], raw["lists"], raw["documents"],
                raw["retrieval_b"])


def latency_ms(ranker, collator, examples: list[Example], batch: int, device: torch.device,
               repeats: int) -> dict[str, float]:
    """p50 and p99 of one scoring call (prompt packing included) at ``batch`` prompts."""
    times = []
    for i in range(repeats + 3):
        chosen = [examples[(i * batch + j) % len(examples)] for j in range(batch)]
        started = time.perf_counter()
        score_examples(ranker, collator, chosen, True, batch, device, desc="latency")
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append((time.perf_counter() - started) * 1000)
    return {f"b{batch}_p50_ms": float(np.percentile(times, 50)),
            f"b{batch}_p99_ms": float(np.percentile(times, 99))}


def run_variant(name: str, base: dict, pack: Pack, device: torch.device, tokenizer: Path,
                repeats: int) -> dict:
    cfg = LlaraConfig.from_dict({**base, **VARIANTS[name], "track": False})
    if cfg.backbone == "scratch" and tokenizer.is_dir():
        cfg = cfg.replace(tokenizer=str(tokenizer))
    seed_everything(cfg.seed, deterministic=False)
    started = time.perf_counter()
    ranker, collator, da_losses = build_ranker(cfg, pack.sources, None, device, pack.documents)
    da_s = time.perf_counter() - started
    prefit_feature_head(ranker.feature_head, pack.train, cfg.head_prefit_steps,
                        cfg.head_prefit_lr)
    history = train_ranker(ranker, pack.train, collator, cfg, device)
    train_s = time.perf_counter() - started
    labels = np.array([e.label for e in pack.protocol_a])
    scores = score_examples(ranker, collator, pack.protocol_a, True, 64, device)
    table = candidate_table({name: scores}, labels, pack.segments)
    lists = pack.retrieved()
    reranked = llara_list_scorer(ranker, collator, pack.sources, cfg.history_len, True, 64,
                                 device)(lists, "test")
    after = list_metrics(lists, reranked, pack.sources.num_items, METRIC_K)
    ranker.merge_adapter()
    latency = {}
    for batch in (1, 8):
        latency |= latency_ms(ranker, collator, pack.protocol_a, batch, device, repeats)
    return {"variant": name, "backbone": cfg.backbone, "domain_adaptation": cfg.domain_pretraining,
            "label_pointer": cfg.label_pointer,
            "da_steps": len(da_losses), "da_loss_first": da_losses[0] if da_losses else None,
            "da_loss_last": float(np.mean(da_losses[-10:])) if da_losses else None,
            "da_s": round(da_s, 1), "steps": len(history), "examples": len(pack.train),
            "train_s": round(train_s, 1), "final_loss": float(history["loss"].tail(20).mean()),
            "table": table.to_dict(orient="records"),
            **{f"b_{k}": v for k, v in after.items()}, **latency, "da_losses": da_losses}


def machine(device: torch.device) -> dict:
    return {**describe(), "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}


def feature_head_alone(pack: Pack, base: dict) -> tuple[np.ndarray, dict[str, float]]:
    """Protocol (a) scores and protocol (b) metrics of the ranker's feature head alone,
    prefit as every variant's is: the order the LM is asked to improve on."""
    cfg = LlaraConfig.from_dict({**base, "track": False})
    seed_everything(cfg.seed, deterministic=False)
    head = FeatureHead(len(FEATURES), FEATURES.index("retrieval_rank"))
    prefit_feature_head(head, pack.train, cfg.head_prefit_steps, cfg.head_prefit_lr)
    lists = pack.retrieved()
    with torch.no_grad():
        scores = head(torch.from_numpy(np.stack([e.features for e in pack.protocol_a])))
        listed = head(torch.from_numpy(lists.features).float())
    return scores.numpy(), list_metrics(lists, listed.numpy(), pack.sources.num_items, METRIC_K)


def report(pack: Pack, results: list[dict], base: dict, device: torch.device, tag: str) -> None:
    labels = np.array([e.label for e in pack.protocol_a])
    head_scores, head_b = feature_head_alone(pack, base)
    rows = candidate_table(pack.baselines | {"feature head alone": head_scores}, labels,
                           pack.segments).to_dict(orient="records")
    for result in results:
        rows += result["table"]
    frame = pd.DataFrame(rows)
    print(f"\nProtocol (a): HR@1 over {pack.config['num_candidates']} candidates (target + "
          f"random), {len(labels)} test playlists\n")
    print(frame.pivot_table(index="model", columns="segment", values="hr@1", sort=False)
          .to_markdown(floatfmt=".4f"))
    summary = pd.DataFrame([{k: v for k, v in r.items() if k not in ("table", "da_losses")}
                            for r in results])
    print(f"\nProtocol (b): reranking the hybrid's top {pack.config['num_candidates']}; "
          f"NDCG@{METRIC_K} of retrieval alone {pack.retrieval_b[f'ndcg@{METRIC_K}']:.4f}, of "
          f"the feature head alone {head_b[f'ndcg@{METRIC_K}']:.4f}\n")
    print(summary.to_markdown(index=False, floatfmt=".4f"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "llara-backbones" + (f"-{tag}" if tag else "")
    save_grid(frame, "segment", "model", ["hr@1", "hr@5"], RESULTS / f"{stem}.png",
              "LLaRA backbones on the same candidates (protocol a)", bars=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({
        "pack_run": pack.config.get("run"), "config": base, "machine": machine(device),
        "question_stats": pack.question_stats, "retrieval_b": pack.retrieval_b,
        "feature_head_b": head_b,
        "protocol_a": rows, "variants": results}, indent=2, default=float))


def cpu_cost(pack: Pack, settings: list[tuple[int, int, int, int]], steps: int) -> None:
    """Seconds per SmolLM2 training step (LoRA) on this machine by (history, item tokens,
    candidates, batch)."""
    rows = []
    for history_len, item_tokens, candidates, batch in settings:
        cfg = LlaraConfig(backbone=SMOLLM2, pretrain=False, history_len=history_len,
                          item_tokens=item_tokens, num_candidates=candidates, batch_size=batch,
                          device="cpu", track=False)
        ranker, collator, _ = build_ranker(cfg, pack.sources, None, torch.device("cpu"))
        examples = [_cut(e, history_len, candidates) for e in pack.train[:batch * (steps + 1)]]
        params = [p for p in ranker.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr)
        ranker.train()
        times, tokens = [], 0
        for step in range(steps + 1):
            chosen = collator(examples[step * batch:(step + 1) * batch])
            started = time.perf_counter()
            loss = listwise_loss(ranker(chosen, True), chosen.positives)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step:
                times.append(time.perf_counter() - started)
            tokens = int(chosen.attention_mask.sum()) // batch
        row = {"history_len": history_len, "item_tokens": item_tokens,
               "num_candidates": candidates, "batch_size": batch, "tokens_per_prompt": tokens,
               "s_per_step": float(np.median(times)),
               "minutes_per_150_steps": float(np.median(times)) * 150 / 60}
        print(row)
        rows.append(row)
    frame = pd.DataFrame(rows)
    print(frame.to_markdown(index=False, floatfmt=".2f"))
    (RESULTS / "llara-backbones-cpu-cost.json").write_text(json.dumps(
        {"machine": machine(torch.device("cpu")), "rows": rows}, indent=2))


def _cut(example: Example, history_len: int, candidates: int) -> Example:
    """The example with its last ``history_len`` seeds and first ``candidates`` candidates
    (the label kept among them): the prompt length of that setting."""
    keep = np.r_[example.label, np.delete(np.arange(len(example.candidates)),
                                          example.label)[:candidates - 1]]
    keep.sort()
    positives = example.positive_mask()[keep]
    features = None if example.features is None else example.features[keep]
    return replace(example, history=example.history[-history_len:] if history_len else
                   example.history[:0], candidates=example.candidates[keep],
                   label=int(np.flatnonzero(keep == example.label)[0]), positives=positives,
                   features=features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["pack", "run", "cpu-cost"])
    parser.add_argument("--run", type=Path, default=None, help="pipeline run folder (pack)")
    parser.add_argument("--pack", "--out", dest="pack", type=Path,
                        default=REPO / ".bench" / "backbones")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--limit", type=int, default=0, help="questions per part (smoke runs)")
    parser.add_argument("--repeats", type=int, default=30, help="latency calls per batch size")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    overrides = parse_overrides(args.overrides)
    if args.command == "pack":
        from llara_ablations import latest_run

        build_pack(args.run or latest_run(), overrides, args.pack)
        return
    pack = load_pack(args.pack)
    if args.limit:
        pack = replace(pack, train=pack.train[:args.limit],
                       protocol_a=pack.protocol_a[:args.limit],
                       segments={k: v[:args.limit] for k, v in pack.segments.items()},
                       baselines={k: v[:args.limit] for k, v in pack.baselines.items()},
                       lists=_head(pack.lists, args.limit))
    if args.command == "cpu-cost":
        cpu_cost(pack, [(5, 4, 20, 16), (5, 4, 20, 4), (5, 2, 20, 8), (3, 2, 10, 8),
                        (3, 2, 10, 16)], steps=3)
        return
    base = {k: v for k, v in pack.config.items() if k not in (
        "backbone", "pretrain", "label_pointer", "run")} | overrides
    device = resolve_device(base.get("device", "auto"))
    results = [run_variant(name, base, pack, device, args.pack / "tokenizer", args.repeats)
               for name in args.variants]
    report(pack, results, base, device, args.tag)


def _head(lists: dict, n: int) -> dict:
    return {k: ({c: v[:n] for c, v in value.items()} if k == "heldout" else value[:n])
            for k, value in lists.items()}


if __name__ == "__main__":
    main()
