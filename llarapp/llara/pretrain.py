"""Domain pre-training: a causal-LM pass over training playlists written as text,
"title: track by artist, track by artist, …" (the Spotify case's extended pre-training)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from llarapp.llara.backbone import Backbone


def playlist_documents(train: pd.DataFrame, titles: pd.Series, item_texts: list[str],
                       max_items: int = 40) -> list[str]:
    """One document per training playlist, its first ``max_items`` tracks in order."""
    ordered = train.sort_values(["pid", "pos"])
    docs = []
    for pid, items in ordered.groupby("pid", sort=False)["track_idx"]:
        tracks = ", ".join(item_texts[i] for i in items.to_numpy()[:max_items])
        docs.append(f"{titles.get(pid, '')}: {tracks}")
    return docs


def make_optimizer(params: list[torch.nn.Parameter], lr: float, weight_decay: float,
                   warmup: int, total: int) -> tuple[torch.optim.Optimizer, object]:
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, min(warmup, total // 2), total)


def autocast(device: torch.device, bf16: bool):
    enabled = bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def domain_pretrain(backbone: Backbone, documents: list[str], steps: int, batch_size: int,
                    max_length: int, lr: float, device: torch.device, bf16: bool, seed: int,
                    on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Train every backbone weight with next-token loss; return the loss per step."""
    model, tokenizer = backbone.model, backbone.tokenizer
    model.to(device).train()
    optimizer, schedule = make_optimizer(list(model.parameters()), lr, 0.0, steps // 10, steps)
    rng = np.random.default_rng(seed)
    losses = []
    for step in tqdm(range(steps), desc="domain pre-training", unit="step"):
        batch = [documents[i] for i in rng.integers(len(documents), size=batch_size)]
        enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        with autocast(device, bf16):
            loss = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                         labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    return losses
