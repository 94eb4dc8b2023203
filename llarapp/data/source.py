"""The synth stage's artifact: synthetic slices, or a pointer to the user's data.

A pointer keeps one pipeline for both cases (KFP's local runner cannot merge the outputs
of two conditional branches) and avoids copying large data between stages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llarapp.data.synth import SynthConfig, run_synth
from llarapp.errors import StorageNotFoundError
from llarapp.manifest import read_manifest, write_manifest
from llarapp.storage import atomic_dir, exists, parse_uri

POINTER_KIND = "mpd-source"


def resolve_data_source(output: str | os.PathLike[str], data_uri: str = "",
                        **synth_values: Any) -> dict[str, Any]:
    if not data_uri:
        return run_synth(SynthConfig(**synth_values), output)
    loc = parse_uri(data_uri)
    uri = str(loc) if loc.is_s3 else str(Path(loc.key).resolve())
    if not loc.is_s3 and not exists(uri):
        raise StorageNotFoundError(f"data {data_uri!r} does not exist (resolved to {uri})")
    with atomic_dir(output) as folder:
        return write_manifest(folder, POINTER_KIND, 1, uri=uri)


def source_uri(folder: str | os.PathLike[str]) -> str:
    """Where the slices of a synth artifact are: the folder itself or the pointed-to URI."""
    manifest = read_manifest(folder)
    return manifest["uri"] if manifest["kind"] == POINTER_KIND else str(folder)
