"""``llarapp catalogue add``: put brand-new tracks into a serving bundle, no retraining.

A new track gets what a cold training track gets: its text vector from the bundle's ONNX
text encoder and its graph vector from the cold mapper (text → LightGCN space), with
training degree 0, so retrieval treats it as cold (it competes for the cold slots) and the
ranker sees its mapped vector. The result is a new bundle (a new model version, every
file re-hashed), written atomically: the source is never half-changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from llarapp.data.texts import item_texts
from llarapp.errors import DataValidationError
from llarapp.models.mlp_numpy import apply_numpy
from llarapp.serving import bundle as B
from llarapp.serving.bundle_manifest import write_bundle_manifest
from llarapp.serving.index import refresh_cold_index
from llarapp.serving.schema import TrackText
from llarapp.serving.text import OnnxTextEncoder
from llarapp.storage import atomic_dir

# row-aligned with the catalogue; a new track's row is zeros (no training interactions)
ZERO_ROWS = ("vectors/lightgcn_items.npy", "weights/fold_in_weights.npy",
             "weights/item_degree.npy")
STALE = ("vectors/projected.npy",)  # export-time only; serving does not read it


def read_tracks(path: str | os.PathLike[str]) -> pd.DataFrame:
    """New tracks from JSON (a list, or {"tracks": [...]}), CSV or Parquet; each needs
    track_uri and track_name (artist_name, album_name optional)."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError("no such file", file=str(path))
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        rows = data.get("tracks") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise DataValidationError("expected a list of tracks or {\"tracks\": [...]}",
                                      file=str(path))
    elif path.suffix in (".csv", ".parquet"):
        frame = pd.read_csv(path, dtype=str) if path.suffix == ".csv" else pd.read_parquet(path)
        rows = frame.where(frame.notna(), None).to_dict("records")
    else:
        raise DataValidationError("unsupported file type", file=str(path),
                                  fix="use .json, .csv or .parquet")
    tracks = []
    for i, row in enumerate(rows):
        try:
            track = TrackText.model_validate({k: v for k, v in row.items() if v is not None})
        except (ValidationError, AttributeError) as exc:
            raise DataValidationError(f"track {i} is invalid: {exc}", file=str(path)) from None
        if not track.track_uri:
            raise DataValidationError(f"track {i} has no track_uri", file=str(path),
                                      field="track_uri")
        tracks.append(track.model_dump())
    frame = pd.DataFrame(tracks, columns=["track_uri", "track_name", "artist_name",
                                          "album_name"])
    duplicated = frame.loc[frame["track_uri"].duplicated(), "track_uri"]
    if len(duplicated):
        raise DataValidationError(f"{len(duplicated)} track URIs appear twice, e.g. "
                                  f"{duplicated.iloc[0]}", file=str(path), field="track_uri")
    return frame


def add_tracks(bundle_uri: str | os.PathLike[str], tracks: pd.DataFrame,
               output: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``bundle + tracks`` to ``output`` (may be the bundle's own folder)."""
    bundle = B.Bundle.load(bundle_uri)
    catalogue = bundle.catalogue
    new = tracks.loc[~tracks["track_uri"].isin(set(catalogue["track_uri"]))].reset_index(drop=True)
    skipped = len(tracks) - len(new)
    meta = bundle.manifest
    text = OnnxTextEncoder(bundle.path(B.TEXT_ENCODER), bundle.path(B.TEXT_TOKENIZER),
                           int(meta["text_encoder"]["max_length"]))
    text_vectors = text.encode(item_texts(new))
    graph_vectors = apply_numpy(bundle.weights("weights/item_mapper.npz"), text_vectors)
    rows = new.assign(track_idx=np.arange(len(catalogue), len(catalogue) + len(new),
                                          dtype=catalogue["track_idx"].dtype),
                      warm=False, tags=[[] for _ in range(len(new))],
                      tag_scores=[[] for _ in range(len(new))])
    digest = hashlib.sha256("\n".join(new["track_uri"]).encode()).hexdigest()[:8]
    version = f"{bundle.version}+cat{len(new)}-{digest}"
    with atomic_dir(output) as folder:
        shutil.copytree(bundle.folder, folder, dirs_exist_ok=True)
        for name in STALE:
            (folder / name).unlink(missing_ok=True)
        pd.concat([catalogue, rows[catalogue.columns]], ignore_index=True).to_parquet(
            folder / B.CATALOGUE, index=False)
        _append(folder, "vectors/item_text.npy", text_vectors)
        _append(folder, "vectors/item_graph.npy", graph_vectors)
        for name in ZERO_ROWS:
            _append(folder, name, None, len(new))
        refresh_cold_index(folder, bundle.index)
        additions = [*meta.get("catalogue_additions", []),
                     {"tracks": len(new), "skipped_existing": skipped, "from": bundle.version,
                      "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}]
        write_bundle_manifest(folder, **{
            **meta, "model_version": version, "files": B.file_table(folder),
            "created_at": additions[-1]["at"],
            "counts": {**meta["counts"], "tracks": len(catalogue) + len(new)},
            "catalogue_additions": additions})
    return {"model_version": version, "added": len(new), "skipped_existing": skipped,
            "tracks": len(catalogue) + len(new), "bundle": str(output)}


def _append(folder: Path, name: str, rows: np.ndarray | None, count: int = 0) -> None:
    """Append ``rows`` (or ``count`` zero rows) to the .npy ``name``."""
    current = np.load(folder / name)
    extra = (rows if rows is not None
             else np.zeros((count, *current.shape[1:]), dtype=current.dtype))
    np.save(folder / name, np.concatenate([current, extra.astype(current.dtype)]))
