"""The serving bundle: one folder (local or s3://) with everything serving needs, no torch.

    manifest.json            model version, source runs, metrics, a sha256 per file
    ranker.onnx              LLaRA ranker, fp32      ranker.int8.onnx   QInt8   } ranker
    tokenizer/               the ranker's tokenizer.json (LLaRA special tokens)  } llara
    rerank/                  playlists.npz (training playlists, for the candidate features;
                             llara and lambdamart) and lambdamart.txt (lambdamart)
    text_encoder.int8.onnx   cold-start text (titles, unknown tracks)
    text_tokenizer/          the text encoder's tokenizer.json
    catalogue.parquet        track metadata and tags, row i = track_idx i
    vectors/                 item_graph (cold tracks mapped), item_text, lightgcn_items,
                             projected (SR2LLM slot embeddings, when playlist-independent)
    weights/                 LightGCN fold-in, cold mappers (item, title MLP, title kNN)
    report/                  quantization parity and latency (JSON, Markdown, plot)
    drift_reference.json     drift feature bins fitted on validation playlists (optional)

The manifest's ``ranker.kind`` says which ranker the bundle serves (``llara``,
``lambdamart``, or ``retrieval``: the hybrid's own order, no ranker file). Loading checks
every file against the manifest and refuses a missing or changed one. A downloaded MLflow
pyfunc model (``MLmodel`` beside ``artifacts/``, see :mod:`llarapp.recommend.pyfunc`) loads
as the bundle it carries.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from llarapp.errors import BundleError
from llarapp.models.group_index import index_files
from llarapp.serving.bundle_manifest import MANIFEST, parse_manifest
from llarapp.storage import cache_folder, download_dir, parse_uri

RANKER = {"fp32": "ranker.onnx", "int8": "ranker.int8.onnx"}
TEXT_ENCODER = "text_encoder.int8.onnx"
CATALOGUE = "catalogue.parquet"
TOKENIZER = "tokenizer/tokenizer.json"
TEXT_TOKENIZER = "text_tokenizer/tokenizer.json"
PLAYLISTS = "rerank/playlists.npz"  # training playlists, for the candidate features
LAMBDAMART = ("rerank/lambdamart.txt", PLAYLISTS)
RANKER_FILES = {"llara": (*RANKER.values(), TOKENIZER, PLAYLISTS), "lambdamart": LAMBDAMART,
                "retrieval": ()}
REQUIRED = (TEXT_ENCODER, CATALOGUE, TEXT_TOKENIZER, "vectors/item_graph.npy",
            "vectors/item_text.npy", "vectors/lightgcn_items.npy",
            "weights/fold_in_weights.npy", "weights/item_degree.npy",
            "weights/item_mapper.npz", "weights/title_mapper.npz",
            "weights/title_index.npy", "weights/title_targets.npy")
INDEX_FOLDER = "index"  # the retrieval index, when retrieval.index says so
PYFUNC_ARTIFACT = "bundle"  # the bundle's key in a pyfunc model's artifacts
_CHUNK = 1 << 22


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {sha256, bytes}} for every file under ``folder`` but the manifest."""
    return {p.relative_to(folder).as_posix(): {"sha256": sha256(p), "bytes": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def local_bundle(uri: str | os.PathLike[str]) -> Path:
    """A local folder for ``uri``; an s3:// prefix is downloaded to a cache first."""
    loc = parse_uri(uri)
    folder = loc.path if not loc.is_s3 else download_dir(str(uri),
                                                        cache_folder(str(uri), "bundles"))
    return pyfunc_bundle(folder) or folder


def pyfunc_bundle(folder: Path) -> Path | None:
    """The bundle inside an MLflow pyfunc model folder; None for any other folder."""
    import yaml

    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file():
        return None
    flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {})
    artifact = flavor.get("python_function", {}).get("artifacts", {}).get(PYFUNC_ARTIFACT)
    if not artifact:
        raise BundleError(f"{folder} is an MLflow model without a {PYFUNC_ARTIFACT!r} "
                          "artifact; register the bundle with `llarapp register`")
    return folder / artifact["path"]


@dataclass
class Bundle:
    folder: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, uri: str | os.PathLike[str], verify: bool = True) -> Bundle:
        folder = local_bundle(uri)
        path = folder / MANIFEST
        if not path.is_file():
            raise BundleError(f"{uri} is not a serving bundle: it has no {MANIFEST}. Run "
                              "`llarapp export` (or the pipeline's export stage) to write one")
        manifest = json.loads(path.read_text())
        parse_manifest(manifest, uri)  # the schema export wrote; refused with the fix if not
        bundle = cls(folder, manifest)
        if verify:
            bundle.verify()
        return bundle

    def verify(self) -> None:
        """Every required and recorded file exists and matches its sha256."""
        files = self.manifest.get("files", {})
        kind = self.ranker_kind
        if kind not in RANKER_FILES:
            raise BundleError(f"{self.folder}: ranker.kind {kind!r} is not one of "
                              f"{', '.join(RANKER_FILES)}; re-run `llarapp export`")
        for name in (*REQUIRED, *RANKER_FILES[kind], *self.index_files):
            if name not in files:
                raise BundleError(f"{self.folder}: the manifest does not record {name}; the "
                                  "bundle is incomplete. Re-run `llarapp export`")
        for name, expected in files.items():
            path = self.folder / name
            if not path.is_file():
                raise BundleError(f"{self.folder}: {name} is missing. Restore the bundle or "
                                  "re-run `llarapp export`")
            if path.stat().st_size != expected["bytes"] or sha256(path) != expected["sha256"]:
                raise BundleError(f"{self.folder}: {name} does not match its sha256 in "
                                  f"{MANIFEST}; the file was changed or corrupted. Restore the "
                                  "bundle or re-run `llarapp export`")

    def path(self, name: str) -> Path:
        return self.folder / name

    def array(self, name: str) -> np.ndarray:
        """The .npy file mapped read-only: worker processes share its pages (the page
        cache) instead of each holding a copy, and a bundle is never written in place."""
        return np.load(self.folder / name, mmap_mode="r")

    def weights(self, name: str) -> dict[str, np.ndarray]:
        return dict(np.load(self.folder / name))

    @cached_property
    def catalogue(self):
        import pandas as pd

        return pd.read_parquet(self.folder / CATALOGUE)

    @property
    def index(self) -> dict[str, Any] | None:
        """The retrieval index's settings, or None when the catalogue is scored exactly."""
        return self.manifest.get("retrieval", {}).get("index")

    @property
    def index_files(self) -> tuple[str, ...]:
        """The files the retrieval index needs, as the manifest names them."""
        return index_files(self.index["kind"], INDEX_FOLDER) if self.index else ()

    @property
    def ranker_kind(self) -> str:
        return str(self.manifest.get("ranker", {}).get("kind"))

    @property
    def version(self) -> str:
        return str(self.manifest["model_version"])

    def summary(self) -> dict[str, Any]:
        """What ``llarapp bundle-info`` prints."""
        files = self.manifest["files"]
        return {"model_version": self.version, "created_at": self.manifest["created_at"],
                "folder": str(self.folder), "tracks": self.manifest["counts"]["tracks"],
                "ranker": self.ranker_kind,
                "quantization": self.manifest["quantization"]["chosen"],
                "sizes_mb": {n: round(files[n]["bytes"] / 1e6, 2)
                             for n in (*RANKER_FILES[self.ranker_kind], TEXT_ENCODER)},
                "sources": self.manifest["sources"], "metrics": self.manifest["metrics"]}
