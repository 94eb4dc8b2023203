"""The tuned hybrid score as one inner product per item group, so a faiss index can serve it.

:class:`~llarapp.models.hybrid.HybridScorer` scores a query (graph vector g, text vector t)
against every item (graph vector v, text vector x) as

    z_G(g·v) + λ_G · z_T(t·x)

where z_G standardises the graph scores over the item's group G (warm or cold tracks,
separately), z_T the text scores over the whole catalogue, and λ_G is λ for warm tracks
and λ_cold for cold ones (the cold offset β only moves the cold group as a block).

The mean and variance of a linear function of the items are that function of the items'
mean μ and covariance Σ (population, as ``np.std``): over a set S of vectors u,

    mean(q·u) = q·μ_S        var(q·u) = qᵀ Σ_S q

so z(q·u) = a·(q·u) + b with a = 1 / max(√(qᵀΣ_S q), 1e-6) and b = −a · q·μ_S, the same
floor as :func:`~llarapp.models.hybrid.standardise`. Inside a group, then,

    z_G(g·v) + λ_G z_T(t·x) = [a_G g, λ_G a_T t] · [v, x] + (b_G + λ_G b_T)

an inner product of a per-query vector with a fixed per-item vector [v, x], plus a
per-query constant. One index per group holds the items' [v, x]; the constant puts the
two groups' scores on the scale the scorer uses. The moments are float64, so the identity
holds to float32 rounding of the inner products.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from llarapp.errors import ArtifactError
from llarapp.models.group_index import ADD_CHUNK, DEFAULT_WIDTH, GROUPS, SearchSpace, check_kind

if TYPE_CHECKING:
    from llarapp.models.hybrid import HybridParams

STD_FLOOR = 1e-6  # as llarapp.models.hybrid.standardise
ZScore = tuple[np.ndarray, np.ndarray]  # (a, b) per query: z = a·score + b


@dataclass(frozen=True)
class Moments:
    """Mean vector and population covariance of a set of item vectors."""

    mean: np.ndarray  # (d,) float64
    covariance: np.ndarray  # (d, d) float64

    @classmethod
    def of(cls, vectors: np.ndarray, chunk: int = ADD_CHUNK) -> Moments:
        """Two passes in float64, ``chunk`` rows at a time (a catalogue never is copied)."""
        count, width = max(len(vectors), 1), vectors.shape[1]
        starts = range(0, len(vectors), chunk)
        mean = sum((np.asarray(vectors[i:i + chunk], np.float64).sum(axis=0) for i in starts),
                   np.zeros(width)) / count
        covariance = np.zeros((width, width))
        for start in starts:
            centred = np.asarray(vectors[start:start + chunk], np.float64) - mean
            covariance += centred.T @ centred
        return cls(mean, covariance / count)

    def zscore(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) per query (B,): z-scores of ``queries @ vectors.T`` are a·score + b."""
        queries = np.asarray(queries, np.float64)
        variance = ((queries @ self.covariance) * queries).sum(axis=1)  # BLAS, not einsum
        scale = 1.0 / np.maximum(np.sqrt(np.maximum(variance, 0.0)), STD_FLOOR)
        return scale, -scale * (queries @ self.mean)


@dataclass(frozen=True)
class GroupForm:
    """One item group (warm or cold): its tracks and their graph moments."""

    items: np.ndarray  # catalogue indices of the group's tracks
    graph: Moments

    def queries(self, graph_q: np.ndarray, text_q: np.ndarray, lam: np.ndarray,
                graph_z: ZScore, text_z: ZScore) -> tuple[np.ndarray, np.ndarray]:
        """(query vectors (B, graph dim + text dim) float32, constants (B,)) whose inner
        products with the group's [v, x] rows, plus the constant, are the hybrid scores;
        ``graph_z`` is this group's :meth:`Moments.zscore` of ``graph_q``, ``text_z`` the
        catalogue's of ``text_q``."""
        lam = np.asarray(lam, np.float64).reshape(-1)
        (graph_a, graph_b), (text_a, text_b) = graph_z, text_z
        weights = np.hstack([graph_a[:, None] * graph_q,
                             (lam * text_a)[:, None] * text_q]).astype(np.float32)
        return weights, graph_b + lam * text_b


@dataclass(frozen=True)
class HybridForm:
    """The catalogue's item vectors, its two groups and the text moments over all tracks."""

    item_graph: np.ndarray  # as the scorer's: LightGCN for warm, mapped for cold tracks
    item_text: np.ndarray
    warm: GroupForm
    cold: GroupForm
    text: Moments

    @classmethod
    def build(cls, item_graph: np.ndarray, item_text: np.ndarray, warm: np.ndarray
              ) -> HybridForm:
        warm = np.asarray(warm, bool)
        # plain views of mapped files: np.memmap's __getitem__ costs ~30 µs a gather
        item_graph, item_text = np.asarray(item_graph), np.asarray(item_text)

        def group(mask: np.ndarray) -> GroupForm:
            items = np.flatnonzero(mask)
            return GroupForm(items, Moments.of(item_graph[items]))

        return cls(item_graph, item_text, group(warm), group(~warm), Moments.of(item_text))

    def inner(self, queries: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(B, n): query b · the [v, x] row of items[b, j], without building the rows."""
        split = self.item_graph.shape[1]
        return (np.einsum("bd,bkd->bk", queries[:, :split], self.item_graph[items])
                + np.einsum("bd,bkd->bk", queries[:, split:], self.item_text[items]))

    def rows(self, items: np.ndarray) -> np.ndarray:
        """The [v, x] rows (float32) of these tracks: what an index holds."""
        return np.hstack([self.item_graph[items], self.item_text[items]]).astype(np.float32)


@dataclass
class IndexedTop:
    """The hybrid's top n per playlist (-1 padded) and, per candidate, the scorer's hybrid
    score and its standardised graph and text parts (what the rerankers' features read)."""

    candidates: np.ndarray  # (B, n) int64
    hybrid: np.ndarray  # (B, n) float32
    graph: np.ndarray
    text: np.ndarray


class HybridIndex:
    """Top n of :meth:`HybridScorer.hybrid_scores` (cold block offset and cold slots
    included) from one faiss index per group, without scoring the catalogue in numpy:
    each group's best rows come from its index (the cold one only for queries where a cold
    track can reach the top n), the block offset needs the warm minimum (the negated
    query's best, searched only where it can change the top n) and the cold maximum, and
    the slots are placed between the warm ranks as the scorer places them.

    ``kind``: ``flat`` (exact), ``hnsw`` or ``ivf`` (approximate), as
    :mod:`llarapp.models.group_index` lays them out. Returned scores are exact either way."""

    def __init__(self, form: HybridForm, kind: str = "flat",
                 search_width: int | Mapping[str, int] | None = None,
                 indexes: dict | None = None, space: SearchSpace | None = None):
        """Builds one faiss index per group, or takes ``indexes`` and their ``space``
        (from :meth:`load`)."""
        check_kind(kind)
        self.form = form
        self.space = space if space is not None else SearchSpace.fit(kind, form.item_text)
        self.is_warm = np.zeros(len(form.warm.items) + len(form.cold.items), bool)
        self.is_warm[form.warm.items] = True
        self.indexes = indexes if indexes is not None else {
            name: self.space.build(form, getattr(form, name)) for name in GROUPS}
        # the search width (efSearch, nprobe): one, or one per query kind (``seeded``,
        # ``title_only``) as export calibrates it; applied per search, so indexes can be
        # shared at other widths
        self.search_width = DEFAULT_WIDTH[kind] if search_width is None else search_width

    @property
    def kind(self) -> str:
        return self.space.kind

    def at_width(self, search_width: int | Mapping[str, int]) -> HybridIndex:
        """The same indexes, searched at another width."""
        return HybridIndex(self.form, self.kind, search_width, self.indexes, self.space)

    def save(self, folder: Path) -> None:
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        for name, index in self.indexes.items():
            faiss.write_index(index, str(folder / f"{name}.faiss"))
        self.space.save(folder)

    @classmethod
    def load(cls, folder: Path, form: HybridForm, kind: str,
             search_width: int | Mapping[str, int] | None = None,
             rebuild: tuple[str, ...] = (), mapped: bool = False) -> HybridIndex:
        """From :meth:`save`'s files; the groups in ``rebuild`` are built anew instead.
        ``mapped``: the stored vectors stay in the files, mapped read-only, so processes
        serving the same files share them (never for indexes that will be saved over)."""
        import faiss

        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mapped else 0
        space, indexes = SearchSpace.load(kind, folder), {}
        for name in GROUPS:
            group = getattr(form, name)
            if name in rebuild:
                indexes[name] = space.build(form, group)
                continue
            indexes[name] = faiss.read_index(str(folder / f"{name}.faiss"), flags)
            if indexes[name].ntotal != len(group.items):
                raise ArtifactError(f"{folder / name}.faiss holds {indexes[name].ntotal} "
                                    f"tracks but the catalogue has {len(group.items)} {name} "
                                    "ones; re-export the bundle")
        return cls(form, kind, search_width, indexes, space)

    def widths(self, kinds: Sequence[str] | None, count: int) -> np.ndarray:
        """The search width per query: its kind's, or the widest when kinds are unknown."""
        if not isinstance(self.search_width, Mapping):
            return np.full(count, self.search_width, np.int64)
        if kinds is None:
            return np.full(count, max(self.search_width.values()), np.int64)
        return np.array([self.search_width.get(k, DEFAULT_WIDTH[self.kind]) for k in kinds],
                        np.int64)

    def _search(self, name: str, vectors: np.ndarray, constant: np.ndarray, depth: int,
                widths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(catalogue items, hybrid scores) of the group's best ``depth`` rows, -1 padded;
        the scores are exact inner products, whatever the index."""
        widths = self.widths(None, len(vectors)) if widths is None else widths
        group = getattr(self.form, name)
        depth = int(min(depth, len(group.items)))
        if not depth:
            return (np.full((len(vectors), 0), -1, np.int64),
                    np.zeros((len(vectors), 0), np.float32))
        split = self.form.item_graph.shape[1]
        rows, scores = self.space.search(self.indexes[name], self.space.queries(vectors, split),
                                         depth, widths)
        if scores is None:  # candidates: rescored exactly, the best ``depth`` kept
            scores = self.form.inner(vectors, group.items[np.maximum(rows, 0)])
            scores = np.where(rows >= 0, scores, -np.inf)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
            scores, rows = (np.take_along_axis(a, order, axis=1) for a in (scores, rows))
        items = np.where(rows >= 0, group.items[np.maximum(rows, 0)], -1)
        return items, np.where(rows >= 0, scores + constant[:, None], -np.inf)

    def top(self, graph_q: np.ndarray, text_q: np.ndarray, params: Sequence[HybridParams],
            exclude: sp.csr_matrix, n: int, kinds: Sequence[str] | None = None
            ) -> IndexedTop:
        """``kinds``: each query's kind, for per-kind search widths."""
        form, widths = self.form, self.widths(kinds, len(params))
        lam = np.array([p.lam for p in params])
        cold_lambda = np.array([p.cold_lambda for p in params])
        slots = np.array([p.cold_slots for p in params])
        ends = np.array([p.cold_slots_end for p in params])
        # each z-score map once per call: the weights and the parts both need them
        warm_z, cold_z = form.warm.graph.zscore(graph_q), form.cold.graph.zscore(graph_q)
        text_z = form.text.zscore(text_q)
        warm_q, warm_c = form.warm.queries(graph_q, text_q, lam, warm_z, text_z)
        cold_q, cold_c = form.cold.queries(graph_q, text_q, cold_lambda, cold_z, text_z)
        excluded = np.diff(exclude.indptr).max(initial=0)
        slot_reach = (slots > 0) & (ends - slots < n)  # a cold slot can land in the top n
        warm_items, warm_scores = self._search(
            "warm", warm_q, warm_c, max(n, int(ends[slot_reach].max(initial=0))) + excluded,
            widths)
        # cold tracks reach the top n only through a slot inside it, or where fewer than n
        # warm tracks are left once the seeds are dropped; elsewhere the cold search is
        # skipped (with the default slots at ranks 70-99, a served top 20 never holds one)
        short = np.isfinite(warm_scores).sum(axis=1) - np.diff(exclude.indptr) < n
        need = slot_reach | short
        cold_items, cold_scores = self._search_rows(
            "cold", cold_q, cold_c, need, max(n, int(slots[need].max(initial=0))) + excluded,
            widths)
        if len(form.warm.items) and len(form.cold.items) and need.any():
            # every cold track below the warm
            floor = self._warm_floor(warm_q[need], warm_c[need], warm_scores[need],
                                     short[need], widths[need])
            cold_scores[need] += floor[:, None] - cold_scores[need, :1] - 1.0
        out = IndexedTop(np.full((len(params), n), -1, np.int64),
                         *(np.zeros((len(params), n), np.float32) for _ in range(3)))
        for row, (start, stop) in enumerate(zip(exclude.indptr[:-1], exclude.indptr[1:],
                                                strict=True)):
            seeds = exclude.indices[start:stop]
            keep_warm = (warm_items[row] >= 0) & ~_among(warm_items[row], seeds)
            keep_cold = (cold_items[row] >= 0) & ~_among(cold_items[row], seeds)
            items = np.r_[warm_items[row][keep_warm], cold_items[row][keep_cold]]
            scores = np.r_[warm_scores[row][keep_warm], cold_scores[row][keep_cold]]
            if slots[row]:
                _place_slots(scores, int(keep_warm.sum()), int(slots[row]), int(ends[row]))
            best = np.argsort(-scores, kind="stable")[:n]
            out.candidates[row, :len(best)] = items[best]
            out.hybrid[row, :len(best)] = scores[best]
        out.graph[:], out.text[:] = self.parts(graph_q, text_q, out.candidates, warm_z,
                                               cold_z, text_z)
        return out

    def _search_rows(self, name: str, vectors: np.ndarray, constant: np.ndarray,
                     rows: np.ndarray, depth: int, widths: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_search` for the queries where ``rows`` is True; the others get no rows
        (-1, -inf)."""
        if not rows.any():
            return (np.full((len(vectors), 0), -1, np.int64),
                    np.zeros((len(vectors), 0), np.float32))
        found, scores = self._search(name, vectors[rows], constant[rows], depth, widths[rows])
        items = np.full((len(vectors), found.shape[1]), -1, np.int64)
        items[rows] = found
        out = np.full(items.shape, -np.inf, scores.dtype)
        out[rows] = scores
        return items, out

    def _warm_floor(self, warm_q: np.ndarray, warm_c: np.ndarray, warm_scores: np.ndarray,
                    short: np.ndarray, widths: np.ndarray) -> np.ndarray:
        """Per query, the score the cold block must sit below. The scorer uses the warm
        minimum, which costs a search for the negated query; it matters only where fewer
        than n warm tracks are left once the seeds are dropped (``short``; else no cold
        track but the slotted ones, whose scores are replaced, reaches the top n), so
        elsewhere the lowest retrieved warm score gives the same top n and scores."""
        found = np.isfinite(warm_scores)
        floor = np.where(found, warm_scores, np.inf).min(axis=1, initial=np.inf)
        if short.any():
            _, lowest = self._search("warm", -warm_q[short], -warm_c[short], 1, widths[short])
            floor[short] = -lowest[:, 0]
        return floor

    def parts(self, graph_q: np.ndarray, text_q: np.ndarray, candidates: np.ndarray,
              warm_z: ZScore, cold_z: ZScore, text_z: ZScore) -> tuple[np.ndarray, np.ndarray]:
        """The standardised graph and text scores of these (B, n) candidates (-1: zero)."""
        form, items = self.form, np.maximum(candidates, 0)
        graph = np.einsum("bd,bnd->bn", graph_q, form.item_graph[items])
        text = np.einsum("bd,bnd->bn", text_q, form.item_text[items])
        (text_a, text_b), (warm_a, warm_b), (cold_a, cold_b) = text_z, warm_z, cold_z
        graph = np.where(self.is_warm[items], warm_a[:, None] * graph + warm_b[:, None],
                         cold_a[:, None] * graph + cold_b[:, None])
        text = text_a[:, None] * text + text_b[:, None]
        valid = candidates >= 0
        return (np.where(valid, graph, 0).astype(np.float32),
                np.where(valid, text, 0).astype(np.float32))


def _among(items: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """``np.isin`` for the short arrays of one list (a broadcast beats its sort there)."""
    if items.size * seeds.size > 1 << 16:
        return np.isin(items, seeds)
    return (items[:, None] == seeds[None, :]).any(axis=1)


def _place_slots(scores: np.ndarray, warm_count: int, slots: int, end: int) -> None:
    """In place: the best ``slots`` cold scores (those after the first ``warm_count``,
    best first) move between the warm ranks ``end − slots − 1`` and ``end − slots``, as
    :meth:`HybridScorer._fill_slots` places them."""
    warm, cold = scores[:warm_count], scores[warm_count:]
    count, above_rank = min(slots, len(cold)), end - slots
    below = warm[above_rank] if above_rank < len(warm) else -np.inf
    above = warm[above_rank - 1] if 0 < above_rank <= len(warm) else np.inf
    if not np.isfinite(above):
        above = (below if np.isfinite(below) else 0.0) + count + 1.0
    if not np.isfinite(below):
        below = above - count - 1.0
    cold[:count] = np.linspace(above, below, count + 2)[1:-1]
