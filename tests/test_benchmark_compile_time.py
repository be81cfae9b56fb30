"""Smoke test of benchmarks/compile_time.py --quick: it runs and reports every workload and method
in the JSON it promises (the timings themselves are never asserted: they live in benchmarks/)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "compile_time.py"


def test_quick_run_writes_every_workload_method_ratio_and_slope(tmp_path):
    have_symengine = importlib.util.find_spec("symengine") is not None
    command = [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)]
    result = subprocess.run(command + ([] if have_symengine else ["--no-symengine"]),
                            check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "| workload | N |" in result.stdout and "bp / lambdify" in result.stdout
    data = json.loads((tmp_path / "compile_time.quick.json").read_text())
    assert not (tmp_path / "compile_time.json").exists()
    methods = {"backpropc", "lambdify"} | ({"symengine"} if have_symengine else set())
    families = [r["family"] for r in data["rows"]]
    assert set(families) == {"extended Rosenbrock", "chained Rosenbrock", "scalar MLP 3-n-2"}
    for row in data["rows"]:
        assert set(row["seconds"]) == methods
        assert all(len(t) == data["meta"]["rounds"] for t in row["times"].values())
        assert all(s > 0 for s in row["seconds"].values())
        assert row["bp_over_lambdify"] == row["seconds"]["backpropc"] / row["seconds"]["lambdify"]
        assert row["agrees"] < 1e-9       # the methods built the same function
        assert row["ops_value_and_grad"] > row["ops_forward"] > 0
    # one slope per family swept over several N
    assert set(data["slopes"]) == {"extended Rosenbrock", "chained Rosenbrock"}
    assert all(set(s) == methods for s in data["slopes"].values())
    assert len(data["goals"]) == 5
