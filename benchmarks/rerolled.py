"""Scalarised models (Python loops over scalar symbols) re-rolled into array code.

    python benchmarks/rerolled.py [--quick] [--repeats 15] [--out benchmarks/results]

The four problems of benchmarks/arrays.py (extended Rosenbrock in its chained form, extended
Powell, Broyden tridiagonal, a Lennard-Jones cluster), each written as a user with a Python loop
would: one SymPy symbol per coordinate (x0 ... x999), the loss a sum of scalar terms. At each n
(LJ: atoms), in this process:
- compile time of bp.compile with re-rolling (the default) and without (reroll=False);
- the generated module's lines: all of them, and the model's own (before the runtime helpers,
  about 195 lines in these modules);
- one call of value_and_grad_flat(theta) (what scipy.optimize.minimize calls) against the
  hand-written vectorised NumPy of benchmarks/arrays.py, timed in turn, round after round.
Goals (issue: models over arrays): compile <= 0.5 s at n = 1,000, a module under 300 lines, per call
<= 3 x NumPy.
Prints a table and writes rerolled.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from itertools import combinations
from pathlib import Path

import arrays
import numpy as np
import sympy as sp
from sympy.core.cache import clear_cache

import backpropc as bp
from backpropc import runtime

ROOT = Path(__file__).resolve().parent.parent
SIZES, ATOMS = (10, 100, 1000), (13, 38, 100)
QUICK_SIZES, QUICK_ATOMS = (10, 100), (13,)


# ---- the models, written in loops over scalar symbols ----------------------------------------------
def rosenbrock_loop(n: int) -> bp.Model:
    x = sp.symbols(f"x0:{n}")
    terms = [100 * (x[k + 1] - x[k] ** 2) ** 2 + (1 - x[k]) ** 2 for k in range(n - 1)]
    return bp.Model("rosenbrock", loss=sp.Add(*terms), wrt=list(x))


def powell_loop(n: int) -> bp.Model:
    x = sp.symbols(f"x0:{4 * (n // 4)}")  # n // 4 blocks of four, as in benchmarks/arrays.py
    terms = []
    for k in range(0, len(x), 4):
        a, b, c, d = x[k:k + 4]
        terms += [(a + 10 * b) ** 2, 5 * (c - d) ** 2, (b - 2 * c) ** 4, 10 * (a - d) ** 4]
    return bp.Model("powell", loss=sp.Add(*terms), wrt=list(x))


def broyden_loop(n: int) -> bp.Model:
    x = sp.symbols(f"x0:{n}")

    def at(k):
        return x[k] if 0 <= k < n else 0
    terms = [((3 - 2 * x[k]) * x[k] - at(k - 1) - 2 * at(k + 1) + 1) ** 2 for k in range(n)]
    return bp.Model("broyden", loss=sp.Add(*terms), wrt=list(x))


def lennard_jones_loop(atoms: int) -> bp.Model:
    X = [sp.symbols(f"x{a} y{a} z{a}") for a in range(atoms)]
    terms = []
    for i, j in combinations(range(atoms), 2):
        r2 = sum((X[i][k] - X[j][k]) ** 2 for k in range(3))
        terms.append(4 * (r2 ** -6 - r2 ** -3))
    return bp.Model("lennard_jones", loss=sp.Add(*terms), wrt=[c for atom in X for c in atom])


PROBLEMS = [  # (name, model of n, hand-written NumPy, shape of the NumPy argument, sizes)
    ("rosenbrock", rosenbrock_loop, arrays.rosenbrock_numpy, lambda n: (n,), SIZES, QUICK_SIZES),
    ("powell", powell_loop, arrays.powell_numpy, lambda n: (n // 4, 4), SIZES, QUICK_SIZES),
    ("broyden", broyden_loop, arrays.broyden_numpy, lambda n: (n,), SIZES, QUICK_SIZES),
    ("lennard_jones", lennard_jones_loop, arrays.lennard_jones_numpy, lambda n: (n, 3), ATOMS, QUICK_ATOMS),
]


def own_lines(source: str) -> int:
    """The model's own lines: the module up to its copied runtime helpers."""
    helpers = {f"def {name}(" for name in runtime._helpers()}
    return next(k for k, line in enumerate(source.splitlines()) if line[:line.find("(") + 1] in helpers)


def compile_seconds(model, **options) -> tuple[float, bp.Compiled]:
    clear_cache()
    start = time.perf_counter()
    compiled = bp.compile(model, **options)
    return time.perf_counter() - start, compiled


def run(quick: bool, repeats: int) -> dict:
    rows = []
    for name, build, hand, shape_of, sizes, quick_sizes in PROBLEMS:
        for n in quick_sizes if quick else sizes:
            model = build(n)
            seconds, compiled = compile_seconds(model)
            unrolled_seconds, _ = compile_seconds(model, reroll=False) if n <= 1000 else (None, None)
            module = compiled.load()
            v = arrays.point(name, shape_of(n))
            theta = v.ravel()
            value, g = module.value_and_grad_flat(theta)
            hand_value, hand_g = hand(v)
            assert np.isclose(value, hand_value, rtol=1e-9) and np.allclose(g, np.ravel(hand_g), rtol=1e-8, atol=1e-8), \
                f"{name} at n = {n}: the re-rolled module and hand-written NumPy disagree"
            row = {"problem": name, "n": n, "compile_s": seconds, "compile_unrolled_s": unrolled_seconds,
                   "lines": len(compiled.source.splitlines()), "own_lines": own_lines(compiled.source),
                   "rerolled": "_lanes(" in compiled.source}
            if not quick:
                inner = 200 if n <= 100 else 50
                row.update(arrays.interleaved_medians({"backpropc_s": module.value_and_grad_flat,
                                                       "numpy_s": lambda t, s=v.shape, h=hand: h(t.reshape(s))},
                                                      theta, repeats, inner))
            rows.append(row)
            print(format_row(row), flush=True)
    return {"python": platform.python_version(), "numpy": np.__version__, "sympy": sp.__version__,
            "machine": platform.machine(), "load_average": os.getloadavg(), "quick": quick, "rows": rows}


HEADER = (f"{'problem':<14} {'n':>5} {'re-rolled':>9} {'compile':>8} {'unrolled':>9} {'lines':>6} {'own':>5} "
          f"{'backpropc':>10} {'NumPy':>10} {'ratio':>6}")


def format_row(r: dict) -> str:
    bp_s, np_s = r.get("backpropc_s"), r.get("numpy_s")
    unrolled = f"{r['compile_unrolled_s']:.2f}s" if r["compile_unrolled_s"] is not None else "-"
    ratio = f"{bp_s / np_s:.2f}" if bp_s and np_s else "-"
    return (f"{r['problem']:<14} {r['n']:>5} {'yes' if r['rerolled'] else 'no':>9} {r['compile_s']:>7.2f}s "
            f"{unrolled:>9} {r['lines']:>6} {r['own_lines']:>5} {arrays._time(bp_s):>10} {arrays._time(np_s):>10} "
            f"{ratio:>6}")


def markdown(rows: list[dict]) -> str:
    """The table of docs/arrays.md ("Re-rolled scalar models")."""
    lines = ["| problem | n | re-rolled | compile | compile, reroll=False | lines (own) | backpropc | NumPy by hand | ratio |",
             "| --- | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        bp_s, np_s = r.get("backpropc_s"), r.get("numpy_s")
        unrolled = f"{r['compile_unrolled_s']:.2f} s" if r["compile_unrolled_s"] is not None else "-"
        ratio = f"{bp_s / np_s:.2f}" if bp_s and np_s else "-"
        lines.append(f"| {r['problem']} | {r['n']:,} | {'yes' if r['rerolled'] else 'no'} | {r['compile_s']:.2f} s | "
                     f"{unrolled} | {r['lines']} ({r['own_lines']}) | {arrays._time(bp_s).replace('us', 'µs')} | "
                     f"{arrays._time(np_s).replace('us', 'µs')} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small n, no timing: a smoke test of the structure")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    print(HEADER)
    results = run(args.quick, args.repeats)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rerolled.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out / 'rerolled.json'}\n")
        print(markdown(results["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
