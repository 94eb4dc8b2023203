"""Notebooks are committed without outputs, and 01 runs on tiny data. (02 and 03 need a
trained run; tests/test_newcomer.py runs them on the fresh clone's `make run`.)"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from notebook_runner import run_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == ["01_data_exploration", "02_model_evaluation",
                                           "03_serving_walkthrough"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} has outputs; clear them with `make notebooks-clean`")


def test_data_exploration_runs_on_tiny_data(synthetic_slices, tmp_path):
    notebook = run_notebook(REPO / "notebooks" / "01_data_exploration.ipynb", cwd=REPO,
                            env={"LLARAPP_DATA": str(synthetic_slices)})
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # the plots
    assert any(str(synthetic_slices) in o.get("text", "") for o in outputs)


def test_the_kernel_runs_on_the_interpreter_asked_for(tmp_path):
    """tests/test_newcomer.py runs 02 and 03 on the clone's .venv through this option."""
    path = tmp_path / "which.ipynb"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("import sys; print(sys.executable)")]
    nbformat.write(notebook, path)
    python = Path(sys.executable).with_name("python3")  # same venv, another name
    ran = run_notebook(path, cwd=tmp_path, env={}, python=python)
    assert ran.cells[0].outputs[0]["text"].strip() == str(python)
