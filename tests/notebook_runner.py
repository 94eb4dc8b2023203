"""Execute a notebook with nbclient in a given folder and environment; a failing cell
raises with its traceback."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import nbformat
from nbclient import NotebookClient


def run_notebook(path: Path, cwd: Path, env: dict[str, str], timeout: int = 600):
    notebook = nbformat.read(path, as_version=4)
    with mock.patch.dict(os.environ, env):  # the kernel inherits this environment
        NotebookClient(notebook, kernel_name="python3", timeout=timeout,
                       resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook
