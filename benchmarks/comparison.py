"""Backprop against the calculus-class expansion as the problem grows (docs/comparison.md).

    python benchmarks/comparison.py [--budget 10] [--batch 1000] [--out benchmarks/results]

Sweeps the deep chain x_{k+1} = sin(w_k*x_k + x_k) (depth 1...1000) and the scalar-weight MLP
(3 inputs, 2 outputs, hidden width 1...256) through `backpropc.compare`. Once a naive method runs
over its budget it is not run again at larger sizes. Prints a table, writes JSON, and draws a PNG
plot of operations and compile time against size when matplotlib is installed (`pip install
'.[bench]'`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import sympy as sp
from sympy.core.cache import clear_cache

import backpropc as bp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from mlp import mlp_model

CHAIN_DEPTHS = (1, 2, 4, 8, 12, 16, 24, 32, 64, 128, 256, 512, 1000)
MLP_WIDTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def chain_model(depth: int) -> bp.Model:
    # SymPy's cache may hold an equal-but-not-identical chain from a smaller depth; comparing the
    # two recurses once per level, deeper than Python allows. Start from an empty cache.
    clear_cache()
    x = sp.Symbol("x")
    ws = sp.symbols(f"w0:{depth}")
    e = x
    for k in range(depth):
        e = sp.sin(ws[k] * e + e)
    return bp.Model(f"chain{depth}", [], e, list(ws), [x])


def sweep(family: str, sizes, make, budget: float, batch: int) -> list[dict]:
    stopped: set[str] = set()
    results = []
    for size in sizes:
        result = bp.compare(make(size), batch=batch, budget=budget, skip=stopped)
        for row in result.rows:
            if row.status != "ok":
                stopped.add(row.method)
        results.append({"family": family, "size": size, "ops_forward": result.ops_forward,
                        "ratio": result.ratio, "rows": [vars(r) for r in result.rows]})
        cells = "  ".join(f"{r.method}={r.status if r.status != 'ok' else format(r.ops, ',')}"
                          f"{'' if r.compile_s is None else f' ({r.compile_s:.2f}s)'}" for r in result.rows)
        print(f"{family:6} {size:5}  {cells}", flush=True)
    return results


def methods(results: list[dict]) -> list[str]:
    """The methods `bp.compare` ran, in its order."""
    return [row["method"] for row in results[0]["rows"]] if results else []


def markdown(results: list[dict], family: str, size_name: str) -> str:
    names = methods(results)
    lines = [f"| {size_name} | " + " | ".join(f"{m} ops | {m} compile s" for m in names) + " | ratio |",
             "|---" * (2 * len(names) + 2) + "|"]
    for r in results:
        if r["family"] != family:
            continue
        cells = []
        for row in r["rows"]:
            if row["status"] == "ok":
                cells += [f"{row['ops']:,}", f"{row['compile_s']:.3g}"]
            else:
                cells += [row["status"], "-"]
        lines.append(f"| {r['size']} | " + " | ".join(cells) + f" | {r['ratio']:.2f} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install '.[bench]')")
        return False
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, (family, label) in enumerate((("chain", "chain depth"), ("mlp", "MLP hidden width"))):
        for method, marker in zip(methods(results), "os^"):
            points = [(r["size"], row) for r in results if r["family"] == family
                      for row in r["rows"] if row["method"] == method and row["status"] == "ok"]
            if not points:
                continue
            sizes = [p[0] for p in points]
            axes[0, col].loglog(sizes, [p[1]["ops"] for p in points], marker=marker, label=method)
            axes[1, col].loglog(sizes, [p[1]["compile_s"] for p in points], marker=marker, label=method)
        axes[0, col].set_title(f"operations of value and gradient vs {label}")
        axes[1, col].set_title(f"compile time (s) vs {label}")
        for row in range(2):
            axes[row, col].set_xlabel(label)
            axes[row, col].grid(True, which="both", alpha=0.3)
            axes[row, col].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per naive method and size")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = sweep("chain", CHAIN_DEPTHS, chain_model, args.budget, args.batch)
    results += sweep("mlp", MLP_WIDTHS, lambda n: mlp_model(3, n, 2, name=f"mlp{n}"), args.budget, args.batch)
    meta = {"budget_s": args.budget, "batch": args.batch, "python": platform.python_version(),
            "numpy": np.__version__, "sympy": sp.__version__, "backpropc": bp.__version__,
            "machine": platform.machine(), "cpus": __import__("os").cpu_count()}
    (out / "comparison.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print()
    print(markdown(results, "chain", "depth"))
    print()
    print(markdown(results, "mlp", "width"))
    if plot(results, out / "comparison.png"):
        print(f"plot: {out / 'comparison.png'}")
    print(f"json: {out / 'comparison.json'}")


if __name__ == "__main__":
    main()
