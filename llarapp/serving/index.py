"""The bundle's retrieval index (:mod:`llarapp.models.hybrid_index`): built at export for
large catalogues, loaded by the engine, and refreshed when ``llarapp catalogue add`` grows
the catalogue (new tracks are cold, so only the cold group's index is rebuilt).

The index is built from the bundle's own files (item vectors and training degrees), so
what is searched is exactly what the engine would score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llarapp.errors import ArtifactError, BundleError
from llarapp.models.hybrid_index import EF_SEARCH, HybridForm, HybridIndex
from llarapp.serving import bundle as B

KIND = "hnsw"


def form_of(item_graph: np.ndarray, item_text: np.ndarray, degree: np.ndarray) -> HybridForm:
    return HybridForm.build(item_graph, item_text, degree > 0)  # warm: a training edge


def _folder_form(folder: Path) -> HybridForm:
    return form_of(np.load(folder / "vectors/item_graph.npy"),
                   np.load(folder / "vectors/item_text.npy"),
                   np.load(folder / "weights/item_degree.npy"))


def build_index(folder: Path, min_tracks: int) -> dict[str, Any] | None:
    """Write ``index/`` for a catalogue of at least ``min_tracks`` tracks; the manifest's
    ``retrieval.index`` entry, or None (the engine then scores the whole catalogue)."""
    form = _folder_form(folder)
    if form.item_graph.shape[0] < min_tracks:
        return None
    HybridIndex(form, KIND).save(folder / B.INDEX_FOLDER)
    return {"kind": KIND, "ef_search": EF_SEARCH}


def load_index(bundle: B.Bundle, item_graph: np.ndarray, item_text: np.ndarray,
               degree: np.ndarray) -> HybridIndex | None:
    settings = bundle.index
    if not settings:
        return None
    try:
        return HybridIndex.load(bundle.path(B.INDEX_FOLDER), form_of(item_graph, item_text,
                                                                     degree),
                                settings["kind"], int(settings["ef_search"]))
    except ArtifactError as exc:
        raise BundleError(f"{bundle.folder}: {exc}") from None


def refresh_cold_index(folder: Path, settings: dict[str, Any] | None) -> None:
    """After tracks were appended to ``folder``'s vectors: rebuild the cold group's index."""
    if not settings:
        return
    HybridIndex.load(folder / B.INDEX_FOLDER, _folder_form(folder), settings["kind"],
                     int(settings["ef_search"]), rebuild=("cold",)).save(folder / B.INDEX_FOLDER)
