"""Hessians of the 35 Moré-Garbow-Hillstrom problems: hessian_flat against jax.jit(jax.hessian).

    python benchmarks/mgh_hessian.py [--quick] [--no-jax] [--calls 200] [--out benchmarks/results]

Each problem (benchmarks/mgh.py: 2 to 11 scalar parameters, no data) is compiled with
derivatives=("grad", "hvp", "hessian"), and its dense Hessian at the published start x0 is timed
per call: the module's hessian_flat(theta) against jax.jit(jax.hessian(f)) of the same function
in jax.numpy (CPU, float64; its compile is left out), the median of --calls calls after a warm-up.
**form** says how the module computes it: "straight-line" (hessian_values: the tangent sweeps of
every colour written out, the directions' 0s and 1s folded in) or "products" (one hvp_flat per
colour). Every Hessian is checked against JAX's, or without JAX against hvp_flat. Prints a table
and writes mgh_hessian.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import mgh
from calls import load_jax

import backpropc as bp

QUICK = (1, 13, 21)  # Rosenbrock, Powell singular, extended Rosenbrock


def median_call(f, calls: int) -> float:
    f()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(p: mgh.Problem, calls: int, jax) -> dict:
    with warnings.catch_warnings():  # a problem whose residuals leave out a parameter says so
        warnings.simplefilter("ignore")
        compiled = bp.compile(p.model(), derivatives=("grad", "hvp", "hessian"))
    module = compiled.load()
    x0 = np.array(p.x0, dtype=float)
    ours = module.hessian_flat(x0)
    row = {"problem": p.label, "n": p.n, "colours": compiled.ops["hessian_products"],
           "form": "straight-line" if "hessian" in compiled.ops else "products",
           "ours_s": median_call(lambda: module.hessian_flat(x0), calls)}
    if jax is not None:
        h = jax.jit(jax.hessian(p.function(mgh.array_namespace(jax.numpy))))
        reference = np.asarray(h(x0))
        row["jax_s"] = median_call(lambda: h(x0).block_until_ready(), calls)
        row["ratio"] = row["ours_s"] / row["jax_s"]
    else:  # the products of the dense Hessian with a direction, from hvp_flat
        p_ = np.random.default_rng(0).standard_normal(x0.size)
        reference, ours = module.hvp_flat(x0, p_), ours @ p_
    row["agrees"] = float(np.max(np.abs(ours - reference)) / max(1.0, float(np.max(np.abs(reference)))))
    assert row["agrees"] < 1e-10, row
    return row


def format_time(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1e6:.3g} µs" if s < 1e-3 else f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def table(rows: list[dict]) -> str:
    lines = ["| problem | colours | form | hessian_flat | JAX hessian | x JAX | agrees |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        jax_cells = f"{format_time(r['jax_s'])} | {r['ratio']:.2f}" if "jax_s" in r else "- | -"
        lines.append(f"| {r['problem']} | {r['colours']} | {r['form']} | {format_time(r['ours_s'])} | {jax_cells} "
                     f"| {r['agrees']:.0e} |")
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    if ratios:
        lines.append(f"\nmedian x JAX {statistics.median(ratios):.2f}, largest {max(ratios):.2f} "
                     f"({sum(r > 1 for r in ratios)} of {len(ratios)} above 1)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 problems, 20 calls: a smoke test")
    parser.add_argument("--no-jax", action="store_true", help="leave JAX out")
    parser.add_argument("--calls", type=int, default=None, help="timed calls per problem (default 200)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    calls = args.calls or (20 if args.quick else 200)
    jax = None if args.no_jax else load_jax()
    chosen = [p for p in mgh.problems() if not args.quick or p.number in QUICK]
    rows = []
    for p in chosen:
        rows.append(measure(p, calls, jax))
        print(f"  {p.label}: {format_time(rows[-1]['ours_s'])}", flush=True)
    print(table(rows))
    data = {"machine": f"{platform.machine()}, Python {platform.python_version()}, NumPy {np.__version__}",
            "calls": calls, "jax": jax is not None, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("mgh_hessian.quick.json" if args.quick else "mgh_hessian.json")
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
