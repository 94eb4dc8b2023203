"""Retrieve, then rerank, with no torch: the library side of the KServe model.

1. Seed URIs map to catalogue rows; unknown URIs become warnings, never silent drops.
2. The playlist's graph query is the LightGCN fold-in of its warm seeds, or, with none,
   the cold mapper's title query; its text query mixes the seeds' and the title's text.
3. The tuned hybrid (z(graph) + λ·z(text), β on cold tracks) retrieves the top K of the
   whole catalogue, cold tracks included.
4. The LLaRA ranker (ONNX) rescores those K in one batched call; beyond K the retrieval
   order follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llarapp.config import require
from llarapp.errors import BundleError
from llarapp.llara.layout import Example, PromptBuilder, track_by_artist
from llarapp.llara.tokens import TokenEncoder
from llarapp.models.graph import GraphVectors, TitleNeighbours
from llarapp.models.hybrid import HybridScorer
from llarapp.models.mlp_numpy import apply_numpy
from llarapp.models.retrieval import seed_matrix, top_n
from llarapp.serving.bundle import RANKER, TEXT_ENCODER, TEXT_TOKENIZER, TOKENIZER, Bundle
from llarapp.serving.runtime import session
from llarapp.serving.text import OnnxTextEncoder


@dataclass
class Request:
    playlist_name: str = ""
    track_uris: list[str] = field(default_factory=list)
    k: int = 10
    exclude_seen: bool = True


@dataclass
class Recommendation:
    track_uri: str
    track_name: str
    artist_name: str
    score: float
    retrieval_rank: int


@dataclass
class Response:
    recommendations: list[Recommendation]
    model_version: str
    cold_start: str
    warnings: list[str]


class Engine:
    """``precision``: ``int8`` (default) or ``fp32`` ranker from the same bundle."""

    def __init__(self, bundle: Bundle, precision: str = "int8",
                 providers: Sequence[str] = ("cpu",), threads: int | None = None):
        require(precision in RANKER, f"precision must be one of {', '.join(RANKER)}")
        self.bundle = bundle
        meta = bundle.manifest
        self.ranker_meta, retrieval = meta["ranker"], meta["retrieval"]
        self.ranker = session(bundle.path(RANKER[precision]), providers, threads)
        self.text = OnnxTextEncoder(bundle.path(TEXT_ENCODER), bundle.path(TEXT_TOKENIZER),
                                    int(meta["text_encoder"]["max_length"]), providers, threads)
        catalogue = bundle.catalogue
        if not np.array_equal(catalogue["track_idx"].to_numpy(), np.arange(len(catalogue))):
            raise BundleError(f"{bundle.folder}: catalogue.parquet rows are not in track_idx "
                              "order; re-run `llarapp export`")
        self.uris, self.names = catalogue["track_uri"].to_numpy(), catalogue["track_name"]
        self.artists = catalogue["artist_name"]
        self.row_of = {uri: i for i, uri in enumerate(self.uris)}
        self.item_graph = bundle.array("vectors/item_graph.npy")
        graph = GraphVectors(np.zeros(0, np.int64), np.zeros((0, self.item_graph.shape[1])),
                             bundle.array("vectors/lightgcn_items.npy"),
                             bundle.array("weights/fold_in_weights.npy"),
                             bundle.array("weights/item_degree.npy"))
        self.scorer = HybridScorer(bundle.array("vectors/item_text.npy"), graph, self.item_graph,
                                   self._title_query(retrieval), retrieval["title_weight"])
        self.hybrid_params = retrieval["hybrid_params"]
        encoder = TokenEncoder.from_file(bundle.path(TOKENIZER))
        self.prompts = PromptBuilder(encoder, encoder.special_ids(), track_by_artist(catalogue),
                                     self.ranker_meta["item_tokens"],
                                     self.ranker_meta["playlist_slot"],
                                     self.ranker_meta["max_title_tokens"])

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
        """Ranker scores (examples × K) in one ONNX call."""
        packed = self.prompts.pack(examples, self.item_graph, self.ranker_meta["pad_id"])
        return self.ranker.run(None, packed.onnx_inputs())[0]

    def recommend(self, requests: Sequence[Request]) -> list[Response]:
        if not requests:
            return []
        for request in requests:
            require(request.k >= 1, f"k must be at least 1, got {request.k}")
        seeds, warnings = [], []
        for request in requests:
            known = [self.row_of[u] for u in request.track_uris if u in self.row_of]
            unknown = [u for u in request.track_uris if u not in self.row_of]
            warnings.append([f"unknown track {u} (not in the catalogue, no metadata): ignored"
                             for u in unknown])
            seeds.append(np.asarray(list(dict.fromkeys(known)), dtype=np.int64))
        matrix = seed_matrix(pd.Series(seeds), len(self.uris))
        queries = self.scorer.queries(matrix, self.text.encode([r.playlist_name
                                                                for r in requests]))
        kinds = ["seeded" if len(s) else "title_only" for s in seeds]
        lam = np.array([self.hybrid_params[k]["lambda"] for k in kinds])
        beta = np.array([self.hybrid_params[k]["cold_offset"] for k in kinds])
        scores = self.scorer.hybrid_scores(self.scorer.components(queries), lam, beta)
        exclude = sp.csr_matrix(sp.diags([float(r.exclude_seen) for r in requests]) @ matrix)
        exclude.eliminate_zeros()
        retrieved = top_n(scores, exclude, max(self.num_candidates, *(r.k for r in requests)))
        examples = [Example(r.playlist_name, s[-self.ranker_meta["history_len"]:],
                            retrieved[i, :self.num_candidates], -1, queries.graph[i])
                    for i, (r, s) in enumerate(zip(requests, seeds, strict=True))]
        reranked = self.rerank(examples)
        return [self._response(r, retrieved[i], reranked[i], warnings[i], len(seeds[i]))
                for i, r in enumerate(requests)]

    def _response(self, request: Request, retrieved: np.ndarray, scores: np.ndarray,
                  warnings: list[str], known_seeds: int) -> Response:
        k = self.num_candidates
        order = np.r_[np.argsort(-scores, kind="stable"), np.arange(k, len(retrieved))]
        floor = float(scores.min()) if len(scores) else 0.0
        recs = []
        for rank in order[:request.k]:
            item = int(retrieved[rank])
            if item < 0:
                continue
            score = float(scores[rank]) if rank < k else floor - (rank - k + 1)
            recs.append(Recommendation(str(self.uris[item]), str(self.names.iat[item]),
                                       str(self.artists.iat[item]), score, int(rank)))
        cold = ("none" if known_seeds else
                "unknown_tracks" if request.track_uris else "title_only")
        return Response(recs, self.bundle.version, cold, warnings)
