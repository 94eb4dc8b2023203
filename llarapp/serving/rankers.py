"""The bundle's ranker, one class per ``ranker.kind``; each scores the retrieved top K.

* ``retrieval``: the hybrid's own scores, so the served order is the retrieval order.
* ``lambdamart``: LightGBM over :mod:`llarapp.rerank.features`, computed here exactly as
  eval-llara computed them.
* ``llara``: the ONNX LLaRA ranker (int8 or fp32) on one prompt per playlist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from llarapp.errors import BundleError
from llarapp.llara.layout import Example, PromptBuilder, track_by_artist
from llarapp.llara.tokens import TokenEncoder
from llarapp.rerank.features import FEATURES, CatalogueFeatures, candidate_features
from llarapp.serving.bundle import RANKER, TOKENIZER, Bundle
from llarapp.serving.runtime import declared_feeds, session


@dataclass
class Retrieved:
    """A batch's top K (B, K) with the scores that ranked them, and each playlist's
    catalogue seeds; ``examples()`` builds LLaRA's prompts only when a ranker asks."""

    candidates: np.ndarray
    hybrid: np.ndarray
    graph: np.ndarray
    text: np.ndarray
    seeds: Sequence[np.ndarray]
    examples: Callable[[], list[Example]]

    def features(self, tables: CatalogueFeatures) -> np.ndarray:
        """(B, K, F) candidate features, as eval-llara computes them."""
        return candidate_features(tables, self.candidates, self.hybrid, self.graph, self.text,
                                  self.seeds)


class Ranker(Protocol):
    def score(self, retrieved: Retrieved) -> np.ndarray: ...


class RetrievalOrder:
    def score(self, retrieved: Retrieved) -> np.ndarray:
        return retrieved.hybrid


class LambdaMartRanker:
    def __init__(self, bundle: Bundle):
        # lightgbm (and the scikit-learn it pulls in) loads only for a LambdaMART bundle
        from llarapp.rerank.lambdamart import LambdaMart

        folder = bundle.path("rerank")
        self.model = LambdaMart.load(folder)
        self.tables = CatalogueFeatures.load(folder, bundle.catalogue)

    def score(self, retrieved: Retrieved) -> np.ndarray:
        return self.model.score(retrieved.features(self.tables))


class LlaraOnnxRanker:
    def __init__(self, bundle: Bundle, precision: str, providers: Sequence[str],
                 threads: int | None, item_graph: np.ndarray):
        meta = bundle.manifest["ranker"]
        self.session = session(bundle.path(RANKER[precision]), providers, threads)
        check_feature_width(self.session, bundle.path(RANKER[precision]))
        self.feeds = declared_feeds(self.session)
        encoder = TokenEncoder.from_file(bundle.path(TOKENIZER))
        self.prompts = PromptBuilder(encoder, encoder.special_ids(),
                                     track_by_artist(bundle.catalogue), meta["item_tokens"],
                                     meta["playlist_slot"], meta["max_title_tokens"])
        self.pad_id, self.item_graph = meta["pad_id"], item_graph
        self.tables = CatalogueFeatures.load(bundle.path("rerank"), bundle.catalogue)

    def rerank(self, examples: list[Example]) -> np.ndarray:
        """Ranker scores (examples × K) in one ONNX call."""
        packed = self.prompts.pack(examples, self.item_graph, self.pad_id)
        return self.session.run(None, self.feeds(packed.onnx_inputs()))[0]

    def score(self, retrieved: Retrieved) -> np.ndarray:
        examples = retrieved.examples()
        for example, features in zip(examples, retrieved.features(self.tables), strict=True):
            example.features = features
        return self.rerank(examples)


def check_feature_width(ranker_session, path: Path) -> None:
    """Refuse a ranker exported for another feature set: onnxruntime would reject every
    request's ``candidate_features`` instead. A graph that never reads them passes."""
    shapes = {i.name: i.shape for i in ranker_session.get_inputs()}
    width = shapes.get("candidate_features", [None])[-1]
    if isinstance(width, int) and width != len(FEATURES):
        raise BundleError(f"{path} takes {width} candidate features but this server computes "
                          f"{len(FEATURES)} ({', '.join(FEATURES)}); re-run eval-llara and "
                          "export with this version")


def load_ranker(bundle: Bundle, precision: str, providers: Sequence[str], threads: int | None,
                item_graph: np.ndarray) -> Ranker:
    kind = bundle.ranker_kind
    if kind == "llara":
        return LlaraOnnxRanker(bundle, precision, providers, threads, item_graph)
    if kind == "lambdamart":
        return LambdaMartRanker(bundle)
    return RetrievalOrder()
