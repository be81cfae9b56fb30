"""Smoke test of benchmarks/calls.py --quick: every problem and method is in the JSON it promises,
with JAX's columns when JAX is installed (timings are never asserted: they live in benchmarks/)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "calls.py"


def test_quick_run_writes_every_problem_and_method(tmp_path):
    have_jax = importlib.util.find_spec("jax") is not None
    command = [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)] + ([] if have_jax else ["--no-jax"])
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "| problem | n | m |" in result.stdout
    data = json.loads((tmp_path / "calls.quick.json").read_text())
    rows = data["rows"]
    assert [r["number"] for r in rows] == [1, 7, 35, 21]
    assert [r["extra"] for r in rows] == [False] * 3 + [True]
    methods = {"backpropc", "floats", "float64"} | ({"jax"} if have_jax else set())
    for row in rows:
        assert set(row["us"]) == methods and all(v > 0 for v in row["us"].values())
        assert row["float64_over_floats"] == row["us"]["float64"] / row["us"]["floats"]
        if have_jax:
            assert row["vs_jax"]["backpropc"] == row["us"]["backpropc"] / row["us"]["jax"]
            assert row["agrees"] < 1e-10      # backpropc and JAX computed the same value and gradient
        else:
            assert row["vs_jax"] is None and row["agrees"] is None
    summary = data["summary"]
    assert summary["problems"] == 3
    if have_jax:
        assert summary["backpropc"]["max_vs_jax"] >= summary["backpropc"]["median_vs_jax"]
        assert summary["extended_rosenbrock"]["n"] == 10
