"""Artifact folders: every stage writes one, with a ``manifest.json`` that says what it is.

The manifest is written last, so a folder without one is incomplete and is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from llarapp import __version__
from llarapp.errors import ArtifactError
from llarapp.storage import atomic_write_bytes

MANIFEST = "manifest.json"


def write_manifest(folder: str | os.PathLike[str], kind: str, schema_version: int,
                   **fields: Any) -> dict[str, Any]:
    manifest = {
        "kind": kind,
        "schema_version": schema_version,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "llarapp_version": __version__,
        **fields,
    }
    atomic_write_bytes(Path(folder) / MANIFEST,
                       json.dumps(manifest, indent=2, default=str).encode())
    return manifest


def read_manifest(folder: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ArtifactError(
            f"{folder} has no {MANIFEST}: it is not a finished llarapp artifact. "
            "Re-run the stage that writes it"
        )
    manifest = json.loads(path.read_text())
    if kind is not None and manifest.get("kind") != kind:
        raise ArtifactError(
            f"{folder} holds a {manifest.get('kind')!r} artifact, but a {kind!r} one is needed"
        )
    return manifest


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=2, default=str).encode())

