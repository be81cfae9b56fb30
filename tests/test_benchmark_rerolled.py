"""Smoke test of benchmarks/rerolled.py --quick: every loop-written problem compiles, agrees with
hand-written NumPy (the script asserts it) and is re-rolled once its terms are many; timings are
never asserted (they live in benchmarks/ and docs/arrays.md)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "rerolled.py"


def test_quick_run_reports_every_problem_and_rerolls_the_long_ones(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
                            check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
    assert {r[0] for r in rows} == {"rosenbrock", "powell", "broyden", "lennard_jones"}
    rerolled = {(r[0], int(r[1])): r[2] == "yes" for r in rows}
    assert rerolled[("rosenbrock", 100)] and rerolled[("broyden", 100)] and rerolled[("lennard_jones", 13)]
    assert not rerolled[("rosenbrock", 10)]  # a few terms stay straight-line code on floats
    assert not list(tmp_path.iterdir())      # --quick writes nothing
