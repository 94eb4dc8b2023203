"""The serving bundle's manifest: one typed, versioned schema (pydantic) that ``export``
and ``catalogue add`` write and :class:`~llarapp.serving.bundle.Bundle` reads.

The sections serving reads (``ranker``, ``text_encoder``, ``retrieval``, ``files``) are
typed field by field and refuse unknown keys, so a writer and a reader can never drift apart
silently; the descriptive ones (``config``, ``sources``, ``metrics``, ``quantization``) are
free-form records of how the bundle was made.

Versions: 1 had both rankers' files in every bundle and no ``ranker.kind``; 2 (current)
ships only the served ranker's files. A bundle of another version is refused with the fix
(re-export); nothing older than 2 was ever released.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llarapp import __version__
from llarapp.errors import BundleError
from llarapp.storage import atomic_write_bytes

KIND = "serving-bundle"
SCHEMA_VERSION = 2
MANIFEST = "manifest.json"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(Section):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class RankerSpec(Section):
    """The served ranker and the prompt layout its ONNX graph was exported with."""

    kind: Literal["llara", "lambdamart", "retrieval"]
    why: str
    selection: list[dict[str, Any]] = []  # eval_llara's validation table behind the choice
    inputs: list[str]
    output: str
    opset: int
    dynamic_axes: dict[str, dict[str, str]]
    graph_dim: int = Field(ge=1)
    num_candidates: int = Field(ge=1)
    history_len: int = Field(ge=1)
    item_tokens: int = Field(ge=1)
    playlist_slot: bool
    max_title_tokens: int = Field(ge=1)
    pad_id: int
    slot_context: bool
    candidate_features: bool
    backbone: str
    parity_max_abs_diff: float | None


class TextEncoderSpec(Section):
    encoder: str
    dim: int = Field(ge=1)
    max_length: int = Field(ge=1)
    pooling: str
    parity: dict[str, float | int]


class RetrievalSpec(Section):
    hybrid_params: dict[str, dict[str, float | int]]  # per query kind (seeded, title_only)
    title_weight: float
    title_query: Literal["knn", "mlp"]
    title_neighbours: int = Field(ge=1)
    title_temperature: float = Field(gt=0)
    index: dict[str, Any] | None  # the faiss index's settings; None: exact scoring


class CatalogueAddition(Section):
    tracks: int
    skipped_existing: int
    at: str
    from_: str = Field(alias="from")


class BundleManifest(Section):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Literal["serving-bundle"] = KIND
    schema_version: int = SCHEMA_VERSION  # parse_manifest refuses any other first
    created_at: str = Field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    llarapp_version: str = __version__
    model_version: str = Field(min_length=1)
    config: dict[str, Any]  # the ExportConfig it was exported with
    sources: dict[str, Any]  # the artifacts and MLflow runs it came from
    metrics: dict[str, float | int]
    quantization: dict[str, Any]  # chosen variant, why, and the int8 parity gate
    counts: dict[str, int]
    files: dict[str, FileEntry]
    ranker: RankerSpec
    text_encoder: TextEncoderSpec
    retrieval: RetrievalSpec
    catalogue_additions: list[CatalogueAddition] = []  # `llarapp catalogue add`, oldest first
    synthetic: dict[str, Any] | None = None  # a benchmark's grown catalogue: how it was made

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def parse_manifest(data: Any, where: str | os.PathLike[str]) -> BundleManifest:
    """``data`` (a manifest.json's content) as the current schema, or a BundleError that
    says what is wrong and how to fix it."""
    if not isinstance(data, dict) or data.get("kind") != KIND:
        kind = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise BundleError(f"{where} holds a {kind!r} artifact, not a {KIND}: give the "
                          "folder export wrote (its `bundle` output), or re-export it")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(f"{where} has bundle schema {data.get('schema_version')}; this "
                          f"llarapp reads {SCHEMA_VERSION}. Re-export it with this version "
                          "(`llarapp export`, or the pipeline's export stage)")
    try:
        return BundleManifest.model_validate(data)
    except ValidationError as exc:
        faults = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                           for e in exc.errors())
        raise BundleError(f"{where}/{MANIFEST} does not follow bundle schema {SCHEMA_VERSION} "
                          f"({faults}). Re-export the bundle with `llarapp export`") from None


def write_bundle_manifest(folder: str | os.PathLike[str], **fields: Any) -> dict[str, Any]:
    """Check ``fields`` against the schema as a reader will see them (JSON), then write
    ``manifest.json`` atomically (the bundle's last file); return its dict."""
    as_read = json.loads(json.dumps(fields, default=str))
    try:
        manifest = BundleManifest.model_validate(as_read)
    except ValidationError as exc:  # a writer bug, not a user error: say where
        raise BundleError(f"export would write a manifest that breaks bundle schema "
                          f"{SCHEMA_VERSION}: {exc}") from None
    data = manifest.to_json()
    atomic_write_bytes(Path(folder) / MANIFEST, json.dumps(data, indent=2).encode())
    return data
