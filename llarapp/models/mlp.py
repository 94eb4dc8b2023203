"""Two-layer MLPs (Linear → GELU → Linear) and one small trainer for all of them.

Used by the cold mapper (text → graph vectors), the tag classifier, and the same shape
as LLaRA's SR2LLM projector. Weights also export to numpy, so serving needs no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from llarapp.models.mlp_numpy import apply_numpy
from llarapp.models.torch_utils import seed_everything, state_copy

__all__ = ["apply_numpy", "fit_mlp", "mlp", "predict", "to_numpy_weights"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


def to_numpy_weights(model: nn.Sequential) -> dict[str, np.ndarray]:
    first, _, last = model
    return {"w1": first.weight.detach().cpu().numpy().T, "b1": first.bias.detach().cpu().numpy(),
            "w2": last.weight.detach().cpu().numpy().T, "b2": last.bias.detach().cpu().numpy()}


@dataclass
class FitConfig:
    hidden: int = 256
    epochs: int = 40
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 512
    seed: int = 0


@dataclass
class Fitted:
    model: nn.Sequential
    history: pd.DataFrame  # epoch, train_loss, val_loss
    best_epoch: int


def fit_mlp(x: np.ndarray, y: np.ndarray, val: np.ndarray, loss_fn: Loss, cfg: FitConfig,
            device: torch.device, desc: str) -> Fitted:
    """Train on rows ``~val``, keep the epoch with the lowest loss on rows ``val``."""
    generator = seed_everything(cfg.seed)
    model = mlp(x.shape[1], cfg.hidden, y.shape[1]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x_t, y_t = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    train_rows = torch.as_tensor(np.flatnonzero(~val))
    val_x, val_y = x_t[val].to(device), y_t[val].to(device)
    history, best, best_state = [], float("inf"), None
    for epoch in tqdm(range(1, cfg.epochs + 1), desc=desc, unit="epoch"):
        model.train()
        order = train_rows[torch.randperm(len(train_rows), generator=generator)]
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            rows = order[start:start + cfg.batch_size]
            loss = loss_fn(model(x_t[rows].to(device)), y_t[rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(val_x), val_y).item() if len(val_x) else float("nan")
        train_loss = total / max(len(order), 1)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        watched = val_loss if len(val_x) else train_loss
        if best_state is None or watched < best:
            best, best_epoch = watched, epoch
            best_state = state_copy(model)
    model.load_state_dict(best_state)
    return Fitted(model.eval(), pd.DataFrame(history), best_epoch)


@torch.no_grad()
def predict(model: nn.Sequential, x: np.ndarray, device: torch.device,
            batch_size: int = 8192) -> np.ndarray:
    outputs = [model(torch.as_tensor(x[s:s + batch_size], dtype=torch.float32, device=device))
               .cpu().numpy() for s in range(0, len(x), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, model[-1].out_features),
                                                              np.float32)
