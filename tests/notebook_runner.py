"""Execute a notebook with nbclient in a given folder and environment; a failing cell
raises with its traceback."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from unittest import mock

import nbformat
from nbclient import NotebookClient


def run_notebook(path: Path, cwd: Path, env: dict[str, str], timeout: int = 600,
                 python: Path | None = None):
    """Run `path` on a kernel of `python` (default: this interpreter), as a user's Jupyter
    would with that environment's ipykernel."""
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as jupyter_path:
        spec = Path(jupyter_path) / "kernels" / "llarapp-test"
        spec.mkdir(parents=True)
        argv = [str(python or sys.executable), "-m", "ipykernel_launcher", "-f",
                "{connection_file}"]
        (spec / "kernel.json").write_text(json.dumps(
            {"argv": argv, "display_name": "llarapp test", "language": "python"}))
        # the kernel inherits this environment; JUPYTER_PATH makes the spec findable
        with mock.patch.dict(os.environ, {**env, "JUPYTER_PATH": jupyter_path}):
            NotebookClient(notebook, kernel_name="llarapp-test", timeout=timeout,
                           resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook
