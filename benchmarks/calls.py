"""Per-call latency of small problems without data: the 35 Moré-Garbow-Hillstrom problems
(benchmarks/mgh.py) and extended Rosenbrock at n = 100, against `jax.jit(jax.value_and_grad(f))`.

    python benchmarks/calls.py [--quick] [--no-jax] [--rounds 15] [--out benchmarks/results] [--docs docs/benchmarks.md]

Each call gets the parameters as an optimiser hands them over, one float64 vector theta:
- **backpropc**: the generated module's `value_and_grad_flat(theta)` where the module has it, else
  `value_and_grad(*theta.tolist())` (the vector unpacked into Python floats, inside the timed call);
- **floats**: `value_and_grad(*floats)` with the Python floats unpacked beforehand;
- **np.float64**: `value_and_grad(*theta)`, each parameter an np.float64 scalar (what iterating
  over the vector gives);
- **JAX**: `jax.jit(jax.value_and_grad(f))(theta)` on CPU in float64 (x64 enabled), f the same
  function written over the array (`Problem.function`), results waited for with block_until_ready.
The methods take turns, round after round, in this one process; each round times a loop of calls
and each figure is the median over the rounds. Reports µs per call, each ratio to JAX, their median
and maximum over the 35 problems, and np.float64 against Python floats. Prints a table, writes
calls.json (--quick: 3 problems and n = 10, a smoke test, calls.quick.json, docs left alone) and,
in the full mode, the per-call section of docs/benchmarks.md.
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

import mgh
import numpy as np
from measuring import interleaved_times, loadavg

import backpropc as bp

ROOT = Path(__file__).resolve().parent.parent
ROUND_S = 0.01          # each round times about this long a loop of calls


def load_jax():
    """jax with float64 on the CPU, or None when it is not installed."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    return jax


def problems(quick: bool) -> list[mgh.Problem]:
    every = mgh.problems()
    if quick:
        return [every[i] for i in (0, 6, 34)] + [mgh.extended_rosenbrock_problem(10)]
    return every + [mgh.extended_rosenbrock_problem(100)]


def flat_call(module):
    """value_and_grad of a flat vector theta, as the module offers it."""
    flat = getattr(module, "value_and_grad_flat", None)
    if flat is not None:
        return flat, "value_and_grad_flat"
    return (lambda theta: module.value_and_grad(*theta.tolist())), "value_and_grad(*theta.tolist())"


def measure(p: mgh.Problem, rounds: int, jax) -> dict:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bp.errors.UnusedWrtWarning)   # problem 34's zero columns
        compiled = bp.compile(p.model())
    compile_s = time.perf_counter() - start
    module = compiled.load()
    theta = np.array(p.x0, dtype=np.float64)
    floats, scalars = theta.tolist(), list(theta)
    flat, form = flat_call(module)
    functions = {"backpropc": lambda: flat(theta), "floats": lambda: module.value_and_grad(*floats),
                 "float64": lambda: module.value_and_grad(*scalars)}
    ours = _flatten(flat(theta))
    row = {"number": p.number, "name": p.name, "n": p.n, "m": p.m, "label": p.label, "compile_s": compile_s,
           "ops_forward": compiled.ops["forward"], "ops_value_and_grad": compiled.ops["value_and_grad"],
           "backpropc_form": form, "jax_compile_s": None, "agrees": None}
    if jax is not None:
        jitted = jax.jit(jax.value_and_grad(p.function(mgh.array_namespace(jax.numpy))))
        start = time.perf_counter()
        theirs = _flatten(jax.block_until_ready(jitted(theta)))
        row["jax_compile_s"] = time.perf_counter() - start
        row["agrees"] = float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-300))
        functions["jax"] = lambda: jax.block_until_ready(jitted(theta))
    per_call = min(_one_call(f) for f in functions.values())
    times = interleaved_times(functions, rounds, number=max(1, int(ROUND_S / per_call)))
    row["us"] = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    us = row["us"]
    row["vs_jax"] = {name: us[name] / us["jax"] for name in ("backpropc", "floats", "float64")} if "jax" in us else None
    row["float64_over_floats"] = us["float64"] / us["floats"]
    return row


def _one_call(f) -> float:
    f()
    start = time.perf_counter()
    f()
    return max(time.perf_counter() - start, 1e-7)


def _flatten(result) -> np.ndarray:
    value, grads = result
    return np.concatenate([[float(value)], np.ravel(np.asarray(grads, dtype=float))])


def summary(rows: list[dict]) -> dict:
    """Median and maximum over the MGH problems (not the extra extended Rosenbrock row)."""
    mgh_rows = [r for r in rows if not r.get("extra")]
    out = {"problems": len(mgh_rows),
           "float64_over_floats_median": statistics.median(r["float64_over_floats"] for r in mgh_rows),
           "float64_over_floats_max": max(r["float64_over_floats"] for r in mgh_rows)}
    if all(r["vs_jax"] for r in rows):
        for name in ("backpropc", "floats", "float64"):
            ratios = [r["vs_jax"][name] for r in mgh_rows]
            worst = max(mgh_rows, key=lambda r: r["vs_jax"][name])
            out[name] = {"median_vs_jax": statistics.median(ratios), "max_vs_jax": max(ratios),
                         "max_problem": worst["label"], "above_1": sum(x > 1 for x in ratios)}
        extra = [r for r in rows if r.get("extra")]
        if extra:
            out["extended_rosenbrock"] = {"n": extra[0]["n"], "vs_jax": extra[0]["vs_jax"]["backpropc"]}
    return out


def table(data: dict) -> str:
    lines = [("| problem | n | m | backpropc µs | floats µs | np.float64 µs | JAX µs | backpropc / JAX | "
             "floats / JAX | float64 / floats | agrees |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        us, vs = r["us"], r["vs_jax"]
        jax = [f"{us['jax']:.1f}", f"{vs['backpropc']:.2f}", f"{vs['floats']:.2f}"] if vs else ["-"] * 3
        cells = ([f"{r['number']} {r['name']}" + (" (extra)" if r.get("extra") else ""), str(r["n"]), str(r["m"])]
                 + [f"{us[k]:.1f}" for k in ("backpropc", "floats", "float64")] + jax
                 + [f"{r['float64_over_floats']:.2f}", "-" if r["agrees"] is None else f"{r['agrees']:.0e}"])
        lines.append("| " + " | ".join(cells) + " |")
    s = data["summary"]
    lines += ["", (f"Over the {s['problems']} MGH problems: np.float64 / floats median "
                  f"{s['float64_over_floats_median']:.2f}, max {s['float64_over_floats_max']:.2f}.")]
    if "backpropc" in s:
        b = s["backpropc"]
        lines[-1] += (f" backpropc / JAX median {b['median_vs_jax']:.2f}, max {b['max_vs_jax']:.2f} "
                      f"({b['max_problem'].strip()}), above 1 on {b['above_1']} of {s['problems']}.")
        if "extended_rosenbrock" in s:
            e = s["extended_rosenbrock"]
            lines[-1] += f" Extended Rosenbrock n = {e['n']}: {e['vs_jax']:.2f}."
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 problems and n = 10, 3 rounds: a smoke test")
    parser.add_argument("--no-jax", action="store_true", help="leave JAX out")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per method and problem (default 15)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--docs", type=Path, default=None,
                        help="markdown to update (default docs/benchmarks.md; not written by --quick)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 15)
    jax = None if args.no_jax else load_jax()
    if jax is None and not args.no_jax:
        print("jax is not installed (pip install '.[bench]'): its columns are left out")
    started, load_start, t0 = time.strftime("%Y-%m-%d %H:%M %Z"), loadavg(), time.perf_counter()
    chosen = problems(args.quick)
    rows = []
    for i, p in enumerate(chosen):
        rows.append(measure(p, rounds, jax))
        rows[-1]["extra"] = i >= len(chosen) - 1     # the extended Rosenbrock row after the 35
        us = rows[-1]["us"]
        print(f"{p.label}: " + ", ".join(f"{k} {v:.1f} µs" for k, v in us.items()), flush=True)
    meta = {"mode": "quick" if args.quick else "full", "rounds": rounds, "started": started,
            "duration_s": time.perf_counter() - t0, "loadavg_start": load_start, "loadavg_end": loadavg(),
            "python": platform.python_version(), "numpy": np.__version__, "backpropc": bp.__version__,
            "jax": None if jax is None else jax.__version__,
            "command": "python " + " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:]))}
    data = {"meta": meta, "rows": rows, "summary": summary(rows)}
    print()
    print(table(data))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("calls.quick.json" if args.quick else "calls.json")
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"json: {path}")
    docs = args.docs or (None if args.quick else ROOT / "docs" / "benchmarks.md")
    if docs:
        import reporting
        reporting.update_section(docs, reporting.CALLS_TITLE, reporting.section_calls(data))
        print(f"docs: {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
