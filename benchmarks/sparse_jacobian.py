"""Sparse Jacobians of residuals over a range, and least_squares with them.

    python benchmarks/sparse_jacobian.py [--quick] [--repeats 7] [--out benchmarks/results]

Two residual models of named size n, each compiled once with derivatives=("jacobian",):
- broyden: Broyden tridiagonal (MGH 30) as its system of n residuals (three bands);
- smoothing: denoising a series y, a residual x[i] - y[i] per sample and lam*(x[i + 1] - x[i])
  per difference (2n - 1 residuals, n + 1 parameters, one of them the scalar lam).
Part 1, at each n: the compile time (once, for every n), jacobian_coo on its first call (which
builds and sorts the pattern) and on later calls, its non-zeros; against the same Jacobian as
one residuals_jvp per parameter (how a module of named size computed it before, O(n^2); n <=
1,000) and jax.jit(jax.jacfwd) of the same residuals (dense; n <= 1,000). Each Jacobian is
checked against the dense ones, or past them its product with a random direction against
residuals_jvp.
Part 2: scipy.optimize.least_squares(tr_solver="lsmr") on Broyden's system from x0 = -1 and on
the smoothing problem, with jac = jacobian_coo as a sparse matrix against SciPy's own sparse
finite differences (jac="2-point" with jac_sparsity, the pattern given): wall time, evaluations,
final cost.
Part 3: Broyden's system written in a Python loop over scalar symbols (x0 ... x999, a list of
residuals), at n = 100 and 1,000: compile time, the module's lines, one residuals_flat and one
jacobian_flat, re-rolled (the run of alike residuals one value over lanes) with its Jacobian's
structure coloured (one residuals_jvp per colour), against the model written out
(reroll=False) with every entry of its Jacobian written out (outputs.DIRECT_JACOBIAN_ENTRIES
raised past n^2).
Prints the tables and writes sparse_jacobian.json (--quick: sparse_jacobian.quick.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import sympy as sp
from arrays import jax_functions
from mgh_hessian import format_time
from mgh_hessian import median_call as median

import backpropc as bp
from backpropc import runtime

ROOT = Path(__file__).resolve().parent.parent
SIZES, QUICK_SIZES = (10, 100, 1000, 10 ** 4, 10 ** 6), (10, 100)
DENSE_MAX = 1000  # parameters: past this the dense baselines take seconds to minutes
n = sp.Symbol("n", integer=True, positive=True)
i = sp.Symbol("i", integer=True)
x, y = sp.IndexedBase("x", shape=(n,)), sp.IndexedBase("y", shape=(n,))
lam = sp.Symbol("lam")
LAM = 3.0


def broyden_model() -> bp.Model:
    inner = ((3 - 2 * x[i]) * x[i] - x[i - 1] - 2 * x[i + 1] + 1, (i, 1, n - 2))
    first = (3 - 2 * x[0]) * x[0] - 2 * x[1] + 1
    last = (3 - 2 * x[n - 1]) * x[n - 1] - x[n - 2] + 1
    return bp.Model("broyden", residuals=[first, inner, last], wrt=[x])


def smoothing_model() -> bp.Model:
    return bp.Model("smoothing", residuals=[(x[i] - y[i], (i, 0, n - 1)), (lam * (x[i + 1] - x[i]), (i, 0, n - 2))],
                    wrt=[x, lam], inputs=[y])


def data_of(name: str, size: int) -> tuple:
    """(theta, data) of a problem at n = size."""
    rng = np.random.default_rng(size)
    if name == "broyden":
        return rng.uniform(-1.5, 0.5, size), ()
    t = np.linspace(0, 4 * np.pi, size)
    return np.append(rng.uniform(-1, 1, size), LAM), (np.sin(t) + 0.3 * rng.standard_normal(size),)


def jax_residuals():
    """The residuals in jax.numpy, as functions of the flat vector (and the data)."""
    if jax_functions() is None:
        return None
    import jax
    import jax.numpy as jnp

    def broyden(v):
        padded = jnp.concatenate((jnp.zeros(1), v, jnp.zeros(1)))
        return (3 - 2 * v) * v - padded[:-2] - 2 * padded[2:] + 1

    def smoothing(v, ys):
        xs, scale = v[:-1], v[-1]
        return jnp.concatenate((xs - ys, scale * (xs[1:] - xs[:-1])))
    return {name: jax.jit(jax.jacfwd(f)) for name, f in (("broyden", broyden), ("smoothing", smoothing))}


def by_tangents(module):
    """The Jacobian as one residuals_jvp per entry of the parameters (the runtime's own helper)."""
    helper = runtime.namespace(["_jacobian_by_tangents"])["_jacobian_by_tangents"]

    def jacobian(theta, *data):
        args = module.unpack(theta)
        shapes = tuple(np.shape(a) for a in args)
        return helper(module.residuals_jvp, (*args, *data), shapes).reshape(-1, theta.size)
    return jacobian


def jacobian_rows(quick: bool, repeats: int) -> list[dict]:
    jax = None if quick else jax_residuals()
    rows = []
    for name, build in (("broyden", broyden_model), ("smoothing", smoothing_model)):
        start = time.perf_counter()
        compiled = bp.compile(build(), derivatives=("jacobian",))
        compile_s = time.perf_counter() - start
        module = compiled.load()
        tangents = by_tangents(module)
        for size in QUICK_SIZES if quick else SIZES:
            theta, data = data_of(name, size)
            args = (*module.unpack(theta), *data)
            start = time.perf_counter()
            r, c, v = module.jacobian_coo(*args)
            first = time.perf_counter() - start
            row = {"problem": name, "n": size, "compile_s": compile_s, "lines": len(compiled.source.splitlines()),
                   "nonzeros": len(v), "first_s": first, "coo_s": median(lambda: module.jacobian_coo(*args), repeats)}
            residual_count = len(module.residuals_flat(theta, *data))
            if size <= DENSE_MAX:
                dense = np.zeros((residual_count, theta.size))
                dense[r, c] = v
                exact = tangents(theta, *data)
                row["agrees"] = float(np.abs(dense - exact).max() / np.abs(exact).max())
                row["tangents_s"] = median(lambda: tangents(theta, *data), max(3, repeats // 2))
                if jax is not None:
                    row["jax_s"] = median(lambda: jax[name](theta, *data).block_until_ready(), repeats)
                    row["agrees"] = max(row["agrees"], float(np.abs(dense - np.asarray(jax[name](theta, *data))).max()))
            else:  # J d against residuals_jvp along d
                d = np.random.default_rng(0).standard_normal(theta.size)
                product = np.bincount(r, weights=v * d[c], minlength=residual_count)
                jvp = module.residuals_jvp(*args, *module.unpack(d))[1].ravel()
                row["agrees"] = float(np.abs(product - jvp).max() / np.abs(jvp).max())
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def solve_rows(quick: bool) -> list[dict]:
    from scipy.optimize import least_squares
    from scipy.sparse import coo_matrix

    rows = []
    problems = [("broyden", broyden_model, 10 ** 4), ("smoothing", smoothing_model, 10 ** 4),
                ("broyden", broyden_model, 10 ** 5)]
    for name, build, size in [(p, b, 100) for p, b, _ in problems[:2]] if quick else problems:
        module = bp.compile(build(), derivatives=("jacobian",)).load()
        data = data_of(name, size)[1]
        x0 = -np.ones(size) if name == "broyden" else np.append(np.zeros(size), LAM)
        # lam is a parameter of the model but held at LAM in the fit (a bound would also do)
        fixed = name == "smoothing"

        def fun(v, data=data, fixed=fixed):
            return module.residuals_flat(np.append(v, LAM) if fixed else v, *data)

        def jac(v, data=data, fixed=fixed):
            full = np.append(v, LAM) if fixed else v
            r, c, values = module.jacobian_coo(*module.unpack(full), *data)
            keep = c < v.size
            return coo_matrix((values[keep], (r[keep], c[keep])), shape=(len(fun(v)), v.size)).tocsr()
        start_x = x0[:-1] if fixed else x0
        pattern = jac(start_x) != 0
        row = {"problem": name, "n": size}
        for method, options in (("jacobian_coo", {"jac": jac}), ("2-point, jac_sparsity", {"jac": "2-point",
                                                                                            "jac_sparsity": pattern})):
            start = time.perf_counter()
            fit = least_squares(fun, start_x, tr_solver="lsmr", **options)
            row[method] = {"seconds": time.perf_counter() - start, "nfev": int(fit.nfev), "njev": int(fit.njev or 0),
                           "cost": float(fit.cost), "status": int(fit.status)}
        rows.append(row)
        print(format_solve(row), flush=True)
    return rows


def broyden_loop(size: int) -> bp.Model:
    xs = sp.symbols(f"x0:{size}")

    def at(k):
        return xs[k] if 0 <= k < size else 0
    return bp.Model("broyden_loop", residuals=[(3 - 2 * xs[k]) * xs[k] - at(k - 1) - 2 * at(k + 1) + 1
                                               for k in range(size)], wrt=list(xs))


def loop_rows(quick: bool, repeats: int) -> list[dict]:
    from backpropc import outputs

    rows = []
    for size in (30, 70) if quick else (100, 1000):
        theta = data_of("broyden", size)[0]
        row, jacobians = {"problem": "broyden_loop", "n": size}, {}
        for form, limit, reroll in (("re-rolled, coloured", outputs.DIRECT_JACOBIAN_ENTRIES, True),
                                    ("written out", 10 ** 12, False)):
            saved, outputs.DIRECT_JACOBIAN_ENTRIES = outputs.DIRECT_JACOBIAN_ENTRIES, limit
            try:
                start = time.perf_counter()
                compiled = bp.compile(broyden_loop(size), derivatives=("jacobian",), reroll=reroll)
                seconds = time.perf_counter() - start
            finally:
                outputs.DIRECT_JACOBIAN_ENTRIES = saved
            module = compiled.load()
            jacobians[form] = module.jacobian_flat(theta)
            row[form] = {"compile_s": seconds, "lines": len(compiled.source.splitlines()),
                         "jacobian_flat_s": median(lambda m=module: m.jacobian_flat(theta), max(3, repeats // 2)),
                         "residuals_flat_s": median(lambda m=module: m.residuals_flat(theta), repeats),
                         "sweeps": compiled.ops.get("jacobian_products")}
        row["agrees"] = float(np.abs(jacobians["re-rolled, coloured"] - jacobians["written out"]).max())
        rows.append(row)
        print(f"broyden_loop n={size:>5}  " + " | ".join(
            f"{k}: compile {v['compile_s']:.2f}s, {v['lines']} lines, residuals_flat "
            f"{format_time(v['residuals_flat_s'])}, jacobian_flat {format_time(v['jacobian_flat_s'])}"
            for k, v in row.items() if isinstance(v, dict)) + f"  agrees {row['agrees']:.0e}", flush=True)
    return rows


def format_row(r: dict) -> str:
    def ratio(key):
        return f"{r[key] / r['coo_s']:.0f}x" if key in r else "-"
    return (f"{r['problem']:<10} n={r['n']:>9,} nnz={r['nonzeros']:>9,} compile {r['compile_s']:.3f}s "
            f"first {format_time(r['first_s']):>9} coo {format_time(r['coo_s']):>9} "
            f"tangents {format_time(r.get('tangents_s')):>9} ({ratio('tangents_s')}) "
            f"jax jacfwd {format_time(r.get('jax_s')):>9} ({ratio('jax_s')}) agrees {r['agrees']:.0e}")


def format_solve(r: dict) -> str:
    cells = [f"{k}: {format_time(v['seconds'])}, nfev {v['nfev']}, njev {v['njev']}, cost {v['cost']:.2e}"
             for k, v in r.items() if isinstance(v, dict)]
    return f"{r['problem']:<10} n={r['n']:>7,}  " + " | ".join(cells)


def markdown(jacobians: list[dict], solves: list[dict], loops: list[dict] = ()) -> str:
    lines = ["| problem | n | non-zeros | jacobian_coo, first call | later calls | one residuals_jvp per parameter "
             "| jax.jit(jax.jacfwd), dense | agrees |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in jacobians:
        lines.append(f"| {r['problem']} | {r['n']:,} | {r['nonzeros']:,} | {format_time(r['first_s'])} | "
                     f"{format_time(r['coo_s'])} | {format_time(r.get('tangents_s'))} | {format_time(r.get('jax_s'))} | "
                     f"{r['agrees']:.0e} |")
    lines += ["", "| problem | n | jac | wall time | residual evaluations | Jacobian evaluations | final cost |",
              "|---|---:|---|---:|---:|---:|---:|"]
    for r in solves:
        for k, v in r.items():
            if isinstance(v, dict):
                lines.append(f"| {r['problem']} | {r['n']:,} | {k} | {format_time(v['seconds'])} | {v['nfev']} | "
                             f"{v['njev'] or '-'} | {v['cost']:.2e} |")
    if loops:
        lines += ["", "| system written in a loop | n | module | compile | lines | tangent sweeps | residuals_flat | "
                  "jacobian_flat |", "|---|---:|---|---:|---:|---:|---:|---:|"]
        for r in loops:
            for k, v in r.items():
                if isinstance(v, dict):
                    lines.append(f"| {r['problem']} | {r['n']:,} | {k} | {v['compile_s']:.2f} s | {v['lines']:,} | "
                                 f"{v['sweeps'] or '-'} | {format_time(v['residuals_flat_s'])} | "
                                 f"{format_time(v['jacobian_flat_s'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small n, few calls: a smoke test")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    jacobians = jacobian_rows(args.quick, args.repeats)
    solves = solve_rows(args.quick)
    loops = loop_rows(args.quick, args.repeats)
    results = {"python": platform.python_version(), "numpy": np.__version__, "quick": args.quick,
               "jacobians": jacobians, "solves": solves, "loops": loops}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / ("sparse_jacobian.quick.json" if args.quick else "sparse_jacobian.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}\n")
    print(markdown(jacobians, solves, loops))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
