"""``llarapp llara``: domain pre-training, then curriculum prompt tuning with LoRA.

The artifact (kind ``llara``) holds ``backbone/`` (the base weights after domain
pre-training, or with ``finetune: full`` the tuned weights, and the tokenizer), ``adapter/``
(peft LoRA), ``projector.pt``, ``curriculum.csv`` (global step, p, hybrid?, loss),
``pretrain.csv`` and ``curves.png``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from llarapp.config import require
from llarapp.eval.plots import save_curves
from llarapp.llara.backbone import Backbone
from llarapp.llara.config import LlaraConfig, num_features
from llarapp.llara.curriculum import Curriculum
from llarapp.llara.examples import ExampleFactory, Sources
from llarapp.llara.lora import attach_lora
from llarapp.llara.model import FeatureHead, LlaraRanker
from llarapp.llara.pretrain import autocast, domain_pretrain, make_optimizer, playlist_documents
from llarapp.llara.prompts import Collator, Example, PromptBuilder
from llarapp.manifest import write_manifest
from llarapp.models.torch_utils import resolve_device, seed_everything
from llarapp.storage import atomic_dir

KIND = "llara"


def make_collator(backbone: Backbone, sources: Sources, cfg: LlaraConfig) -> Collator:
    builder = PromptBuilder(backbone.tokenizer, backbone.ids, sources.item_texts,
                            cfg.item_tokens, cfg.playlist_slot)
    return Collator(builder, sources.item_vectors, backbone.tokenizer.pad_token_id)


def listwise_loss(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """−log of the probability mass on the true candidates (cross-entropy with one)."""
    logits = logits.float()
    chosen = logits.masked_fill(~positives, float("-inf")).logsumexp(dim=1)
    return (logits.logsumexp(dim=1) - chosen).mean()


def train_ranker(ranker: LlaraRanker, examples: list[Example], collator: Collator,
                 cfg: LlaraConfig, device: torch.device) -> pd.DataFrame:
    """Curriculum prompt tuning over ``cfg.steps`` global steps (epochs cycle as needed)."""
    loader = DataLoader(examples, batch_size=cfg.batch_size, shuffle=True, drop_last=False,
                        collate_fn=collator, num_workers=cfg.num_workers,
                        generator=torch.Generator().manual_seed(cfg.seed))
    curriculum = Curriculum(cfg.schedule, cfg.steps, cfg.seed)
    params = [p for p in ranker.parameters() if p.requires_grad]
    optimizer, schedule = make_optimizer(params, cfg.lr, cfg.weight_decay, cfg.warmup_steps,
                                         cfg.steps)
    ranker.to(device).train()
    rows: list[dict[str, Any]] = []
    progress = tqdm(total=cfg.steps, desc=f"llara ({cfg.schedule})", unit="step")
    epoch = 0
    while len(rows) < cfg.steps:
        for batch in loader:
            step = len(rows)
            if step >= cfg.steps:
                break
            p, hybrid = curriculum.draw(step)
            batch = batch.to(device)
            with autocast(device, cfg.bf16):
                logits, aux = ranker(batch, hybrid, aux=True)
            answer_loss = listwise_loss(logits, batch.positives)
            aux_loss = listwise_loss(aux, batch.positives)
            loss = answer_loss + cfg.aux_weight * aux_loss if cfg.aux_weight else answer_loss
            optimizer.zero_grad(set_to_none=True)  # no grad → AdamW skips the projector
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            accuracy = float(batch.positives.gather(1, logits.argmax(dim=1, keepdim=True))
                             .float().mean())
            rows.append({"step": step, "epoch": epoch, "p_hybrid": p, "hybrid": int(hybrid),
                         "loss": answer_loss.item(), "aux_loss": aux_loss.item(),
                         "train_hr1": accuracy})
            progress.update(1)
            progress.set_postfix(loss=f"{rows[-1]['loss']:.3f}", p=f"{p:.2f}")
        epoch += 1
    progress.close()
    return pd.DataFrame(rows)


def build_ranker(cfg: LlaraConfig, sources: Sources, folder: Path | None, device: torch.device,
                 documents: list[str] | None = None
                 ) -> tuple[LlaraRanker, Collator, list[float]]:
    """Backbone (+ domain pre-training on ``documents``, by default the training playlists,
    saved to ``folder``), LoRA and the projector."""
    backbone = Backbone.load(cfg.backbone, cfg.tokenizer)
    losses: list[float] = []
    if cfg.domain_pretraining and cfg.pretrain_steps:
        if documents is None:
            documents = playlist_documents(sources.split.train, sources.titles,
                                           sources.item_texts)
        losses = domain_pretrain(backbone, documents, cfg.pretrain_steps, cfg.pretrain_batch_size,
                                 cfg.pretrain_max_length, cfg.domain_pretrain_lr, device, cfg.bf16,
                                 cfg.seed)
    if folder is not None:
        backbone.save(folder)
    if cfg.finetune == "lora":
        attach_lora(backbone, cfg)
    ranker = LlaraRanker(backbone, sources.item_vectors.shape[1], cfg.projector_hidden,
                         sources.graph_scale, cfg.slot_context,
                         num_features(cfg), cfg.label_pointer)
    return ranker, make_collator(backbone, sources, cfg), losses


def save_ranker(ranker: LlaraRanker, folder: Path) -> None:
    backbone = ranker.backbone
    if backbone.peft is not None:
        # backbone/ already holds the resized embeddings; the adapter keeps only the
        # trained rows of our special tokens (not a 100 MB copy of the embedding matrix)
        backbone.peft.save_pretrained(folder / "adapter", save_embedding_layers=False)
    else:
        backbone.save(folder)
    head = ranker.feature_head
    torch.save({"state": ranker.projector.state_dict(), "aux_head": ranker.aux_head.state_dict(),
                "pointer": ranker.pointer.state_dict() if ranker.pointer is not None else None,
                "graph_scale": ranker.graph_scale,
                "feature_head": head.state_dict() if head is not None else None},
               folder / "projector.pt")


def prefit_feature_head(head: FeatureHead | None, examples: list[Example], steps: int,
                        lr: float) -> list[float]:
    """Standardise the feature head's inputs by the training candidates, then fit the head
    alone (listwise, full batch) for ``steps`` and freeze it: the LM starts from the best
    order the features give and is trained on what they miss. With ``steps`` 0 the head
    stays trainable and learns with the LM. Returns the loss per step."""
    rows = [e for e in examples if e.features is not None]
    if head is None or not rows:
        return []
    features = torch.from_numpy(np.stack([e.features for e in rows])).float()
    positives = torch.from_numpy(np.stack([e.positive_mask() for e in rows]))
    head.fit_scale(features.flatten(0, 1))
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    losses = []
    for _ in tqdm(range(steps), desc="feature head", unit="step"):
        loss = listwise_loss(head(features), positives)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    head.requires_grad_(not steps)
    return losses


def run_llara(cfg: LlaraConfig, sources: Sources, output: str | os.PathLike[str]
                    ) -> dict[str, Any]:
    seed_everything(cfg.seed, deterministic=False)
    device = resolve_device(cfg.device)
    started = time.perf_counter()
    with atomic_dir(output) as folder:
        ranker, collator, pretrain_losses = build_ranker(cfg, sources, folder, device)
        factory = ExampleFactory(sources, cfg.num_candidates, cfg.history_len, cfg.seed)
        count, question_stats = cfg.steps * cfg.batch_size, {}
        if cfg.questions == "validation":
            examples, question_stats = factory.validation_training(count, cfg.hard_negatives,
                                                                   cfg.list_share)
        else:
            examples = factory.training(count, cfg.hard_negatives, cfg.hard_pool)
        require(bool(examples), "no training question: the split has no validation fit "
                "playlist with held-out tracks; use questions: training or a larger val split")
        head_losses = prefit_feature_head(ranker.feature_head, examples, cfg.head_prefit_steps,
                                          cfg.head_prefit_lr)
        history = train_ranker(ranker, examples, collator, cfg, device)
        save_ranker(ranker, folder)
        history.to_csv(folder / "curriculum.csv", index=False)
        pretrain = pd.DataFrame({"step": range(len(pretrain_losses)),
                                 "pretrain_loss": pretrain_losses})
        pretrain.to_csv(folder / "pretrain.csv", index=False)
        smooth = history.assign(loss=history["loss"].rolling(20, min_periods=1).mean(),
                                train_hr1=history["train_hr1"].rolling(20, min_periods=1).mean())
        save_curves(smooth, "step", ["p_hybrid", "loss", "train_hr1"], folder / "curves.png",
                    f"LLaRA {cfg.schedule} prompt tuning (loss, HR@1 over 20 steps)")
        trainable = sum(p.numel() for p in ranker.parameters() if p.requires_grad)
        summary = {"steps": len(history), "examples": len(examples), **question_stats,
                   **({"head_prefit_loss_first": head_losses[0],
                       "head_prefit_loss_last": head_losses[-1]} if head_losses else {}),
                   "final_loss": float(history["loss"].tail(20).mean()),
                   "hybrid_steps": int(history["hybrid"].sum()),
                   "trainable_parameters": int(trainable),
                   "seconds": round(time.perf_counter() - started, 1), "device": str(device)}
        mlflow_run = None
        if cfg.track:
            from llarapp.tracking import log_run

            mlflow_run = log_run(
                experiment=cfg.experiment, run_name=f"llara-{cfg.schedule}",
                params=cfg.to_dict() | {"device": str(device)},
                metrics={k: v for k, v in summary.items() if k != "device"} | {
                    "pretrain_final_loss": float(
                    np.mean(pretrain_losses[-20:])) if pretrain_losses else float("nan")},
                artifacts=[folder / "curves.png", folder / "curriculum.csv"],
                tags={"stage": "llara"}, tracking_uri=cfg.tracking_uri or None,
                history=pd.concat([history[["step", "p_hybrid", "loss", "train_hr1"]],
                                   pretrain]))
        return write_manifest(folder, KIND, 1, config=cfg.to_dict(),
                              backbone=ranker.backbone.source,
                              special_tokens=ranker.backbone.ids.all,
                              graph_dim=int(sources.item_vectors.shape[1]),
                              graph_scale=ranker.graph_scale, summary=summary, mlflow=mlflow_run,
                              split_dataset_hash=sources.split.manifest["dataset_hash"])
