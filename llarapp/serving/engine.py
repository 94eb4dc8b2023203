"""Retrieve, then rerank, with no torch: the library side of the KServe model.

1. Seed URIs map to catalogue rows; unknown URIs become warnings, never silent drops.
2. The playlist's graph query is the LightGCN fold-in of its warm seeds, or, with none,
   the cold mapper's title query; its text query mixes the seeds' and the title's text.
3. The tuned hybrid (z(graph) + λ·z(text), β on cold tracks) retrieves the top K of the
   whole catalogue, cold tracks included.
4. The bundle's ranker (:mod:`llarapp.serving.rankers`: LLaRA in ONNX, LambdaMART, or
   none) rescores those K in one batched call; beyond K the retrieval order follows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llarapp.config import require
from llarapp.data.texts import item_texts
from llarapp.errors import BundleError
from llarapp.llara.layout import Example, extra_item, track_by_artist
from llarapp.models.graph import GraphVectors, TitleNeighbours
from llarapp.models.hybrid import HybridParams, HybridScorer, Queries, params_for
from llarapp.models.hybrid_index import IndexedTop
from llarapp.models.mlp_numpy import apply_numpy
from llarapp.models.recommendations import kept_entries, seed_matrix, top_n
from llarapp.serving.bundle import RANKER, TEXT_ENCODER, TEXT_TOKENIZER, Bundle
from llarapp.serving.drift import request_features
from llarapp.serving.index import load_index
from llarapp.serving.rankers import LlaraOnnxRanker, Retrieved, load_ranker
from llarapp.serving.reasons import Explainer
from llarapp.serving.text import OnnxTextEncoder


@dataclass
class TrackMeta:
    """A seed track described by its metadata (the catalogue may not know it)."""

    track_name: str
    artist_name: str = ""
    album_name: str = ""
    track_uri: str | None = None


@dataclass
class Request:
    playlist_name: str = ""
    track_uris: list[str] = field(default_factory=list)
    k: int = 10
    exclude_seen: bool = True
    tracks: list[TrackMeta] = field(default_factory=list)

    @property
    def cost(self) -> float:
        """Engine time in units of a short seeded request with k 10, from timings on the
        mpd-popular bundle (README, "Limits and failure behaviour"): seeds, rows, texts to
        encode, and the wider index search of a title-only query add to it."""
        title_only = not (self.track_uris or self.tracks)
        return (1 + len(self.track_uris) / 700 + self.k / 500 + len(self.tracks) / 10
                + 1.3 * title_only)


class Recommendation(NamedTuple):
    track_uri: str
    track_name: str
    artist_name: str
    score: float
    retrieval_rank: int
    reason: str = ""


class Recommendations(Sequence[Recommendation]):
    """A response's list, kept as columns: a batch asks for 500 per playlist and writes
    them as columns, so a :class:`Recommendation` is only built when one is read."""

    def __init__(self, *columns: list):
        self.columns = columns  # in Recommendation's field order
        self.uris, self.scores, self.reasons = columns[0], columns[3], columns[5]

    def __len__(self) -> int:
        return len(self.uris)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return Recommendations(*(column[index] for column in self.columns))
        return Recommendation._make(column[index] for column in self.columns)

    def __iter__(self) -> Iterator[Recommendation]:
        return map(Recommendation._make, zip(*self.columns, strict=True))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Recommendations({list(self)!r})"


@dataclass
class Response:
    recommendations: Recommendations
    model_version: str
    cold_start: str  # none | title_only | unknown_tracks
    warnings: list[str]
    seeds: Seeds = field(default_factory=lambda: Seeds(), repr=False)
    features: dict[str, float] = field(default_factory=dict, repr=False)  # for drift


@dataclass
class Seeds:
    """A request's usable seeds, in request order: catalogue rows (``known``) and unknown
    tracks that came with metadata (``extra``); ``history`` interleaves both as prompt
    history ids (rows, or :func:`extra_item` ids)."""

    known: list[int] = field(default_factory=list)
    extra: list[TrackMeta] = field(default_factory=list)
    history: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    ignored: int = 0  # unknown URIs that came without metadata

    @property
    def cold_start(self) -> str:
        """The situation: all tracks known (``none``), only a title (``title_only``), or
        tracks the catalogue lacks, used through their metadata or, without it, ignored
        (``unknown_tracks``)."""
        if self.extra or (self.ignored and not self.known):
            return "unknown_tracks"
        return "none" if self.known else "title_only"


Observer = Callable[[str, float], None]


class Engine:
    """``precision``: ``int8`` (default) or ``fp32`` ranker from the same bundle."""

    def __init__(self, bundle: Bundle, precision: str = "int8",
                 providers: Sequence[str] = ("cpu",), threads: int | None = None):
        require(precision in RANKER, f"precision must be one of {', '.join(RANKER)}")
        self.bundle = bundle
        meta = bundle.manifest
        self.ranker_meta, retrieval = meta["ranker"], meta["retrieval"]
        self.text = OnnxTextEncoder(bundle.path(TEXT_ENCODER), bundle.path(TEXT_TOKENIZER),
                                    int(meta["text_encoder"]["max_length"]), providers, threads)
        catalogue = bundle.catalogue
        if not np.array_equal(catalogue["track_idx"].to_numpy(), np.arange(len(catalogue))):
            raise BundleError(f"{bundle.folder}: catalogue.parquet rows are not in track_idx "
                              "order; re-run `llarapp export`")
        self.uris = catalogue["track_uri"].to_numpy()
        self.row_of = {uri: i for i, uri in enumerate(self.uris)}
        self.item_graph = bundle.array("vectors/item_graph.npy")
        self.degree = bundle.array("weights/item_degree.npy")
        graph = GraphVectors(np.zeros(0, np.int64), np.zeros((0, self.item_graph.shape[1])),
                             bundle.array("vectors/lightgcn_items.npy"),
                             bundle.array("weights/fold_in_weights.npy"), self.degree)
        self.scorer = HybridScorer(bundle.array("vectors/item_text.npy"), graph, self.item_graph,
                                   self._title_query(retrieval), retrieval["title_weight"])
        self.hybrid_params = retrieval["hybrid_params"]
        self.index = load_index(bundle, self.item_graph, self.scorer.item_text, self.degree)
        self.item_mapper = bundle.weights("weights/item_mapper.npz")
        self.explainer = Explainer(catalogue, self.item_graph, self.scorer.item_text)
        # Object arrays: one gather gives a response's 500 strings; lists for seed labels.
        self.names = catalogue["track_name"].fillna("").astype(str).tolist()
        self.artists = catalogue["artist_name"].fillna("").astype(str).tolist()
        self.columns = tuple(np.array(c, dtype=object) for c in (self.uris, self.names,
                                                                 self.artists))
        self.ranker = load_ranker(bundle, precision, providers, threads, self.item_graph)

    def _title_query(self, retrieval: dict):
        if retrieval["title_query"] == "knn":
            return TitleNeighbours(self.bundle.array("weights/title_index.npy"),
                                   self.bundle.array("weights/title_targets.npy"),
                                   retrieval["title_neighbours"],
                                   retrieval["title_temperature"]).query
        weights = self.bundle.weights("weights/title_mapper.npz")
        return lambda titles: apply_numpy(weights, titles)

    @property
    def num_candidates(self) -> int:
        return int(self.ranker_meta["num_candidates"])

    def rerank(self, examples: list[Example]) -> np.ndarray:
        """LLaRA's scores (examples × K) in one ONNX call; only a LLaRA bundle has them."""
        if not isinstance(self.ranker, LlaraOnnxRanker):
            raise BundleError(f"this bundle serves ranker {self.bundle.ranker_kind!r}, not "
                              "LLaRA; rerank() needs a bundle exported with ranker llara")
        return self.ranker.rerank(examples)

    def seeds(self, request: Request) -> Seeds:
        """Map a request's tracks to catalogue rows or extra (metadata-only) items; an
        unknown URI with no metadata becomes a warning, never a silent drop."""
        out, seen_rows, seen_extra = Seeds(), set(), set()
        described = {t.track_uri for t in request.tracks if t.track_uri}

        def add_known(row: int) -> None:
            if row not in seen_rows:
                seen_rows.add(row)
                out.known.append(row)
                out.history.append(row)

        for uri in request.track_uris:
            row = self.row_of.get(uri)
            if row is not None:
                add_known(row)
            elif uri not in described:
                out.ignored += 1
                out.warnings.append(f"unknown track {uri}: not in the catalogue and sent "
                                    "without metadata, so it was ignored; send it in 'tracks' "
                                    "with its track_name and artist_name to use it")
        for track in request.tracks:
            row = self.row_of.get(track.track_uri) if track.track_uri else None
            key = (track.track_name.lower(), track.artist_name.lower(), track.album_name.lower())
            if row is not None:
                add_known(row)
            elif key not in seen_extra:
                seen_extra.add(key)
                out.history.append(extra_item(len(out.extra)))
                out.extra.append(track)
        return out

    def recommend(self, requests: Sequence[Request], observe: Observer | None = None
                  ) -> list[Response]:
        """Responses in request order; ``observe(stage, seconds)`` gets the time of each
        stage (encode, retrieve, rerank) of the whole batch."""
        if not requests:
            return []
        for request in requests:
            require(request.k >= 1, f"k must be at least 1, got {request.k}")
        seeds = [self.seeds(r) for r in requests]
        with _timed(observe, "encode"):
            encoded = self._encode(requests, seeds)
        extra_text, extra_graph = encoded[1:]
        with _timed(observe, "retrieve"):
            matrix, queries = self._queries(seeds, encoded)
            kinds = ["seeded" if s.history else "title_only" for s in seeds]
            exclude = kept_entries(matrix, np.repeat([r.exclude_seen for r in requests],
                                                     np.diff(matrix.indptr)))
            found = self._retrieve(queries, params_for(self.hybrid_params, kinds), exclude,
                                   max(self.num_candidates, *(r.k for r in requests)), kinds)
            retrieved = found.candidates
        with _timed(observe, "rerank"):
            top, width = retrieved[:, :self.num_candidates], self.num_candidates
            history_len = self.ranker_meta["history_len"]

            def examples() -> list[Example]:
                return [Example(r.playlist_name, np.asarray(s.history[-history_len:], np.int64),
                                top[i], -1, queries.graph[i], self._prompt_texts(s.extra),
                                extra_graph[i])
                        for i, (r, s) in enumerate(zip(requests, seeds, strict=True))]

            reranked = self.ranker.score(Retrieved(
                top, found.hybrid[:, :width], found.graph[:, :width], found.text[:, :width],
                [np.asarray(s.known, np.int64) for s in seeds], examples))
        responses = [self._response(r, s, retrieved[i], reranked[i], extra_graph[i],
                                    extra_text[i])
                     for i, (r, s) in enumerate(zip(requests, seeds, strict=True))]
        for response, query in zip(responses, queries.graph, strict=True):
            response.features = self._features(response.seeds, query)
        return responses

    def _retrieve(self, queries: Queries, params: list[HybridParams], exclude: sp.csr_matrix,
                  n: int, kinds: Sequence[str] | None = None) -> IndexedTop:
        """The hybrid's top ``n`` with their scores: from the bundle's index when it ships
        one (searched as wide as each query's kind needs), else by scoring the whole
        catalogue (the same ranking; tested)."""
        if self.index is not None:
            return self.index.top(queries.graph, queries.text, params, exclude, n, kinds)
        parts = self.scorer.components(queries)
        scores = self.scorer.hybrid_scores(parts, params, exclude)
        top = top_n(scores, exclude, n)
        rows, items = np.arange(len(top))[:, None], np.maximum(top, 0)
        return IndexedTop(top, scores[rows, items], parts[0][rows, items],
                          parts[1][rows, items])

    def drift_features(self, requests: Sequence[Request], batch_size: int = 256
                       ) -> list[dict[str, float]]:
        """The drift features of ``requests`` (see :mod:`llarapp.serving.drift`) without
        retrieving or reranking, ``batch_size`` at a time."""
        out = []
        for start in range(0, len(requests), batch_size):
            batch = requests[start:start + batch_size]
            seeds = [self.seeds(r) for r in batch]
            _, queries = self._queries(seeds, self._encode(batch, seeds))
            out += [self._features(s, q) for s, q in zip(seeds, queries.graph, strict=True)]
        return out

    def _features(self, seeds: Seeds, graph_query: np.ndarray) -> dict[str, float]:
        return request_features(seeds.known, len(seeds.history), graph_query, self.degree)

    def _queries(self, seeds: Sequence[Seeds], encoded: tuple) -> tuple[sp.csr_matrix, Queries]:
        """The seed matrix and the playlists' graph and text queries."""
        titles, extra_text, _ = encoded
        matrix = seed_matrix(pd.Series([np.asarray(s.known, np.int64) for s in seeds]),
                             len(self.uris))
        sums = np.stack([t.sum(axis=0) for t in extra_text])
        return matrix, self.scorer.queries(matrix, titles, sums,
                                           np.array([len(s.extra) for s in seeds]))

    def _encode(self, requests: Sequence[Request], seeds: Sequence[Seeds]
                ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """Titles, then extra tracks, through the text encoder; extra tracks then through
        the cold mapper into graph space. Each title is encoded alone: the int8 encoder
        quantizes activations per call, so in a batch a title's vector would depend on the
        titles sent with it (by up to 0.03 per coordinate). Extra tracks stay batched: a
        worst-case request carries thousands, and one call each would hold the cores."""
        extra = [t for s in seeds for t in s.extra]
        texts = item_texts(pd.DataFrame([vars(t) for t in extra]), lyrics=False) if extra else []
        titles = self.text.encode([r.playlist_name for r in requests], batch_size=1)
        extra_text = self.text.encode(texts)
        extra_graph = (apply_numpy(self.item_mapper, extra_text) if len(extra)
                       else np.zeros((0, self.item_graph.shape[1]), np.float32))
        bounds = np.cumsum([0] + [len(s.extra) for s in seeds])
        return (titles, [extra_text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)],
                [extra_graph[a:b] for a, b in zip(bounds, bounds[1:], strict=False)])

    @staticmethod
    def _prompt_texts(extra: Sequence[TrackMeta]) -> list[str]:
        # the common case (no extra track) skips pandas: it is on every request's path
        return track_by_artist(pd.DataFrame([vars(t) for t in extra])) if extra else []

    def _response(self, request: Request, seeds: Seeds, retrieved: np.ndarray,
                  scores: np.ndarray, extra_graph: np.ndarray, extra_text: np.ndarray
                  ) -> Response:
        k = self.num_candidates
        order = np.r_[np.argsort(-scores, kind="stable"), np.arange(k, len(retrieved))]
        floor = float(scores.min()) if len(scores) else 0.0
        ranks = [int(rank) for rank in order[:request.k] if retrieved[rank] >= 0]
        items = retrieved[ranks]
        labels = ([f"'{self.names[i]}' by {self.artists[i]}" for i in seeds.known]
                  + [f"'{t.track_name}'" + (f" by {t.artist_name}" if t.artist_name else "")
                     for t in seeds.extra])
        reasons = self.explainer.explain(
            items, request.playlist_name, labels,
            np.concatenate([self.item_graph[seeds.known], extra_graph]),
            np.concatenate([self.scorer.item_text[seeds.known], extra_text]))
        scored = scores.tolist()
        values = [scored[rank] if rank < k else floor - (rank - k + 1) for rank in ranks]
        uris, names, artists = (column[items].tolist() for column in self.columns)
        recs = Recommendations(uris, names, artists, values, ranks, reasons)
        warnings = list(seeds.warnings)
        if not seeds.history and not request.playlist_name.strip():
            warnings.append("no usable seed track and no title: these are generic "
                            "recommendations")
        return Response(recs, self.bundle.version, seeds.cold_start, warnings, seeds)


@contextmanager
def _timed(observe: Observer | None, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    if observe is not None:
        observe(stage, time.perf_counter() - start)
