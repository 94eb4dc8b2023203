"""Ranking questions for training and evaluation, built from the upstream artifacts.

* Training (``questions: validation``, the default): questions the graph model never saw,
  as at serving: the validation ``fit`` playlists and their prefix questions
  (:mod:`llarapp.rerank.lists`). A share ``list_share`` of the examples is the hybrid's
  top K in retrieval order, every held-out track in it a positive (protocol (b) as
  served); the rest are a held-out track, ``hard_negatives`` from that top K and uniform
  random tracks, shuffled (protocol (a)).
* Training (``questions: training``, the LLaRA paper's way): next-track rows of training
  playlists, whose edges LightGCN trained on, so the graph score over-ranks the target;
  candidates are the next track, hard negatives from the top ``hard_pool`` and random
  tracks.
* Evaluation, protocol (a), LLaRA's: the first held-out track of each test playlist plus
  ``K-1`` uniform random negatives. Protocol (b) lists live in :mod:`llarapp.rerank.lists`.

Every example carries its candidates' features (:mod:`llarapp.rerank.features`), the
shuffled protocol (a) sets included: the rank and scores the hybrid gives those
candidates, as the served ranker sees them.

The playlist vector (for the playlist slot) is the hybrid retrieval's graph query: the
LightGCN fold-in of the history, or the title query when no seed is warm.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from llarapp.config import require
from llarapp.data.dataset import Dataset, Split
from llarapp.llara.layout import track_by_artist
from llarapp.llara.prompts import Example
from llarapp.manifest import read_manifest
from llarapp.models.cold_mapper import ColdMapper
from llarapp.models.graph import GraphEmbeddings, GraphVectors
from llarapp.models.hybrid import HybridScorer
from llarapp.models.recommendations import top_n
from llarapp.models.text_embed import TextEmbeddings
from llarapp.rerank.features import CatalogueFeatures
from llarapp.rerank.lists import fit_questions, graph_first_share, retrieved_lists, scored_batches


@dataclass
class Sources:
    """The upstream artifacts LLaRA reads, and the hybrid's tuned (λ, β) per query type."""

    dataset: Dataset
    split: Split
    text: TextEmbeddings
    graph: GraphVectors
    mapper: ColdMapper
    hybrid_params: dict[str, dict[str, float]]

    @classmethod
    def load(cls, dataset: str | os.PathLike[str], split: str | os.PathLike[str],
             text: str | os.PathLike[str], graph: str | os.PathLike[str],
             mapper: str | os.PathLike[str], retrieved: str | os.PathLike[str]) -> Sources:
        """From artifact folders; ``retrieved`` (the retrieve stage) gives the tuned (λ, β)."""
        params = read_manifest(retrieved, "recommendations").get("hybrid_params")
        require(bool(params), f"{retrieved} has no hybrid_params; pass the retrieve stage's "
                "output, not the baselines'")
        return cls(Dataset.load(dataset), Split.load(split), TextEmbeddings.load(text),
                   GraphEmbeddings.load(graph).vectors, ColdMapper.load(mapper), params)

    @cached_property
    def scorer(self) -> HybridScorer:
        return HybridScorer.from_artifacts(self.text, self.graph, self.mapper)

    @cached_property
    def item_texts(self) -> list[str]:
        return track_by_artist(self.dataset.tracks)

    @cached_property
    def item_vectors(self) -> np.ndarray:
        """Graph vector of every track; cold ones come from the cold mapper."""
        return self.mapper.item_graph.astype(np.float32)

    @cached_property
    def graph_scale(self) -> float:
        """Per-coordinate RMS of the catalogue's graph vectors (the projector's input unit)."""
        return float(np.sqrt(np.mean(np.square(self.item_vectors)))) or 1.0

    @cached_property
    def titles(self) -> pd.Series:
        playlists = self.dataset.playlists
        return pd.Series(playlists["name"].fillna("").to_numpy(), index=playlists["pid"])

    @property
    def num_items(self) -> int:
        return self.dataset.num_tracks

    @cached_property
    def catalogue_features(self) -> CatalogueFeatures:
        """Degree, artist, album and co-occurrence tables from the training edges only."""
        return CatalogueFeatures.from_split(self.dataset.tracks, self.split.train)


class ExampleFactory:
    def __init__(self, sources: Sources, num_candidates: int, history_len: int, seed: int):
        self.sources = sources
        self.num_candidates = num_candidates
        self.history_len = history_len
        self.rng = np.random.default_rng(seed)

    def random_negatives(self, exclude: np.ndarray, count: int) -> np.ndarray:
        """``count`` distinct uniform tracks outside ``exclude``."""
        taken = set(exclude.tolist())
        out: list[int] = []
        while len(out) < count:
            for item in self.rng.integers(self.sources.num_items, size=2 * count).tolist():
                if item not in taken:
                    taken.add(item)
                    out.append(item)
                    if len(out) == count:
                        break
        return np.asarray(out, dtype=np.int64)

    def shuffled(self, target: int, negatives: np.ndarray) -> tuple[np.ndarray, int]:
        """The target and negatives in random order, and the target's index."""
        candidates = np.r_[target, negatives].astype(np.int64)
        order = self.rng.permutation(len(candidates))
        return candidates[order], int(np.argmax(order == 0))

    def with_features(self, questions: pd.DataFrame, sets: list[tuple[np.ndarray, int]],
                      desc: str) -> list[Example]:
        """Examples of these (candidates, label) per question, with the features and the
        graph query the hybrid retrieval gives them (protocol (a) candidates included)."""
        if not sets:
            return []
        sources, candidates = self.sources, np.stack([c for c, _ in sets])
        examples = []
        for scored in scored_batches(sources, questions, desc=desc):
            rows = slice(scored.offset, scored.offset + len(scored.heldout))
            features = scored.features(sources.catalogue_features, candidates[rows])
            for i, pid in enumerate(scored.heldout["pid"]):
                own, label = sets[scored.offset + i]
                examples.append(Example(str(sources.titles.get(pid, "")),
                                        scored.seeds[i][-self.history_len:], own, label,
                                        scored.graph_queries[i], features=features[i]))
        return examples

    def training(self, count: int, hard_negatives: int, hard_pool: int) -> list[Example]:
        rows = self.sources.split.next_track
        rows = rows[rows["split"] == "train"]
        rows = rows.iloc[self.rng.choice(len(rows), size=min(count, len(rows)), replace=False)]
        rows = rows.rename(columns={"history": "seeds"}).reset_index(drop=True)
        sets = []
        for scored in scored_batches(self.sources, rows, desc="llara pools"):
            pools = top_n(scored.hybrid, scored.seed_matrix, hard_pool + 1)
            for i, (seeds, target) in enumerate(zip(scored.seeds, scored.heldout["target"],
                                                    strict=True)):
                pool = pools[i][(pools[i] != target) & (pools[i] >= 0)]
                hard = self.rng.choice(pool, size=min(hard_negatives, len(pool)), replace=False)
                rand = self.random_negatives(np.r_[seeds, target, hard],
                                             self.num_candidates - 1 - len(hard))
                sets.append(self.shuffled(int(target), np.r_[hard, rand]))
        return self.with_features(rows, sets, "llara examples")

    def validation_training(self, count: int, hard_negatives: int, list_share: float
                            ) -> tuple[list[Example], dict[str, float]]:
        """Up to ``count`` examples from the validation fit questions, and how often the
        graph score alone ranks a positive first on them (``graph_first_share``)."""
        sources = self.sources
        questions = fit_questions(sources.split)
        lists = retrieved_lists(sources, sources.catalogue_features, questions,
                                self.num_candidates, desc="llara questions")
        listed, sets = [], []
        for i, row in enumerate(questions.itertuples()):
            seeds, top = np.asarray(row.seeds, np.int64), lists.candidates[i]
            positives = lists.labels[i].astype(bool)
            if positives.any():
                listed.append(Example(str(sources.titles.get(row.pid, "")),
                                      seeds[-self.history_len:], top,
                                      int(np.argmax(positives)), lists.graph_queries[i],
                                      positives=positives, features=lists.features[i]))
            target = int(row.targets[0])
            pool = top[(top >= 0) & (top != target)]
            hard = self.rng.choice(pool, size=min(hard_negatives, len(pool)), replace=False)
            rand = self.random_negatives(np.r_[seeds, target, hard],
                                         self.num_candidates - 1 - len(hard))
            sets.append(self.shuffled(target, np.r_[hard, rand]))
        want = min(round(count * list_share), len(listed))
        picks = [listed[i] for i in self.rng.permutation(len(listed))[:want]]
        paired = self.rng.permutation(len(sets))[:count - want]
        picks += self.with_features(questions.iloc[paired].reset_index(drop=True),
                                    [sets[i] for i in paired], "llara pairs")
        stats = {"questions": len(questions), "listed": len(listed),
                 "graph_first_share": graph_first_share(lists)}
        return [picks[i] for i in self.rng.permutation(len(picks))], stats

    def random_candidates(self, heldout: pd.DataFrame) -> list[Example]:
        """Protocol (a): the first held-out track plus K-1 uniform random negatives."""
        sets = []
        for seeds, targets in zip(heldout["seeds"], heldout["targets"], strict=True):
            negatives = self.random_negatives(np.r_[np.asarray(seeds, np.int64), targets],
                                              self.num_candidates - 1)
            sets.append(self.shuffled(int(targets[0]), negatives))
        return self.with_features(heldout.reset_index(drop=True), sets, "protocol (a)")
