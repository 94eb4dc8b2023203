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

The playlist vector (for the playlist slot) is the hybrid retrieval's graph query: the
LightGCN fold-in of the history, or the title query when no seed is warm.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from llarapp.artifacts import read_manifest
from llarapp.config import require
from llarapp.data.dataset import Dataset, Split
from llarapp.llara.layout import track_by_artist
from llarapp.llara.prompts import Example
from llarapp.models.cold_mapper import ColdMapper
from llarapp.models.graph import GraphEmbeddings, GraphVectors
from llarapp.models.hybrid import HybridScorer, Queries, params_for
from llarapp.models.retrieval import batches_of, seed_matrix, top_n
from llarapp.models.text_embed import TextEmbeddings


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
    def titles(self) -> pd.Series:
        playlists = self.dataset.playlists
        return pd.Series(playlists["name"].fillna("").to_numpy(), index=playlists["pid"])

    @property
    def num_items(self) -> int:
        return self.dataset.num_tracks

    def retrieval(self, seeds: list[np.ndarray], pids: np.ndarray) -> Retrieval:
        """The tuned hybrid retrieval's state for these playlists, computed once."""
        q = self.scorer.queries(seed_matrix(pd.Series(seeds), self.num_items),
                                self.text.titles(pids))
        kinds = np.where([len(s) > 0 for s in seeds], "seeded", "title_only")
        return Retrieval(q, self.scorer.hybrid_scores(
            self.scorer.components(q), params_for(self.hybrid_params, kinds), q.seeds))


@dataclass
class Retrieval:
    """Graph queries and hybrid scores (playlists × catalogue) of a batch of playlists."""

    queries: Queries
    scores: np.ndarray

    def top(self, n: int) -> np.ndarray:
        """The hybrid's top ``n`` per playlist, seeds excluded."""
        return top_n(self.scores, self.queries.seeds, n)


class ExampleFactory:
    def __init__(self, sources: Sources, num_candidates: int, history_len: int, seed: int,
                 batch_size: int = 256):
        self.sources = sources
        self.num_candidates = num_candidates
        self.history_len = history_len
        self.rng = np.random.default_rng(seed)
        self.batch_size = batch_size

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

    def _example(self, pid: int, seeds: np.ndarray, target: int, negatives: np.ndarray,
                 playlist_vector: np.ndarray) -> Example:
        candidates = np.r_[target, negatives].astype(np.int64)
        order = self.rng.permutation(len(candidates))
        return Example(str(self.sources.titles.get(pid, "")), seeds[-self.history_len:],
                       candidates[order], int(np.argmax(order == 0)), playlist_vector)

    def training(self, count: int, hard_negatives: int, hard_pool: int) -> list[Example]:
        rows = self.sources.split.next_track
        rows = rows[rows["split"] == "train"]
        rows = rows.iloc[self.rng.choice(len(rows), size=min(count, len(rows)), replace=False)]
        examples = []
        for batch in tqdm(list(batches_of(rows, self.batch_size)), desc="llara examples",
                          unit="batch"):
            history = [np.asarray(h, dtype=np.int64) for h in batch["history"]]
            pids = batch["pid"].to_numpy()
            retrieval = self.sources.retrieval(history, pids)
            pools, graph_q = retrieval.top(hard_pool + 1), retrieval.queries.graph
            for i, (seeds, target) in enumerate(zip(history, batch["target"], strict=True)):
                pool = pools[i][pools[i] != target]
                hard = self.rng.choice(pool, size=min(hard_negatives, len(pool)), replace=False)
                rand = self.random_negatives(np.r_[seeds, target, hard],
                                             self.num_candidates - 1 - len(hard))
                examples.append(self._example(int(pids[i]), seeds, int(target),
                                              np.r_[hard, rand], graph_q[i]))
        return examples

    def validation_training(self, count: int, hard_negatives: int, list_share: float
                            ) -> tuple[list[Example], dict[str, float]]:
        """Up to ``count`` examples from the validation fit questions, and how often the
        graph score alone ranks a positive first on them (``graph_first_share``)."""
        from llarapp.rerank.features import CatalogueFeatures
        from llarapp.rerank.lists import fit_questions, graph_first_share, retrieved_lists

        sources = self.sources
        questions = fit_questions(sources.split)
        tables = CatalogueFeatures.from_split(sources.dataset.tracks, sources.split.train)
        lists = retrieved_lists(sources, tables, questions, self.num_candidates,
                                desc="llara questions")
        listed, paired = [], []
        for i, row in enumerate(questions.itertuples()):
            seeds, top = np.asarray(row.seeds, np.int64), lists.candidates[i]
            title = str(sources.titles.get(row.pid, ""))
            positives = lists.labels[i].astype(bool)
            if positives.any():
                listed.append(Example(title, seeds[-self.history_len:], top,
                                      int(np.argmax(positives)), lists.graph_queries[i],
                                      positives=positives, features=lists.features[i]))
            target = int(row.targets[0])
            pool = top[(top >= 0) & (top != target)]
            hard = self.rng.choice(pool, size=min(hard_negatives, len(pool)), replace=False)
            rand = self.random_negatives(np.r_[seeds, target, hard],
                                         self.num_candidates - 1 - len(hard))
            paired.append(self._example(int(row.pid), seeds, target, np.r_[hard, rand],
                                        lists.graph_queries[i]))
        want = min(round(count * list_share), len(listed))
        picks = [listed[i] for i in self.rng.permutation(len(listed))[:want]]
        picks += [paired[i] for i in self.rng.permutation(len(paired))[:count - want]]
        stats = {"questions": len(questions), "listed": len(listed),
                 "graph_first_share": graph_first_share(lists)}
        return [picks[i] for i in self.rng.permutation(len(picks))], stats

    def random_candidates(self, heldout: pd.DataFrame, graph_queries: np.ndarray
                          ) -> list[Example]:
        """Protocol (a): the first held-out track plus K-1 uniform random negatives."""
        seeds = [np.asarray(s, dtype=np.int64) for s in heldout["seeds"]]
        examples = []
        for i, (pid, targets) in enumerate(zip(heldout["pid"], heldout["targets"], strict=True)):
            negatives = self.random_negatives(np.r_[seeds[i], targets], self.num_candidates - 1)
            examples.append(self._example(int(pid), seeds[i], int(targets[0]), negatives,
                                          graph_queries[i]))
        return examples
