"""Smoke test of benchmarks/indexed_data.py --quick: the blocked decay fit agrees with
hand-written NumPy on a series and on a batch of series (the script asserts it); timings are
never asserted."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "indexed_data.py"


def test_quick_run_agrees_with_numpy_for_a_series_and_a_batch(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
                            check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(1, 1000), (3, 500)]
    assert not list(tmp_path.iterdir())  # --quick writes nothing
