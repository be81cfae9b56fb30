"""Compile time: `bp.compile` (value and gradient) against `sympy.lambdify` of the forward
expression alone and SymEngine's `Lambdify(cse=True)` of value and gradient.

    python benchmarks/compile_time.py [--quick] [--rounds 5] [--out benchmarks/results] [--docs docs/benchmarks.md]

Workloads, each written as a user would (Python loops over scalar symbols): extended Rosenbrock
(MGH 21, `benchmarks/mgh.py`) with N = 100, 300, 1000 symbols x0..x{N-1}, the chained Rosenbrock
of benchmarks/run.py at the same N, and the scalar-weight MLP of examples/mlp.py with 3 inputs, 128
hidden units and 2 outputs. Every compile starts from an empty SymPy cache; the three methods take
turns, round after round, in this one process, and each time is the median over the rounds.

Reports the ratio bp.compile / lambdify (goal <= 0.5), bp.compile / SymEngine, and the log-log
slope of compile time against N (goal <= 1.1). Prints a table, writes compile_time.json (with
--quick: N = 10, 30, 100, MLP width 8, compile_time.quick.json, docs left alone) and, in the full
mode, the compile-time section of docs/benchmarks.md.
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

import baselines as bl
import mgh
import numpy as np
import sympy as sp
import workloads as wl
from measuring import interleaved_times, loadavg
from sympy.core.cache import clear_cache

import backpropc as bp

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO, GOAL_SLOPE = 0.5, 1.1


def cases(quick: bool) -> list[tuple[str, int, object]]:
    """(family, size, function building the model)."""
    sizes = (10, 30, 100) if quick else (100, 300, 1000)
    mlp_model = wl.example_function("mlp", "mlp_model")
    width = 8 if quick else 128
    result = [("extended Rosenbrock", n, mgh.extended_rosenbrock_problem(n).model) for n in sizes]
    result += [("chained Rosenbrock", n, lambda n=n: wl.rosenbrock_model(n)) for n in sizes]
    result.append(("scalar MLP 3-n-2", width, lambda: mlp_model(3, width, 2, name=f"mlp{width}")))
    return result


def measure(family: str, size: int, build, rounds: int, se) -> dict:
    clear_cache()
    model = build()
    loss, symbols = bl.inlined_loss(model)          # the forward expression lambdify is given
    compiled = bp.compile(model)
    args = [symbols.get(name) or sp.Symbol(name) for name in compiled.args]

    def symengine():
        expr = bl.to_symengine(loss, se)
        wrt = [se.Symbol(w) for w in compiled.wrt]
        return se.Lambdify([se.Symbol(a) for a in compiled.args], [expr] + [expr.diff(w) for w in wrt], cse=True)

    functions = {"backpropc": lambda: bp.compile(model),
                 "lambdify": lambda: sp.lambdify(args, loss, modules=[bl.NAIVE_NAMESPACE, "numpy"])}
    if se is not None:
        functions["symengine"] = symengine
    times = interleaved_times(functions, rounds, before=clear_cache)
    row = {"family": family, "size": size, "n_wrt": len(compiled.wrt), "ops_forward": compiled.ops["forward"],
           "ops_value_and_grad": compiled.ops["value_and_grad"],
           "seconds": {name: statistics.median(t) for name, t in times.items()}, "times": times}
    row["agrees"] = _agreement(compiled, functions, args)
    s = row["seconds"]
    row["bp_over_lambdify"] = s["backpropc"] / s["lambdify"]
    row["bp_over_symengine"] = s["backpropc"] / s["symengine"] if "symengine" in s else None
    return row


def _agreement(compiled, functions, args) -> float:
    """Largest relative difference of the three functions' values (and backpropc's gradient
    against SymEngine's) at one random point: the methods must have built the same function."""
    rng = np.random.default_rng(0)
    point = rng.uniform(-1, 1, len(args))
    value, grads = compiled.load().value_and_grad(*point.tolist())
    ours = np.concatenate([[value], np.ravel(np.asarray(grads, dtype=float))])
    diffs = [abs(float(functions["lambdify"]()(*point)) - value) / max(abs(value), 1e-300)]
    if "symengine" in functions:
        theirs = np.asarray(functions["symengine"]()(point), dtype=float).ravel()
        diffs.append(float(np.max(np.abs(theirs - ours)) / np.max(np.abs(ours))))
    return max(diffs)


def slopes(rows: list[dict]) -> dict:
    """Least-squares log-log slope of each method's time against N, per family with several N."""
    result = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        points = [r for r in rows if r["family"] == family]
        if len(points) < 2:
            continue
        x = np.log([r["size"] for r in points])
        result[family] = {name: float(np.polyfit(x, np.log([r["seconds"][name] for r in points]), 1)[0])
                          for name in points[0]["seconds"]}
    return result


def _s(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:,.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(data: dict) -> str:
    lines = [("| workload | N | ops fwd / vg | bp.compile | lambdify (forward only) | SymEngine Lambdify (value + grad) "
             "| bp / lambdify | bp / SymEngine | agree |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        s = r["seconds"]
        se_ratio = "-" if r["bp_over_symengine"] is None else f"{r['bp_over_symengine']:.2f}"
        lines.append(f"| {r['family']} | {r['size']:,} | {r['ops_forward']:,} / {r['ops_value_and_grad']:,} | "
                     f"{_s(s['backpropc'])} | {_s(s['lambdify'])} | {_s(s.get('symengine'))} | "
                     f"{r['bp_over_lambdify']:.2f} | {se_ratio} | {r['agrees']:.0e} |")
    lines += ["", "| workload | slope bp.compile | slope lambdify | slope SymEngine |", "|---|---:|---:|---:|"]
    for family, s in data["slopes"].items():
        lines.append(f"| {family} | {s['backpropc']:.2f} | {s['lambdify']:.2f} | "
                     f"{'-' if 'symengine' not in s else format(s['symengine'], '.2f')} |")
    return "\n".join(lines)


def goals(data: dict) -> list[str]:
    """The issue's goals, each with its measured value and whether it is met."""
    out = []
    largest = {}
    for r in data["rows"]:
        if r["size"] >= largest.get(r["family"], {"size": 0})["size"]:
            largest[r["family"]] = r
    for family, r in largest.items():
        met = "met" if r["bp_over_lambdify"] <= GOAL_RATIO else "not met"
        out.append(f"bp.compile / lambdify on {family} at N = {r['size']:,}: {r['bp_over_lambdify']:.2f} "
                   f"(goal <= {GOAL_RATIO}: {met})")
    for family, s in data["slopes"].items():
        met = "met" if s["backpropc"] <= GOAL_SLOPE else "not met"
        out.append(f"compile-time slope on {family}: {s['backpropc']:.2f} (goal <= {GOAL_SLOPE}: {met})")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 rounds: a smoke test")
    parser.add_argument("--rounds", type=int, default=None, help="compiles per method and size (default 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--docs", type=Path, default=None,
                        help="markdown to update (default docs/benchmarks.md; not written by --quick)")
    parser.add_argument("--no-symengine", action="store_true", help="leave SymEngine out")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    se = None
    if not args.no_symengine:
        try:
            import symengine as se
        except ImportError:
            print("symengine is not installed (pip install '.[bench]'): its column is left out")
    started, load_start, t0 = time.strftime("%Y-%m-%d %H:%M %Z"), loadavg(), time.perf_counter()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bp.errors.UnusedWrtWarning)
        for family, size, build in cases(args.quick):
            rows.append(measure(family, size, build, rounds, se))
            s = rows[-1]["seconds"]
            print(f"{family} N={size}: " + ", ".join(f"{k} {v:.3g} s" for k, v in s.items()), flush=True)
    data = {"meta": {"mode": "quick" if args.quick else "full", "rounds": rounds, "started": started,
                     "duration_s": time.perf_counter() - t0, "loadavg_start": load_start, "loadavg_end": loadavg(),
                     "python": platform.python_version(), "sympy": sp.__version__, "numpy": np.__version__,
                     "symengine": getattr(se, "__version__", None), "backpropc": bp.__version__,
                     "command": "python " + " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:]))},
            "rows": rows}
    data["slopes"] = slopes(rows)
    data["goals"] = goals(data)
    print()
    print(table(data))
    print()
    print("\n".join(data["goals"]))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("compile_time.quick.json" if args.quick else "compile_time.json")
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"json: {path}")
    docs = args.docs or (None if args.quick else ROOT / "docs" / "benchmarks.md")
    if docs:
        import reporting
        reporting.update_section(docs, reporting.COMPILE_TIME_TITLE, reporting.section_compile_time(data))
        print(f"docs: {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
