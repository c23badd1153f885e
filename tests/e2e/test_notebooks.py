"""The example notebooks, executed top to bottom in a real Jupyter kernel (nbclient + ipykernel): any cell that
raises fails the test. They run in a temporary working directory; outputs are never written back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need the dev extra (nbclient, ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need the dev extra (nbclient, ipykernel)")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "examples").glob("*.ipynb"))


def test_the_examples_hold_both_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"pretrain_in_jupyter.ipynb", "pretrain_mlm_in_jupyter.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        f"{path.name} has committed outputs; clear them (jupyter nbconvert --clear-output --inplace)"
    )
    monkeypatch.setenv("LIT_PRETRAIN_WORKDIR", str(tmp_path / "work"))
    # The kernel imports the project from the repository and runs where the notebook would be opened.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()  # raises CellExecutionError naming the cell and its traceback
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
