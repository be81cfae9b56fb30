"""Smoke tests of benchmarks/indexed_hessian.py and benchmarks/mgh_hessian.py --quick: each
Hessian agrees with JAX's or with the Hessian-vector products (the scripts assert it), and the
structure costs what the problem's band says; timings are never asserted."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "indexed_hessian.py"


def test_quick_run_reads_each_problems_band(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
                            check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "indexed_hessian.quick.json").read_text())
    rows = data["rows"]
    products = {(r["problem"], r["n"]): (r["products"], r["nonzeros"]) for r in rows}
    assert products[("rosenbrock", 10)] == (3, 28) and products[("rosenbrock", 100)] == (3, 298)
    assert products[("powell", 12)] == (4, 36)  # three 4 x 4 blocks, each with 12 structural non-zeros
    assert products[("broyden", 10)] == (5, 44)
    assert products[("lennard_jones", 13)] == (39, 39 * 39)  # every atom meets every other
    assert all(r["agrees"] < 1e-10 for r in rows)
    # the modules of named size give the same pattern (the script asserts it) and the same values
    assert {(r["problem"], r["n"]) for r in data["named"]} == {("rosenbrock", 10), ("rosenbrock", 100),
                                                               ("powell", 12), ("broyden", 10)}
    assert all(r["difference"] < 1e-12 for r in data["named"])


def test_mgh_hessian_quick_run_writes_every_problem_out(tmp_path):
    script = SCRIPT.parent / "mgh_hessian.py"
    result = subprocess.run([sys.executable, str(script), "--quick", "--no-jax", "--out", str(tmp_path)],
                            check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "mgh_hessian.quick.json").read_text())["rows"]
    assert [r["form"] for r in rows] == ["straight-line"] * 3 and all(r["agrees"] < 1e-10 for r in rows)
