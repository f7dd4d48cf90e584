"""docs/tutorial.ipynb: committed without outputs, and it runs (small parameters)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
#: replaces the notebook's cell tagged "parameters" (papermill's convention)
QUICK = "N_CELLS = 200\nEPOCHS = 2\nUMAP = False\nSEED = 0\n"


def test_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "UMAP = True" in tagged[0].source


@pytest.mark.slow
def test_tutorial_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Executed with nbclient in docs/, every cell without error; the API calls wrote what
    the tutorial then reads. NUMBA_DISABLE_JIT: without UMAP numba only serves the kNN graph
    weights on 200 cells, while compiling pynndescent/umap on import costs ~30 s CPU."""
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = QUICK
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    for var, value in {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                       "NUMBA_DISABLE_JIT": "1", "MPLBACKEND": "Agg"}.items():
        monkeypatch.setenv(var, value)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "likelihood: nb" in text
    assert "(200, 10)" in text  # reference.obsm["X_geovae"].shape
    assert "accuracy" in text and "called unknown" in text
    assert "query:" in text and "clusters; ARI" in text and "report.html" in text
    assert not any(o.output_type == "error" for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) == 2, "both plots are shown inline (even with MPLBACKEND=Agg, as in CI)"
