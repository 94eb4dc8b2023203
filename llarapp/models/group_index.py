"""One item group's faiss index: how its rows are laid out, built, saved and searched.

:class:`~llarapp.models.hybrid_index.HybridIndex` asks each group (warm or cold tracks)
for its best rows under a per-query inner product ``q·[v, x]`` (graph block v, text block
x). The approximate kinds return candidate rows whose scores the caller recomputes
exactly from the item vectors, so a miss can drop a track but never misorder one.

* ``flat``: ``IndexFlatIP`` over [v, x]; exact.
* ``hnsw``: ``IndexHNSWFlat`` in L2 over [v, x] *lifted* to a common norm R with one
  more coordinate √(R² − |u|²). Then |[q, 0] − [u, √(R² − |u|²)]|² = |q|² + R² − 2 q·u, so
  the nearest neighbour is the best inner product (searched with inner products directly,
  HNSW's top-20 recall stalled near 0.98). Search width: ``efSearch``.
* ``ivf``: ``IndexIVFFlat`` in L2 over the same lift of [v, Pᵀ(x − μ)], where P holds
  the top :data:`TEXT_COMPONENTS` principal axes of the catalogue's text vectors (a
  ``faiss.PCAMatrix``, mean μ, saved beside the groups' indexes). The graph block stays
  whole, and

      q·[v, x] = [q_g, Pᵀq_t]·[v, Pᵀ(x − μ)] + q_t·μ + q_tᵀ(I − PPᵀ)(x − μ)

  so the search ranks by the hybrid score up to a per-query constant and the text
  residual; it returns :data:`REFINE` × the rows asked for (at least :data:`REFINE_ROWS`),
  and exact rescoring keeps the best. The cells are k-means (10 iterations) over the group,
  :data:`CELLS_PER_ROOT`·√n of them, trained on :data:`TRAIN_PER_CELL` rows each. Search
  width: ``nprobe``, the cells visited. On mpd-popular's 133k warm tracks the misses came
  from the cells, not the projection (every cell probed: top-20 recall 0.9996), and twice
  the cells reached the same recall in two thirds of the time. At equal recall it searched
  in half HNSW's time, and its file is half the size (README, "Retrieval").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from llarapp.models.hybrid_index import GroupForm, HybridForm

INDEX_KINDS = ("flat", "hnsw", "ivf")
GROUPS = ("warm", "cold")  # one index each, saved as <group>.faiss
DEFAULT_WIDTH = {"flat": 0, "hnsw": 256, "ivf": 32}  # efSearch, nprobe
HNSW_NEIGHBOURS, EF_CONSTRUCTION = 32, 80
TEXT_COMPONENTS = 192  # 89% of mpd-popular's text variance
CELLS_PER_ROOT, TRAIN_PER_CELL, KMEANS_ITERATIONS = 8, 39, 10  # faiss warns below 39 a cell
REFINE, REFINE_ROWS = 2, 160  # title-only queries ask 20 rows; 40 candidates lost 2% more
ADD_CHUNK = 65_536  # tracks per index.add: bounds the temporary rows
PCA_FILE = "text_pca.faiss"
PCA_SAMPLE = 200_000  # text rows the principal axes are fitted on
SEED = 0


def index_files(kind: str, folder: str) -> tuple[str, ...]:
    """The files :meth:`SearchSpace.save` and the groups' indexes write under ``folder``."""
    groups = tuple(f"{folder}/{name}.faiss" for name in GROUPS)
    return (*groups, f"{folder}/{PCA_FILE}") if kind == "ivf" else groups


def check_kind(kind: str) -> None:
    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")


@dataclass(frozen=True)
class SearchSpace:
    """The vectors a kind of index holds and is searched with (module docstring)."""

    kind: str
    text_pca: Any = None  # faiss.PCAMatrix, for ``ivf`` only

    @classmethod
    def fit(cls, kind: str, item_text: np.ndarray) -> SearchSpace:
        """The kind's space for this catalogue (``ivf`` fits its text axes here)."""
        check_kind(kind)
        if kind != "ivf":
            return cls(kind)
        import faiss

        width = item_text.shape[1]
        pca = faiss.PCAMatrix(width, min(TEXT_COMPONENTS, width))
        pick = np.random.default_rng(SEED).permutation(len(item_text))[:PCA_SAMPLE]
        pca.train(np.ascontiguousarray(item_text[np.sort(pick)], np.float32))
        return cls(kind, pca)

    @classmethod
    def load(cls, kind: str, folder: Path) -> SearchSpace:
        check_kind(kind)
        if kind != "ivf":
            return cls(kind)
        import faiss

        return cls(kind, faiss.read_VectorTransform(str(folder / PCA_FILE)))

    def save(self, folder: Path) -> None:
        if self.text_pca is not None:
            import faiss

            faiss.write_VectorTransform(self.text_pca, str(folder / PCA_FILE))

    @cached_property
    def _text_axes(self) -> np.ndarray:
        import faiss

        pca = self.text_pca
        return faiss.vector_to_array(pca.A).reshape(pca.d_out, pca.d_in)

    def rows(self, form: HybridForm, items: np.ndarray) -> np.ndarray:
        """The (unlifted) rows that stand for these tracks in the index."""
        if self.text_pca is None:
            return form.rows(items)
        text = self.text_pca.apply(np.ascontiguousarray(form.item_text[items], np.float32))
        return np.hstack([form.item_graph[items], text]).astype(np.float32)

    def queries(self, vectors: np.ndarray, graph_width: int) -> np.ndarray:
        """The search vectors of per-query weights ``vectors`` ([graph, text] blocks)."""
        if self.text_pca is not None:  # the axes only: the mean shifts a query's scores
            vectors = np.hstack([vectors[:, :graph_width],
                                 vectors[:, graph_width:] @ self._text_axes.T])
        if self.kind != "flat":
            vectors = np.hstack([vectors, np.zeros((len(vectors), 1))])
        return np.ascontiguousarray(vectors, np.float32)

    def build(self, form: HybridForm, group: GroupForm):
        """The group's faiss index over :meth:`rows`, lifted for the L2 kinds."""
        import faiss

        items = group.items
        chunks = range(0, len(items), ADD_CHUNK)
        width = self.rows(form, items[:1]).shape[1]
        if self.kind == "flat":
            index = faiss.IndexFlatIP(width)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(width + 1, HNSW_NEIGHBOURS)
            index.hnsw.efConstruction = EF_CONSTRUCTION
        else:
            cells = max(1, min(round(CELLS_PER_ROOT * len(items) ** 0.5),
                               len(items) // TRAIN_PER_CELL))
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(width + 1), width + 1, cells)
            index.cp.seed, index.cp.niter = SEED, KMEANS_ITERATIONS
        radius = 0.0 if self.kind == "flat" else max(
            (float(np.linalg.norm(self.rows(form, items[i:i + ADD_CHUNK]), axis=1).max())
             for i in chunks), default=0.0)

        def lifted(part: np.ndarray) -> np.ndarray:
            rows = self.rows(form, part)
            if self.kind == "flat":
                return rows
            lift = np.sqrt(np.maximum(radius ** 2 - np.square(rows).sum(axis=1), 0.0))
            return np.hstack([rows, lift[:, None]]).astype(np.float32)

        if self.kind == "ivf" and len(items):
            sample = np.random.default_rng(SEED).permutation(len(items))[
                :TRAIN_PER_CELL * index.nlist]
            index.train(lifted(items[np.sort(sample)]))
        for start in chunks:
            index.add(lifted(items[start:start + ADD_CHUNK]))
        return index

    def search(self, index, queries: np.ndarray, depth: int, widths: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """(rows, scores): ``depth`` rows and their exact scores for ``flat``; for the
        approximate kinds more candidate rows (-1 padded) and None, to be rescored."""
        if self.kind == "flat":
            scores, rows = index.search(queries, depth)
            return rows, scores
        import faiss

        if self.kind == "ivf":
            depth = min(max(depth * REFINE, REFINE_ROWS), index.ntotal)
        rows = np.empty((len(queries), depth), np.int64)
        for width in np.unique(widths):
            part = widths == width
            params = (faiss.SearchParametersHNSW(efSearch=int(width)) if self.kind == "hnsw"
                      else faiss.SearchParametersIVF(nprobe=int(width)))
            rows[part] = index.search(queries[part], depth, params=params)[1]
        return rows, None

