"""The bundle's retrieval index (:mod:`llarapp.models.hybrid_index`): built at export for
large catalogues, loaded by the engine, and refreshed when ``llarapp catalogue add`` grows
the catalogue (new tracks are cold, so only the cold group's index is rebuilt).

The index is built from the bundle's own files (item vectors and training degrees), so
what is searched is exactly what the engine would score. Its search width (IVF's
``nprobe``) is then calibrated per query kind: on held-out (validation) playlists, the
smallest of :data:`WIDTHS` whose top-n recall against exact scoring reaches
:data:`RECALL_TARGET` (title-only queries, far from any seed, need a much wider search
than seeded ones). Bundles exported before IVF carry an HNSW index and ``ef_search``;
they still load and serve as they did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llarapp.errors import ArtifactError, BundleError
from llarapp.models.group_index import DEFAULT_WIDTH
from llarapp.models.hybrid_index import HybridForm, HybridIndex
from llarapp.serving import bundle as B

if TYPE_CHECKING:
    from llarapp.models.hybrid import HybridParams, HybridScorer, Queries

KIND = "ivf"
# nprobe in steps of about √2, as search time grows about linearly with it; title-only
# queries on mpd-popular needed the upper end
WIDTHS = tuple(int(16 * f) for f in (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96))
# above issue 21's 0.99: at 0.99 on validation, test NDCG@10 lost 0.73% against exact
# scoring (allowed: 0.5%); HNSW's 0.998 had lost 0.15%
RECALL_TARGET = 0.995
EXACT_CHUNK = 32  # playlists scored against the whole catalogue at a time


def form_of(item_graph: np.ndarray, item_text: np.ndarray, degree: np.ndarray) -> HybridForm:
    return HybridForm.build(item_graph, item_text, degree > 0)  # warm: a training edge


def _folder_form(folder: Path) -> HybridForm:
    return form_of(np.load(folder / "vectors/item_graph.npy"),
                   np.load(folder / "vectors/item_text.npy"),
                   np.load(folder / "weights/item_degree.npy"))


def build_index(folder: Path, min_tracks: int,
                calibrate: Callable[[HybridIndex], dict[str, Any]] | None = None
                ) -> dict[str, Any] | None:
    """Write ``index/`` for a catalogue of at least ``min_tracks`` tracks; the manifest's
    ``retrieval.index`` entry (with ``calibrate``'s widths), or None (the engine then
    scores the whole catalogue)."""
    form = _folder_form(folder)
    if form.item_graph.shape[0] < min_tracks:
        return None
    index = HybridIndex(form, KIND)
    index.save(folder / B.INDEX_FOLDER)
    settings = {"kind": KIND, "search_width": DEFAULT_WIDTH[KIND]}
    return settings | (calibrate(index) if calibrate else {})


def calibrate_widths(index: HybridIndex, scorer: HybridScorer, queries: Queries,
                     params: Sequence[HybridParams], kinds: Sequence[str], n: int,
                     target: float = RECALL_TARGET) -> dict[str, Any]:
    """Per query kind, the smallest width of :data:`WIDTHS` whose top-``n`` recall
    against the scorer's exact top ``n`` reaches ``target`` (else the widest)."""
    def subset(rows) -> Queries:
        return type(queries)(queries.graph[rows], queries.text[rows], queries.seeds[rows])

    exact = np.concatenate([  # the scorer's own top n, a few playlists at a time
        scorer.recommend(subset(slice(i, i + EXACT_CHUNK)), "hybrid",
                         params[i:i + EXACT_CHUNK], n)
        for i in range(0, len(params), EXACT_CHUNK)])
    widths, recall, counts = {}, {}, {}
    for kind in sorted(set(kinds)):
        rows = np.flatnonzero(np.asarray(kinds) == kind)
        mine = subset(rows)
        for width in WIDTHS:
            found = index.at_width(width).top(
                mine.graph, mine.text, [params[i] for i in rows], mine.seeds, n).candidates
            share = float(np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / max((b >= 0).sum(), 1)
                                   for a, b in zip(found, exact[rows], strict=True)]))
            if share >= target:
                break
        widths[kind], recall[kind], counts[kind] = width, share, len(rows)
    index.search_width = widths
    return {"search_width": widths, "calibration": {"target": target, "top_n": n,
                                                 "recall": recall, "playlists": counts}}


def load_index(bundle: B.Bundle, item_graph: np.ndarray, item_text: np.ndarray,
               degree: np.ndarray) -> HybridIndex | None:
    settings = bundle.index
    if not settings:
        return None
    try:
        return HybridIndex.load(bundle.path(B.INDEX_FOLDER), form_of(item_graph, item_text,
                                                                     degree),
                                settings["kind"], search_widths(settings), mapped=True)
    except ArtifactError as exc:
        raise BundleError(f"{bundle.folder}: {exc}") from None


def refresh_cold_index(folder: Path, settings: dict[str, Any] | None) -> None:
    """After tracks were appended to ``folder``'s vectors: rebuild the cold group's index."""
    if not settings:
        return
    HybridIndex.load(folder / B.INDEX_FOLDER, _folder_form(folder), settings["kind"],
                     search_widths(settings), rebuild=("cold",)).save(folder / B.INDEX_FOLDER)


def search_widths(settings: dict[str, Any]) -> int | dict[str, int]:
    """The manifest's ``search_width`` (``ef_search`` in HNSW bundles): one width, or one
    per query kind."""
    widths = settings["search_width"] if "search_width" in settings else settings["ef_search"]
    return {k: int(v) for k, v in widths.items()} if isinstance(widths, dict) else int(widths)
