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

if TYPE_CHECKING:
    from llarapp.models.hybrid import HybridParams

STD_FLOOR = 1e-6  # as llarapp.models.hybrid.standardise
ADD_CHUNK = 65_536  # tracks per index.add: bounds the temporary [v, x] rows
INDEX_KINDS = ("flat", "hnsw")
HNSW_NEIGHBOURS, EF_CONSTRUCTION, EF_SEARCH = 32, 80, 256
GROUPS = ("warm", "cold")
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
        variance = np.einsum("bd,de,be->b", queries, self.covariance, queries)
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

    ``kind``: ``flat`` (``IndexFlatIP``, exact) or ``hnsw`` (approximate: ``IndexHNSWFlat``
    in L2 over the items lifted to a common norm R with one extra coordinate √(R² − |x|²),
    so the nearest neighbour of [q, 0] is the item with the best q·x; searched directly
    with inner products, HNSW's top-20 recall stayed near 0.98 on mpd-popular). Returned
    scores are recomputed exactly either way."""

    def __init__(self, form: HybridForm, kind: str = "flat",
                 ef_search: int | Mapping[str, int] = EF_SEARCH, indexes: dict | None = None):
        """Builds one faiss index per group, or takes ``indexes`` (from :meth:`load`)."""
        if kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
        self.form, self.kind = form, kind
        self.is_warm = np.zeros(len(form.warm.items) + len(form.cold.items), bool)
        self.is_warm[form.warm.items] = True
        self.indexes = indexes if indexes is not None else {
            name: group_index(form, getattr(form, name), kind) for name in GROUPS}
        # HNSW's search width: one, or one per query kind (``seeded``, ``title_only``) as
        # export calibrates it; applied per search, so indexes can be shared at other widths
        self.ef_search = ef_search

    def save(self, folder: Path) -> None:
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        for name, index in self.indexes.items():
            faiss.write_index(index, str(folder / f"{name}.faiss"))

    @classmethod
    def load(cls, folder: Path, form: HybridForm, kind: str,
             ef_search: int | Mapping[str, int] = EF_SEARCH, rebuild: tuple[str, ...] = (),
             mapped: bool = False) -> HybridIndex:
        """From :meth:`save`'s files; the groups in ``rebuild`` are built anew instead.
        ``mapped``: the stored vectors stay in the files, mapped read-only, so processes
        serving the same files share them (never for indexes that will be saved over)."""
        import faiss

        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mapped else 0
        indexes = {}
        for name in GROUPS:
            group = getattr(form, name)
            if name in rebuild:
                indexes[name] = group_index(form, group, kind)
                continue
            indexes[name] = faiss.read_index(str(folder / f"{name}.faiss"), flags)
            if indexes[name].ntotal != len(group.items):
                raise ArtifactError(f"{folder / name}.faiss holds {indexes[name].ntotal} "
                                    f"tracks but the catalogue has {len(group.items)} {name} "
                                    "ones; re-export the bundle")
        return cls(form, kind, ef_search, indexes)

    def widths(self, kinds: Sequence[str] | None, count: int) -> np.ndarray:
        """HNSW's search width per query: its kind's, or the widest when kinds are unknown."""
        if not isinstance(self.ef_search, Mapping):
            return np.full(count, self.ef_search, np.int64)
        if kinds is None:
            return np.full(count, max(self.ef_search.values()), np.int64)
        return np.array([self.ef_search.get(k, EF_SEARCH) for k in kinds], np.int64)

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
        if self.kind == "flat":
            scores, rows = self.indexes[name].search(vectors, depth)
        else:
            lifted = np.hstack([vectors, np.zeros((len(vectors), 1), np.float32)])
            import faiss

            rows = np.empty((len(vectors), depth), np.int64)
            for width in np.unique(widths):
                part = widths == width
                rows[part] = self.indexes[name].search(
                    lifted[part], depth, params=faiss.SearchParametersHNSW(efSearch=int(width)))[1]
            scores = self.form.inner(vectors, group.items[np.maximum(rows, 0)])
            scores = np.where(rows >= 0, scores, -np.inf)
            order = np.argsort(-scores, axis=1, kind="stable")
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
            keep_warm = (warm_items[row] >= 0) & ~np.isin(warm_items[row], seeds)
            keep_cold = (cold_items[row] >= 0) & ~np.isin(cold_items[row], seeds)
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


def group_index(form: HybridForm, group: GroupForm, kind: str):
    """One group's faiss index: flat inner products, or HNSW in L2 over the lifted rows."""
    import faiss

    width = form.item_graph.shape[1] + form.item_text.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(width)
    else:  # L2 over [x, √(R² − |x|²)]: its nearest neighbour is the best q·x
        index = faiss.IndexHNSWFlat(width + 1, HNSW_NEIGHBOURS)
        index.hnsw.efConstruction = EF_CONSTRUCTION
    radius = 0.0
    if kind == "hnsw":
        radius = max((float(np.linalg.norm(form.rows(group.items[i:i + ADD_CHUNK]),
                                           axis=1).max())
                      for i in range(0, len(group.items), ADD_CHUNK)), default=0.0)
    for start in range(0, len(group.items), ADD_CHUNK):  # bounded temporary rows
        rows = form.rows(group.items[start:start + ADD_CHUNK])
        if kind == "hnsw":
            lift = np.sqrt(np.maximum(radius ** 2 - np.square(rows).sum(axis=1), 0.0))
            rows = np.hstack([rows, lift[:, None]]).astype(np.float32)
        index.add(rows)
    return index


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
