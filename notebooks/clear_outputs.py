"""Clear every code cell's outputs (``make notebooks-clean``); tests/test_notebooks.py
refuses notebooks committed with outputs."""

import sys

import nbformat

for path in sys.argv[1:]:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, path)
