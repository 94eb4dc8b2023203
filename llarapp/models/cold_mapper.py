"""The cold_mapper stage: text → graph-space MLPs, and text-predicted tags.

* Item mapper: a warm track's text embedding → its LightGCN vector. Cold tracks (no
  training interactions) get their graph vector from it, so graph scoring covers the
  whole catalogue.
* Title query for title-only playlists, either ``knn`` (default: the weighted mean of
  the LightGCN vectors of the training playlists with the most similar titles, see
  :class:`~llarapp.models.graph.TitleNeighbours`) or ``mlp`` (a regression from the title
  embedding to the playlist vector). Both are fitted; the manifest compares them on
  held-out training playlists.
* Tags (:mod:`llarapp.models.tags`) are predicted for every track and stored in
  ``catalogue.parquet``, which later explains recommendations.

Both mappers regress with MSE and keep the epoch with the lowest loss on a held-out
slice of their training rows; the same held-out warm tracks score the tag classifier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import cached_property, partial
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from llarapp.config import StageConfig, require
from llarapp.data.dataset import Dataset, Split, StageArtifact
from llarapp.eval.plots import save_bars, save_curves
from llarapp.manifest import write_manifest
from llarapp.models.graph import GraphVectors, TitleNeighbours
from llarapp.models.mlp import FitConfig, Fitted, apply_numpy, fit_mlp, predict, to_numpy_weights
from llarapp.models.tags import fit_tagger, top_tags, weak_labels
from llarapp.models.text_embed import TextEmbeddings
from llarapp.models.torch_utils import DEVICES, resolve_device
from llarapp.storage import atomic_dir

CATALOGUE_COLUMNS = ["track_idx", "track_uri", "track_name", "artist_name", "album_name"]


@dataclass
class ColdMapperConfig(StageConfig, FitConfig):
    """FitConfig's fields (hidden, epochs, lr, weight_decay, batch_size, seed) train both
    mappers and the tagger; fewer epochs than FitConfig's default suffice here."""

    epochs: int = 30
    holdout_fraction: float = 0.1
    tag_vocab: int = 40
    tag_min_share: float = 0.3
    tag_min_count: int = 1
    tag_threshold: float = 0.5
    tags_per_track: int = 3
    title_query: str = "knn"  # or "mlp"
    title_neighbours: int = 100
    title_temperature: float = 0.1
    device: str = "auto"

    def validate(self) -> None:
        for name in ("hidden", "epochs", "batch_size", "tag_vocab", "tag_min_count",
                     "tags_per_track"):
            require(getattr(self, name) >= 1, f"{name} must be at least 1")
        require(0 < self.holdout_fraction < 0.5, "holdout_fraction must be in (0, 0.5)")
        require(0 < self.tag_min_share <= 1, "tag_min_share must be in (0, 1]")
        require(0 < self.tag_threshold < 1, "tag_threshold must be in (0, 1)")
        require(self.lr > 0, "lr must be positive")
        require(self.title_query in ("knn", "mlp"), "title_query must be knn or mlp")
        require(self.title_neighbours >= 1 and self.title_temperature > 0,
                "title_neighbours must be >= 1 and title_temperature > 0")
        require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}")

    def fit_config(self, seed_offset: int) -> FitConfig:
        values = {f.name: getattr(self, f.name) for f in fields(FitConfig)}
        return FitConfig(**{**values, "seed": self.seed + seed_offset})


def holdout_mask(count: int, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random(count) < fraction


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12))) if len(a) else 0.0


@dataclass
class Mappers:
    item: Fitted
    title: Fitted
    title_knn: TitleNeighbours
    title_query: str
    holdout_cosine: dict[str, float]

    def title_vectors(self, title_embeddings: np.ndarray, device: torch.device) -> np.ndarray:
        if self.title_query == "knn":
            return self.title_knn.query(title_embeddings)
        return predict(self.title.model, title_embeddings, device)


def fit_mappers(cfg: ColdMapperConfig, text: TextEmbeddings, graph: GraphVectors,
                item_holdout: np.ndarray, device: torch.device) -> Mappers:
    warm = np.flatnonzero(graph.warm)
    item = fit_mlp(text.items[warm], graph.items[warm], item_holdout[warm], F.mse_loss,
                   cfg.fit_config(0), device, desc="item mapper")
    titles, targets = text.titles(graph.playlist_pids), graph.playlists
    title_holdout = holdout_mask(len(targets), cfg.holdout_fraction, cfg.seed + 1)
    title = fit_mlp(titles, targets, title_holdout, F.mse_loss, cfg.fit_config(1), device,
                    desc="title mapper")
    knn = partial(TitleNeighbours, k=cfg.title_neighbours, temperature=cfg.title_temperature)
    knn_without_holdout = knn(titles[~title_holdout], targets[~title_holdout])
    item_val = warm[item_holdout[warm]]
    held_titles, held_targets = titles[title_holdout], targets[title_holdout]
    return Mappers(item, title, knn(titles, targets), cfg.title_query, {
        "item_mlp": mean_cosine(predict(item.model, text.items[item_val], device),
                                graph.items[item_val]),
        "title_mlp": mean_cosine(predict(title.model, held_titles, device), held_targets),
        "title_knn": mean_cosine(knn_without_holdout.query(held_titles), held_targets)})


def graph_vectors_for_all(mappers: Mappers, text: TextEmbeddings, graph: GraphVectors,
                          device: torch.device) -> np.ndarray:
    """LightGCN vectors for warm tracks, the item mapper's for cold ones."""
    item_graph = graph.items.copy()
    cold = ~graph.warm
    item_graph[cold] = predict(mappers.item.model, text.items[cold], device)
    return item_graph


@dataclass
class ColdMapper(StageArtifact):
    """The cold_mapper artifact: graph vectors for every track, mappers, the catalogue."""

    KIND: ClassVar[str] = "cold-mapper"

    @cached_property
    def item_graph(self) -> np.ndarray:
        """LightGCN vectors for warm tracks, mapped text vectors for cold ones."""
        return np.load(self.folder / "item_graph.npy")

    @cached_property
    def title_weights(self) -> dict[str, np.ndarray]:
        return dict(np.load(self.folder / "title_mapper.npz"))

    @cached_property
    def title_knn(self) -> TitleNeighbours:
        cfg = self.manifest["config"]
        return TitleNeighbours(np.load(self.folder / "title_index.npy"),
                               np.load(self.folder / "title_targets.npy"),
                               cfg["title_neighbours"], cfg["title_temperature"])

    @cached_property
    def catalogue(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "catalogue.parquet")

    def title_vectors(self, title_embeddings: np.ndarray) -> np.ndarray:
        """Graph queries for title-only playlists (the configured ``title_query``)."""
        if self.manifest["config"]["title_query"] == "knn":
            return self.title_knn.query(title_embeddings)
        return apply_numpy(self.title_weights, title_embeddings)


def run_cold_mapper(cfg: ColdMapperConfig, dataset: Dataset, split: Split,
                    text: TextEmbeddings, graph: GraphVectors,
                    output: str | os.PathLike[str]) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    item_holdout = holdout_mask(dataset.num_tracks, cfg.holdout_fraction, cfg.seed)
    mappers = fit_mappers(cfg, text, graph, item_holdout, device)
    item_graph = graph_vectors_for_all(mappers, text, graph, device)

    names = dataset.playlists.set_index("pid")["name"]
    weak = weak_labels(split.train, names, dataset.num_tracks, cfg.tag_vocab,
                       cfg.tag_min_share, cfg.tag_min_count)
    tagger = fit_tagger(text.items, weak, item_holdout, cfg.tag_threshold, cfg.fit_config(2),
                        device)
    probs = tagger.probabilities(text.items, device)
    catalogue = dataset.tracks[CATALOGUE_COLUMNS].copy()
    catalogue["warm"] = graph.warm
    catalogue["tags"], catalogue["tag_scores"] = top_tags(probs, tagger.vocab,
                                                          cfg.tag_threshold, cfg.tags_per_track)
    report = tagger.report
    with atomic_dir(output) as folder:
        np.save(folder / "item_graph.npy", item_graph)
        np.save(folder / "title_index.npy", mappers.title_knn.titles)
        np.save(folder / "title_targets.npy", mappers.title_knn.vectors)
        for name, fitted in (("item_mapper", mappers.item), ("title_mapper", mappers.title),
                             ("tagger", tagger.fitted)):
            torch.save(fitted.model.state_dict(), folder / f"{name}.pt")
            np.savez(folder / f"{name}.npz", **to_numpy_weights(fitted.model))
            fitted.history.to_csv(folder / f"{name}_history.csv", index=False)
        save_curves(mappers.item.history, "epoch", ["train_loss", "val_loss"],
                    folder / "item_mapper_curves.png", "item mapper (MSE)")
        catalogue.to_parquet(folder / "catalogue.parquet", index=False)
        report.to_csv(folder / "tag_report.csv", index=False)
        (folder / "tag_report.md").write_text(
            "# Tag precision on held-out warm tracks\n\n"
            + report.to_markdown(index=False, floatfmt=".3f") + "\n")
        if report["precision"].notna().any():
            save_bars(report.set_index("tag")["precision"].dropna(), folder / "tag_precision.png",
                      "tag precision (held-out warm tracks)", "precision")
        return write_manifest(
            folder, "cold-mapper", 1, config=cfg.to_dict(), device=str(device),
            graph_dim=int(graph.items.shape[1]), text_dim=text.dim,
            item_mapper={"best_epoch": mappers.item.best_epoch},
            title_mapper={"best_epoch": mappers.title.best_epoch},
            title_query=cfg.title_query, holdout_cosine=mappers.holdout_cosine,
            tags={"vocab": tagger.vocab, "threshold": cfg.tag_threshold,
                  "mean_precision": float(report["precision"].mean()),
                  "tracks_tagged": int(catalogue["tags"].map(len).gt(0).sum())},
            counts={"items": len(item_graph), "cold_items": int((~graph.warm).sum())})
