"""The tutorial notebook runs from top to bottom in a fresh kernel, so it cannot rot."""

from pathlib import Path

import nbclient
import nbformat

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_tutorial_notebook_executes_and_shows_its_results():
    notebook = nbformat.read(DOCS / "tutorial.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "store docs/tutorial.ipynb without outputs"
    nbclient.NotebookClient(notebook, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(DOCS)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any(r"\bar{z} &amp;= y \bar{y} \left(1 - y\right)" in h for h in html)     # slide 10
    assert any(r"\bar{h} &amp;= W_{2}^{\top} \bar{y}" in h for h in html)             # slide 17
    assert any("<td>naive_cse</td>" in h for h in html)                                # slide 7
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2                # the geometric view
