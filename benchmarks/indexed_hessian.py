"""Hessians of indexed models: the structure read entry by entry, against jax.jit(jax.hessian).

    python benchmarks/indexed_hessian.py [--quick] [--repeats 7] [--out benchmarks/results]

The four problems of benchmarks/arrays.py (extended Rosenbrock, extended Powell, Broyden
tridiagonal, a Lennard-Jones cluster), each written once with IndexedBase and Sum, compiled at
each n as a number in the shape with derivatives=("grad", "hvp", "hessian"). For each: the
compile time, the generated source's size, the structural non-zeros and the products (colours)
a Hessian costs, the median time of hessian_coo (the non-zeros) and hessian_flat (the n x n
array), one hvp_flat, and jax.jit(jax.hessian) of the same function where a dense Hessian fits
(n <= 1,000). Every Hessian is checked: against JAX's where it runs, else its product with a
random direction against hvp_flat. Then each problem but the Lennard-Jones cluster (whose pairs
are a nested Sum) compiled once over a named n: the families of entries of backpropc/stencil.py,
their indices built per call. For each n: its hessian_coo on the first call (which sorts the
pattern) and on later calls (which reuse it), against the numeric module's hessian_coo above,
and the largest difference of the two Hessians. Prints both tables and writes
indexed_hessian.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import sympy as sp
from arrays import PROBLEMS, jax_functions, point
from mgh_hessian import format_time
from mgh_hessian import median_call as median

import backpropc as bp

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"rosenbrock": (10, 100, 1000, 10 ** 4, 10 ** 6), "powell": (12, 100, 1000, 10 ** 4, 10 ** 6),
         "broyden": (10, 100, 1000, 10 ** 4, 10 ** 6), "lennard_jones": (13, 38, 100)}
QUICK = {"rosenbrock": (10, 100), "powell": (12,), "broyden": (10,), "lennard_jones": (13,)}
JAX_MAX = 1000  # parameters: a dense n x n Hessian past this is gigabytes of intermediates


def jax_hessians():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax_functions()  # float64 on the CPU

    def rosenbrock(x):
        return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    def powell(x):
        X = x.reshape(-1, 4)
        return jnp.sum((X[:, 0] + 10 * X[:, 1]) ** 2 + 5 * (X[:, 2] - X[:, 3]) ** 2
                       + (X[:, 1] - 2 * X[:, 2]) ** 4 + 10 * (X[:, 0] - X[:, 3]) ** 4)

    def broyden(x):
        padded = jnp.concatenate((jnp.zeros(1), x, jnp.zeros(1)))
        f = (3 - 2 * x) * x - padded[:-2] - 2 * padded[2:] + 1
        return jnp.sum(f * f)

    def lennard_jones(x):
        X = x.reshape(-1, 3)
        a, b = np.triu_indices(X.shape[0], 1)
        r2 = jnp.sum((X[a] - X[b]) ** 2, axis=1)
        return jnp.sum(4 * (r2 ** -6 - r2 ** -3))

    def compiled(f):
        h = jax.jit(jax.hessian(f))
        return lambda v: np.asarray(jax.block_until_ready(h(v)))
    return {f.__name__: compiled(f) for f in (rosenbrock, powell, broyden, lennard_jones)}


def measure(name: str, model, shape: tuple, repeats: int, jax) -> tuple[dict, object]:
    """(the row of the table, the module)."""
    start = time.perf_counter()
    compiled = bp.compile(model, derivatives=("grad", "hvp", "hessian"))
    compile_s = time.perf_counter() - start
    module = compiled.load()
    x = point(name, shape)
    theta = x.ravel()
    rows, cols, values = module.hessian_coo(x)
    p = np.random.default_rng(1).standard_normal(theta.size)
    row = {"problem": name, "parameters": theta.size, "compile_s": compile_s,
           "source_kb": len(compiled.source) / 1000, "nonzeros": len(rows),
           "products": compiled.ops["hessian_products"],
           "hessian_coo_s": median(lambda: module.hessian_coo(x), repeats),
           "hvp_s": median(lambda: module.hvp_flat(theta, p), repeats)}
    if theta.size <= JAX_MAX:  # n x n float64s
        row["hessian_flat_s"] = median(lambda: module.hessian_flat(theta), repeats)
    if jax is not None and theta.size <= JAX_MAX:
        row["jax_hessian_s"] = median(lambda: jax[name](theta), repeats)
        ours, ref = module.hessian_flat(theta), jax[name](theta)
    else:  # the non-zeros times a direction, against hvp_flat
        ours, ref = np.zeros(theta.size), module.hvp_flat(theta, p)
        np.add.at(ours, rows, values * p[cols])
    row["agrees"] = float(np.max(np.abs(ours - ref)) / max(1.0, np.max(np.abs(ref))))
    assert row["agrees"] < 1e-10, row
    return row, module


def run(quick: bool, repeats: int) -> dict:
    jax = jax_hessians()
    rows, modules = [], {}
    for name, build, _, shape_of, _, _ in PROBLEMS:
        for n in (QUICK if quick else SIZES)[name]:
            row, modules[(name, n)] = measure(name, build(n), shape_of(n), repeats, jax)
            rows.append({"n": n, **row})
            print(format_row(rows[-1]), flush=True)
    print()
    print(NAMED_HEADER)
    named = []
    for name, build, _, shape_of, _, _ in PROBLEMS:
        if name == "lennard_jones":
            continue
        start = time.perf_counter()
        compiled = bp.compile(build(sp.Symbol("n", integer=True, positive=True)), derivatives=("grad", "hvp", "hessian"))
        compile_s = time.perf_counter() - start
        module = compiled.load()
        for n in (QUICK if quick else SIZES)[name]:
            x = point(name, shape_of(n))
            start = time.perf_counter()
            rows_, cols, values = module.hessian_coo(x)
            first_s = time.perf_counter() - start
            reference = modules[(name, n)].hessian_coo(x)
            assert np.array_equal(rows_, reference[0]) and np.array_equal(cols, reference[1])
            named.append({"problem": name, "n": n, "compile_s": compile_s, "source_kb": len(compiled.source) / 1000,
                          "first_s": first_s, "hessian_coo_s": median(lambda: module.hessian_coo(x), repeats),
                          "numeric_s": next(r["hessian_coo_s"] for r in rows if (r["problem"], r["n"]) == (name, n)),
                          "difference": float(np.max(np.abs(values - reference[2])) / max(1.0, np.max(np.abs(reference[2]))))})
            assert named[-1]["difference"] < 1e-12, named[-1]
            print(format_named(named[-1]), flush=True)
    return {"machine": f"{platform.machine()}, Python {platform.python_version()}, NumPy {np.__version__}",
            "quick": quick, "repeats": repeats, "rows": rows, "named": named}


NAMED_HEADER = ("| problem | n | compile (once) | source | hessian_coo, first call | hessian_coo | numeric module's "
                "hessian_coo | ratio | rel. difference |\n|---|---|---|---|---|---|---|---|---|")


def format_named(r: dict) -> str:
    return (f"| {r['problem']} | {r['n']:,} | {format_time(r['compile_s'])} | {r['source_kb']:.0f} KB "
            f"| {format_time(r['first_s'])} | {format_time(r['hessian_coo_s'])} | {format_time(r['numeric_s'])} "
            f"| {r['hessian_coo_s'] / r['numeric_s']:.2f} | {r['difference']:.0e} |")


HEADER = ("| problem | n | parameters | compile | source | non-zeros | products | hessian_coo | hessian_flat "
          "| hvp_flat | JAX hessian | agrees |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def format_row(r: dict) -> str:
    return (f"| {r['problem']} | {r['n']:,} | {r['parameters']:,} | {format_time(r['compile_s'])} | {r['source_kb']:.0f} KB "
            f"| {r['nonzeros']:,} | {r['products']} | {format_time(r['hessian_coo_s'])} | {format_time(r.get('hessian_flat_s'))} "
            f"| {format_time(r['hvp_s'])} | {format_time(r.get('jax_hessian_s'))} | {r['agrees']:.0e} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    print(HEADER)
    data = run(args.quick, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("indexed_hessian.quick.json" if args.quick else "indexed_hessian.json")
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
