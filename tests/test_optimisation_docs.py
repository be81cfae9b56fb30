"""docs/optimisation.md's examples run as written, and the benchmark scripts behind its tables
(benchmarks/optimisation.py, benchmarks/second_order.py) still work, in their quick modes."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy")   # in the test extra; the docs' examples are SciPy's optimisers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import optimisation

DOC = ROOT / "docs" / "optimisation.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def test_python_blocks_of_the_optimisation_docs_run(monkeypatch, capsys):
    """The blocks share one namespace, in order, from the repository root; each asserts what it
    claims (convergence, the 1/2 sum r^2 convention, shapes), and what they print is shown."""
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 5
    monkeypatch.chdir(ROOT)
    namespace = {"__name__": "optimisation_docs"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}, python block {i + 1}", "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr().out
    for line in re.findall(r"^```text\n(.*?)^```$", DOC.read_text(), flags=re.DOTALL | re.MULTILINE):
        for expected in line.strip().splitlines():
            # the words as shown; the counts may move with SciPy's version by a few steps
            number = r"-?\d[\d.,]*(?:e[+-]?\d+)?"
            pattern = number.join(re.escape(word) for word in re.split(number, expected))
            assert re.search(pattern, printed), f"docs show {expected!r}, the code printed:\n{printed}"


def test_optimisation_benchmark_quick_mode(tmp_path, capsys):
    optimisation.main(["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "optimisation.quick.json").read_text())
    assert "| least_squares (trf) | jacobian_flat |" in capsys.readouterr().out
    assert len(data["problems"]) == len(optimisation.PROBLEMS)
    for problem in data["problems"]:
        rows = problem["rows"]
        exact = [r for r in rows if r["derivatives"].endswith("_flat")]
        differenced = [r for r in rows if not r["derivatives"].endswith("_flat")]
        assert exact and differenced, problem["problem"]
        for r in rows:
            assert r["wall_s"] > 0 and r["nfev"] > 0 and sum(r["calls"].values()) > 0
        # same method, exact or differenced derivatives: the same minimum (or the same local one)
        for r in exact:
            for other in differenced:
                if other["method"] == r["method"]:
                    assert np.isclose(r["objective"], other["objective"], rtol=1e-6, atol=1e-8), (r, other)
        # with an exact Hessian or its products, no gradient is spent on differencing
        for r in exact:
            if r["derivatives"] in ("hvp_flat", "hessian_flat"):
                assert r["calls"]["vg"] <= r["nfev"] + 1, r


def test_second_order_benchmark_structure(tmp_path):
    """Structure only, on two small workloads (timings are never asserted); JAX's side is
    checked against ours when JAX is installed and skipped otherwise."""
    import second_order

    data = second_order.run_all(quick=True, log=lambda *_: None, labels=("logistic", "rosenbrock n=10"))
    assert [r["workload"] for r in data["records"]] == ["logistic", "rosenbrock n=10"]
    logistic, rosenbrock = data["records"]
    assert (logistic["colours"], rosenbrock["colours"]) == (2, 3)   # dense 2 x 2; tridiagonal
    assert rosenbrock["nonzeros"] == 3 * 10 - 2
    assert [row["batch"] for row in logistic["rows"]] == [10**4]
    assert [row["batch"] for row in rosenbrock["rows"]] == [None]
    for record in data["records"]:
        for row in record["rows"]:
            assert all(t > 0 for t in row["ours"].values())
            for name, j in row["jax"].items():
                assert j["status"] == "ok" and j["rel_diff"] < 1e-10, (record["workload"], name, j)
    if data["environment"]["jax"] is not None:
        assert all(set(row["jax"]) == {"hvp", "hessian"} for r in data["records"] for row in r["rows"])
    table = second_order.table(data)
    assert table.count("\n| logistic | 10,000 | 2 | 2 |") == 1 and "| 10 | 28 | 3 |" in table
