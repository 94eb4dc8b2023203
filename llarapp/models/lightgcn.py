"""The lightgcn stage: torch-geometric LightGCN on the playlist–track graph.

Nodes are the training playlists (first) and every catalogue track (after them); cold
tracks are isolated nodes. The propagation over the normalised adjacency, and why its
backward pass is the forward one, is in :mod:`llarapp.models.propagation`.

Training: an epoch makes as many draws as there are training edges, in batches
(:mod:`llarapp.models.edge_sampler`: a uniform playlist, then one of its tracks). Each step
propagates the whole graph once, as one autograd node whose backward pass is the same
propagation of the gradient (``Â`` is symmetric), and scores the batch's edges against
sampled warm negatives with :mod:`llarapp.models.ranking_loss` (BPR by default, or a sampled
softmax) plus the paper's L2 on the batch's layer-0 rows, then takes one Adam step; the
learning rate follows a cosine from ``lr`` to zero over ``epochs`` (or, with
``cosine_minutes``, over the ``max_minutes`` budget on the training clock). With
``contrast_weight`` > 0 the step propagates with noise and adds XSimGCL's cross-layer
InfoNCE (:mod:`llarapp.models.contrastive`). Three settings were
measured and left off (README "Results"): ``negative_candidates`` > 1 makes each BPR
negative the best-scored of that many uniform draws (dynamic hard negatives);
``init_std`` > 0 draws the layer-0 vectors from a normal, as the reference implementation
does, instead of PyG's Xavier; ``ema_decay`` > 0 validates and keeps an exponential average
of the weights (faster early, equal at the end of the schedule). Every ``val_every``
epochs a :class:`Validator` scores the snapshot (held-out playlists through fold-in, see
:mod:`llarapp.models.graph`); training stops after ``patience`` validations without a
better score, or at ``max_minutes``, and keeps the best validated epoch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch_geometric.nn.models import LightGCN
from tqdm import tqdm

from llarapp.config import StageConfig, require
from llarapp.data.dataset import Dataset, Split
from llarapp.eval.metrics import recall_at_k, relevance_matrix
from llarapp.eval.plots import save_curves
from llarapp.manifest import write_manifest
from llarapp.models.contrastive import contrastive_loss, noisy_propagate
from llarapp.models.edge_sampler import SAMPLINGS, EdgeSampler
from llarapp.models.graph import GraphVectors, fold_in_weights
from llarapp.models.node_order import NODE_ORDERS, NodeOrder
from llarapp.models.propagation import (
    BipartiteAdjacency,
    build_model,
    layer_embeddings,
    normalized_adjacency,
    propagate,
)
from llarapp.models.ranking_loss import (
    LOSSES,
    SIMILARITIES,
    add_layer0_l2,
    gathered_bpr,
    hardest_negatives,
    negative_shape,
    ranking_loss,
    serving_items,
)
from llarapp.models.recommendations import seed_matrix, top_n
from llarapp.models.torch_utils import DEVICES, resolve_device, seed_everything, state_copy
from llarapp.storage import atomic_dir

EpochCallback = Callable[[int, float], None]
LR_SCHEDULES = ("cosine", "cosine_minutes", "constant")


class TrainingClock:
    """Seconds spent training and validating; a caller's ``on_epoch`` work is paused out."""

    def __init__(self) -> None:
        self._banked, self._since = 0.0, None

    def start(self) -> None:
        self._since = time.perf_counter()

    def pause(self) -> None:
        self._banked, self._since = self.seconds, None

    @property
    def seconds(self) -> float:
        running = 0.0 if self._since is None else time.perf_counter() - self._since
        return self._banked + running


@dataclass
class LightGCNConfig(StageConfig):
    dim: int = 64
    layers: int = 3
    loss: str = "bpr"  # or "softmax" (see llarapp.models.ranking_loss)
    temperature: float = 0.1  # softmax only
    similarity: str = "dot"  # softmax only: "dot" or "cosine"
    negatives: int = 8  # bpr: per positive edge; softmax: shared by the batch (e.g. 1024)
    negative_candidates: int = 1  # bpr: each negative is the best-scored of this many (DNS)
    sampling: str = "playlist"  # or "edge" (see llarapp.models.edge_sampler)
    lr: float = 0.02
    lr_schedule: str = "cosine"  # to zero over `epochs`; cosine_minutes: over max_minutes
    init_std: float = 0.0  # > 0: normal(0, init_std) layer-0 vectors; 0: PyG's Xavier
    ema_decay: float = 0.0  # > 0: validate and keep an exponential average of the weights
    reg: float = 1e-4  # L2 on the batch's layer-0 embeddings, as in the paper
    contrast_weight: float = 0.0  # > 0: XSimGCL's cross-layer InfoNCE (models.contrastive)
    contrast_noise: float = 0.2  # ε, the norm of the noise added after each layer
    contrast_temperature: float = 0.2
    contrast_layer: int = 1  # the layer contrasted with the final embedding
    contrast_rows: int = 2048  # at most this many playlists and as many tracks per step
    batch_size: int = 16384  # each step propagates the whole graph: fewer, larger steps
    node_order: str = "rcm"  # or "none": the order nodes are stored in (models.node_order)
    epochs: int = 30
    val_every: int = 1  # validate every this many epochs
    patience: int = 3  # validations without a better score before stopping
    max_minutes: float = 0.0  # > 0: also stop once training has taken this long
    k: int = 100  # early stopping watches validation Recall@k
    val_playlists: int = 1000  # at most this many validation playlists are scored
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        for name in ("dim", "layers", "negatives", "negative_candidates", "batch_size",
                     "epochs", "val_every", "patience", "k", "val_playlists"):
            require(getattr(self, name) >= 1, f"{name} must be at least 1")
        require(self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}")
        require(self.temperature > 0, "temperature must be positive")
        require(self.negative_candidates == 1 or self.loss == "bpr",
                "negative_candidates > 1 (hard negatives) needs loss=bpr; set it to 1")
        require(self.similarity in SIMILARITIES,
                f"similarity must be one of {', '.join(SIMILARITIES)}")
        require(self.sampling in SAMPLINGS, f"sampling must be one of {', '.join(SAMPLINGS)}")
        require(self.node_order in NODE_ORDERS,
                f"node_order must be one of {', '.join(NODE_ORDERS)}")
        require(self.lr > 0, "lr must be positive")
        require(self.lr_schedule in LR_SCHEDULES,
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
        require(self.lr_schedule != "cosine_minutes" or self.max_minutes > 0,
                "lr_schedule=cosine_minutes anneals over the time budget: set max_minutes > 0, "
                "or use lr_schedule=cosine (over epochs)")
        require(self.reg >= 0, "reg must be >= 0")
        require(self.contrast_weight >= 0, "contrast_weight must be >= 0 (0: no contrastive term)")
        require(self.contrast_noise >= 0, "contrast_noise must be >= 0")
        require(self.contrast_temperature > 0, "contrast_temperature must be positive")
        require(1 <= self.contrast_layer <= self.layers,
                f"contrast_layer must be between 1 and layers ({self.layers})")
        require(self.contrast_rows >= 2, "contrast_rows must be at least 2")
        require(self.init_std >= 0, "init_std must be >= 0 (0: PyG's Xavier initialisation)")
        require(0 <= self.ema_decay < 1, "ema_decay must be in [0, 1) (0: no weight average)")
        require(self.max_minutes >= 0, "max_minutes must be >= 0 (0: no time limit)")
        require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}")


class Validator(Protocol):
    """Scores a snapshot for early stopping (higher is better; NaN: nothing to score)."""

    def score(self, vectors: GraphVectors, k: int) -> float: ...


@dataclass
class Validation:
    """Seeded validation playlists: early stopping scores their fold-in vectors."""

    seeds: list[np.ndarray]
    targets: list[np.ndarray]

    @classmethod
    def from_heldout(cls, heldout: pd.DataFrame, limit: int) -> Validation:
        seeded = heldout[heldout["num_seeds"] > 0].head(limit)
        return cls(list(seeded["seeds"]), list(seeded["targets"]))

    def score(self, vectors: GraphVectors, k: int) -> float:
        """Mean Recall@k of the fold-in recommendations, seeds excluded."""
        if not self.seeds:
            return float("nan")
        num_items = len(vectors.items)
        seeds = seed_matrix(pd.Series(self.seeds), num_items)
        recs = top_n(vectors.fold_in(seeds) @ vectors.items.T, seeds, k)
        relevance = relevance_matrix(self.targets, num_items)
        return float(np.nanmean(recall_at_k(recs, relevance, k)))


@dataclass
class TrainedGraph:
    """What training produced: the best epoch's vectors, weights and history."""

    vectors: GraphVectors
    alpha: np.ndarray
    state: dict[str, torch.Tensor]
    history: pd.DataFrame
    best_epoch: int
    best_recall: float
    seconds_per_epoch: float
    device: str
    extra: dict = field(default_factory=dict)


class LightGCNTrainer:
    """Owns the graph, the model and the optimiser for one training run."""

    def __init__(self, cfg: LightGCNConfig, train: pd.DataFrame, num_items: int):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.generator = seed_everything(cfg.seed)
        self.playlist_pids, rows = np.unique(train["pid"].to_numpy(), return_inverse=True)
        items = train["track_idx"].to_numpy().astype(np.int64)
        self.num_playlists, self.num_items = len(self.playlist_pids), num_items
        self.item_degree = np.bincount(items, minlength=num_items).astype(np.int64)
        # from here on, rows and items are training positions (see models.node_order)
        self.order = NodeOrder.build(cfg.node_order, rows, items, self.num_playlists, num_items)
        rows, items = self.order.to_training(rows, items)
        self.sampler = EdgeSampler(rows, items, self.num_playlists, cfg.sampling, self.generator)
        self.warm_items = torch.as_tensor(np.unique(items))
        self.adjacency = BipartiteAdjacency.from_adjacency(
            normalized_adjacency(rows, items, self.num_playlists, num_items),
            self.num_playlists).to(self.device)
        self.model = build_model(self.num_playlists + num_items, cfg.dim,
                                 cfg.layers).to(self.device)
        if cfg.init_std:
            torch.nn.init.normal_(self.model.embedding.weight, std=cfg.init_std)
        self.average = (torch.optim.swa_utils.AveragedModel(
            self.model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay))
            if cfg.ema_decay else None)
        # fused: one pass over the parameters per step instead of one per Adam operation
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, fused=True)
        # one buffer for every step's gathered BPR negatives (see ranking_loss.gathered_bpr)
        self.negative_rows = (torch.empty(cfg.batch_size * cfg.negatives, cfg.dim,
                                          device=self.device) if cfg.loss == "bpr" else None)
        self.clock = TrainingClock()
        self.scheduler = self._schedule()

    def _schedule(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        """Stepped once per batch. ``cosine_minutes`` reads the training clock, so the decay
        ends with the time budget however fast the machine runs that day."""
        cfg, schedulers = self.cfg, torch.optim.lr_scheduler
        if cfg.lr_schedule == "cosine":
            steps = cfg.epochs * self.sampler.steps_per_epoch(cfg.batch_size)
            return schedulers.CosineAnnealingLR(self.optimizer, steps)
        if cfg.lr_schedule == "cosine_minutes":
            budget = 60 * cfg.max_minutes
            return schedulers.LambdaLR(self.optimizer, lambda _: 0.5 * (
                1 + math.cos(math.pi * min(1.0, self.clock.seconds / budget))))
        return None

    def _batches(self):
        """(playlist rows, positive items, negative candidates) per step of one epoch; the
        candidates have a last axis of ``negative_candidates`` for BPR."""
        cfg = self.cfg
        for playlist, positive in self.sampler.epoch(cfg.batch_size):
            shape = negative_shape(cfg.loss, len(playlist), cfg.negatives)
            if cfg.loss == "bpr":
                shape = (*shape, cfg.negative_candidates)
            picks = torch.randint(len(self.warm_items), shape, generator=self.generator)
            yield (t.to(self.device) for t in (playlist, positive, self.warm_items[picks]))

    def train_epoch(self, max_steps: int | None = None) -> float:
        """One pass over the training edges (or its first ``max_steps`` batches); mean loss."""
        cfg, split = self.cfg, self.num_playlists
        self.model.train()
        total, count = 0.0, 0
        for step, (playlist, positive, candidates) in enumerate(self._batches()):
            if max_steps is not None and step >= max_steps:
                break
            if cfg.contrast_weight:
                final, layer = noisy_propagate(
                    self.model.embedding.weight, tuple(self.model.alpha.tolist()),
                    self.adjacency, cfg.contrast_noise, cfg.contrast_layer, self.generator)
            else:
                final = propagate(self.model, self.adjacency)
            negative = (hardest_negatives(final, playlist, candidates, split)
                        if cfg.loss == "bpr" else candidates)
            rows = torch.cat([playlist, split + positive, split + negative.flatten()])
            if cfg.loss == "bpr":
                loss = gathered_bpr(final, playlist, split + positive, split + negative,
                                    self.negative_rows)
            else:
                # One gather per matrix: each gather's backward zero-fills a buffer the size
                # of the whole graph. index_select's backward is an index_add, 2.6x cheaper
                # on the CPU than indexing's index_put.
                user, pos, neg = final.index_select(0, rows).split(
                    (len(playlist), len(positive), negative.numel()))
                loss = ranking_loss(cfg.loss, user, pos, neg.reshape(*negative.shape, -1),
                                    cfg.temperature, cfg.similarity)
            if cfg.contrast_weight:
                loss = loss + cfg.contrast_weight * contrastive_loss(
                    final, layer, (playlist, split + positive), cfg.contrast_temperature,
                    cfg.contrast_rows, self.generator)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.reg:
                loss = loss.detach() + add_layer0_l2(self.model.embedding.weight, rows,
                                                     len(playlist), cfg.reg)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            if self.average is not None:
                self.average.update_parameters(self.model)
            total, count = total + loss.item() * len(playlist), count + len(playlist)
        return total / max(count, 1)

    @property
    def similarity(self) -> str:
        return self.cfg.similarity if self.cfg.loss == "softmax" else "dot"

    @property
    def scored_model(self) -> LightGCN:
        """What is validated and kept: the weights, or their average (``ema_decay``)."""
        return self.model if self.average is None else self.average.module

    @torch.no_grad()
    def snapshot(self) -> GraphVectors:
        model = self.scored_model
        model.eval()
        layers = [self.order.to_canonical(x).float().cpu()
                  for x in layer_embeddings(model, self.adjacency)]
        alpha = model.alpha.cpu()
        final = sum(a * x for a, x in zip(alpha, layers, strict=True))
        split = self.num_playlists
        return GraphVectors(
            playlist_pids=self.playlist_pids, playlists=final[:split].numpy(),
            items=serving_items(self.similarity, final[split:]).numpy(),
            fold_in_weights=fold_in_weights([x[split:].numpy() for x in layers],
                                            alpha.numpy(), self.item_degree),
            item_degree=self.item_degree)

    def fit(self, validation: Validator, on_epoch: EpochCallback | None = None
            ) -> TrainedGraph:
        cfg = self.cfg
        history, best, best_state, best_epoch, stale = [], -math.inf, None, 0, 0
        started, clock = time.perf_counter(), self.clock
        clock.start()
        bar = tqdm(range(1, cfg.epochs + 1), desc="lightgcn", unit="epoch")
        for epoch in bar:
            tick = time.perf_counter()
            loss = self.train_epoch()
            seconds = time.perf_counter() - tick
            out_of_time = bool(cfg.max_minutes) and clock.seconds >= 60 * cfg.max_minutes
            last = epoch == cfg.epochs or out_of_time
            row = {"epoch": epoch, "loss": loss, f"val_recall@{cfg.k}": math.nan,
                   "seconds": seconds}
            history.append(row)
            if epoch % cfg.val_every and not last:
                row["elapsed"] = clock.seconds
                continue
            vectors = self.snapshot()
            recall = row[f"val_recall@{cfg.k}"] = validation.score(vectors, cfg.k)
            row["elapsed"] = clock.seconds  # training and validation time
            bar.set_postfix(loss=f"{loss:.4f}", recall=f"{recall:.4f}")
            if on_epoch is not None:
                # a caller's own work (extra scoring, say) does not count against max_minutes
                clock.pause()
                on_epoch(epoch, recall)  # may raise (e.g. optuna.TrialPruned)
                clock.start()
            # Without seeded validation playlists (NaN) every validation counts as the best.
            if best_state is None or math.isnan(recall) or recall > best:
                best, best_epoch, stale = recall, epoch, 0
                best_state, best_vectors = state_copy(self.scored_model), vectors
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
            if out_of_time:
                break
        bar.close()
        clock.pause()
        self.model.load_state_dict(best_state)
        frame = pd.DataFrame(history)
        return TrainedGraph(
            vectors=best_vectors, alpha=self.model.alpha.cpu().numpy(),
            state={**best_state, "embedding.weight":
                   self.order.to_canonical(best_state["embedding.weight"])},
            history=frame, best_epoch=best_epoch, best_recall=float(best),
            seconds_per_epoch=float(frame["seconds"].mean()), device=str(self.device),
            extra={"train_seconds": time.perf_counter() - started})


def save_graph(result: TrainedGraph, cfg: LightGCNConfig, output: str | os.PathLike[str],
               **manifest: Any) -> dict[str, Any]:
    with atomic_dir(output) as folder:
        result.vectors.save(folder)
        torch.save(result.state, folder / "model.pt")
        result.history.to_csv(folder / "history.csv", index=False)
        save_curves(result.history, "epoch", ["loss", f"val_recall@{cfg.k}", "seconds"],
                    folder / "curves.png", "LightGCN training")
        return write_manifest(
            folder, "lightgcn", 1, config=cfg.to_dict(), dim=cfg.dim, layers=cfg.layers,
            alpha=result.alpha.tolist(), best_epoch=result.best_epoch,
            epochs_run=len(result.history), best_val_recall=result.best_recall,
            seconds_per_epoch=result.seconds_per_epoch, device=result.device,
            counts={"playlists": len(result.vectors.playlist_pids),
                    "items": len(result.vectors.items),
                    "warm_items": int(result.vectors.warm.sum()),
                    "edges": int(result.vectors.item_degree.sum())},
            **result.extra, **manifest)


def run_lightgcn(cfg: LightGCNConfig, dataset: Dataset, split: Split,
                 output: str | os.PathLike[str]) -> dict[str, Any]:
    trainer = LightGCNTrainer(cfg, split.train, dataset.num_tracks)
    result = trainer.fit(Validation.from_heldout(split.heldout_for("val"), cfg.val_playlists))
    return save_graph(result, cfg, output, dataset_hash=dataset.manifest["content_hash"])
