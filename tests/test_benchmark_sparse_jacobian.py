"""Smoke test of benchmarks/sparse_jacobian.py --quick: each sparse Jacobian agrees with one
residuals_jvp per parameter, has the non-zeros of its bands, and least_squares reaches the same
cost with it as with SciPy's sparse finite differences; timings are never asserted."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "sparse_jacobian.py"


def test_quick_run_gives_each_band_and_the_same_fits(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
                            check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "sparse_jacobian.quick.json").read_text())
    nonzeros = {(r["problem"], r["n"]): r["nonzeros"] for r in data["jacobians"]}
    assert nonzeros == {("broyden", 10): 28, ("broyden", 100): 298,  # three bands
                        ("smoothing", 10): 10 + 3 * 9, ("smoothing", 100): 100 + 3 * 99}  # lam: one column
    assert all(r["agrees"] < 1e-12 for r in data["jacobians"])
    for solve in data["solves"]:
        ours, theirs = solve["jacobian_coo"], solve["2-point, jac_sparsity"]
        assert ours["status"] > 0 and abs(ours["cost"] - theirs["cost"]) <= 1e-6 * max(1.0, theirs["cost"])
    # a system written in a loop: three sweeps for its three bands, the same Jacobian written out
    assert [(r["n"], r["re-rolled, coloured"]["sweeps"]) for r in data["loops"]] == [(30, None), (70, 3)]
    assert all(r["agrees"] < 1e-12 for r in data["loops"])
