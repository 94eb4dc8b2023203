"""``llarapp export``: the LLaRA ranker and the text encoder to ONNX + QInt8, with a parity,
accuracy and latency report, written as one serving bundle (local folder or s3://).

Steps: export the merged ranker (fp32) and check ORT against torch; pre-process; build
each QInt8 variant; measure ΔHR@1 on validation prompts and latency at batch 8; choose;
report size, latency at every batch size and ΔHR@1 / ΔNDCG on the test split; export and
check the text encoder on real track texts; copy catalogue, vectors and weights; hash
every file into the manifest (written last).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from llarapp.data.texts import item_texts
from llarapp.errors import ArtifactError
from llarapp.export.config import ExportConfig
from llarapp.export.measure import Feeds, PromptSet, batch_of, latency_ms
from llarapp.export.quantize import preprocess, quantize
from llarapp.export.ranker import ExportableRanker, export_ranker, torch_scores
from llarapp.export.text import cosine_parity, export_text_encoder
from llarapp.llara.checkpoint import LlaraArtifact
from llarapp.llara.examples import ExampleFactory, Sources
from llarapp.llara.stage import make_collator
from llarapp.models.text_embed import TextEmbeddings
from llarapp.models.text_encoder import TextEncoder
from llarapp.serving import bundle as B
from llarapp.serving.runtime import first_output, session
from llarapp.serving.text import OnnxTextEncoder


def protocol_a(sources: Sources, cfg: ExportConfig, num_candidates: int, history_len: int,
               split: str):
    heldout = sources.split.heldout_for(split)
    if len(heldout) > cfg.eval_prompts:
        heldout = heldout.sample(cfg.eval_prompts, random_state=cfg.seed).reset_index(drop=True)
    factory = ExampleFactory(sources, num_candidates, history_len, cfg.seed)
    return factory.random_candidates(heldout)


PROMPT_BATCH = 32


class Exporter:
    def __init__(self, cfg: ExportConfig, model: LlaraArtifact, sources: Sources,
                 work: Path):
        self.cfg, self.sources, self.work = cfg, sources, work
        trained = model.config
        ranker = model.ranker()
        fused = cfg.attention == "fused"
        ranker.backbone.model.set_attn_implementation("eager" if fused else cfg.attention)
        self.backbone = ranker.backbone
        self.builder = make_collator(ranker.backbone, sources, trained).builder
        self.pad_id = int(ranker.backbone.tokenizer.pad_token_id)
        self.exportable = ExportableRanker(ranker, fused)
        self.threads = cfg.threads or None
        self.prompts = {split: PromptSet.pack(
            self.builder, protocol_a(sources, cfg, trained.num_candidates, trained.history_len,
                                     split), sources.item_vectors, self.pad_id, PROMPT_BATCH)
            for split in ("val", "test")}
        for split, prompts in self.prompts.items():
            if not prompts.examples:
                raise ArtifactError(f"the split has no {split} playlists to measure the "
                                    "quantized ranker on; re-run split with val/test playlists")

    def session(self, path: Path):
        return session(path, self.cfg.providers, self.threads)

    def export_fp32(self) -> tuple[Path, float]:
        test = self.prompts["test"]
        lengths = np.concatenate([b["attention_mask"].sum(axis=1) for b in test.batches])
        # a sample with padding, so the trace keeps the attention-mask path
        pair = [test.examples[int(np.argmin(lengths))], test.examples[int(np.argmax(lengths))]]
        sample = self.builder.pack(pair, self.sources.item_vectors, self.pad_id).onnx_inputs()
        path = export_ranker(self.exportable, sample, self.work / B.RANKER["fp32"],
                             self.cfg.opset)
        feeds = test.batches[0]
        diff = float(np.abs(first_output(self.session(path))(feeds)
                            - torch_scores(self.exportable, feeds)).max())
        if diff > self.cfg.parity_tolerance:
            raise ArtifactError(f"ORT fp32 ranker differs from torch by {diff:.2e} (> "
                                f"{self.cfg.parity_tolerance:g}); the export is wrong. Check "
                                f"the backbone's ops export at opset {self.cfg.opset}")
        return path, diff

    def accuracy(self, name: str, path: Path, run: Callable[[Feeds], np.ndarray]
                 ) -> dict[str, Any]:
        row: dict[str, Any] = {"model": name, "size_mb": path.stat().st_size / 1e6}
        for split, prompts in self.prompts.items():
            for metric, value in prompts.metrics(prompts.scores(run)).items():
                row[f"{split}_{metric}"] = value
        return row

    def latency(self, runs: dict[str, Callable[[Feeds], np.ndarray]]
                ) -> dict[str, dict[str, float]]:
        """{model: {latency_b<size>_ms: median, p99_b<size>_ms: p99}}, models
        interleaved per batch size."""
        out: dict[str, dict[str, float]] = {name: {} for name in runs}
        for size in self.cfg.latency_batches:
            feeds = batch_of(self.prompts["test"], self.builder, self.sources.item_vectors,
                             self.pad_id, size)
            for name, (p50, p99) in latency_ms(runs, feeds, self.cfg.latency_repeats).items():
                out[name] |= {f"latency_b{size}_ms": p50, f"p99_b{size}_ms": p99}
        return out

    def quantized(self, fp32: Path) -> tuple[list[dict[str, Any]], dict[str, Path]]:
        """One row per model (fp32 and each variant): size, accuracy, latency."""
        pre = preprocess(fp32, self.work / "ranker.pre.onnx")
        batches = self.prompts["val"].batches  # of PROMPT_BATCH validation prompts
        calibration = batches[:-(-self.cfg.calibration_prompts // PROMPT_BATCH)]
        paths = {"fp32": fp32}
        for variant in tqdm(self.cfg.variants, desc="quantize", unit="variant"):
            paths[variant] = quantize(variant, pre, self.work / f"ranker.{variant}.onnx",
                                      calibration, self.cfg.keep_head_fp32)
        runs = {name: first_output(self.session(path)) for name, path in paths.items()}
        rows = [self.accuracy(name, path, runs[name]) for name, path in paths.items()]
        latency = self.latency(runs)
        return [row | latency[row["model"]] for row in rows], paths


def text_parity(cfg: ExportConfig, text: TextEmbeddings, sources: Sources, work: Path,
                threads: int | None) -> tuple[Path, dict[str, float]]:
    """The int8 text encoder and its cosine to the text_embed stage's fp32 vectors."""
    settings = text.manifest["config"]
    # the configured name ("minilm", a folder, s3://) resolves on this machine; the recorded
    # encoder_path is where it lived on the machine that ran text_embed
    encoder = TextEncoder(settings["encoder"], "cpu", settings["max_length"])
    _, int8 = export_text_encoder(encoder, work, cfg.opset)
    texts = item_texts(sources.dataset.tracks, settings["lyrics"], settings["lyrics_chars"])
    rows = np.random.default_rng(cfg.seed).choice(
        len(texts), size=min(cfg.text_parity_texts, len(texts)), replace=False)
    served = OnnxTextEncoder(int8, work / "tokenizer" / "tokenizer.json",
                             settings["max_length"], cfg.providers, threads)
    parity = cosine_parity(text.items[rows], served.encode([texts[i] for i in rows]))
    if parity["mean_cosine"] < cfg.min_text_cosine:
        raise ArtifactError(f"the int8 text encoder's mean cosine to fp32 is "
                            f"{parity['mean_cosine']:.4f} < {cfg.min_text_cosine}; lower "
                            "min_text_cosine only if that loss is acceptable")
    return int8, parity
