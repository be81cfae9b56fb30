"""SciPy's optimisers with backpropc's exact derivatives against SciPy's finite differences.

    python benchmarks/optimisation.py [--quick] [--repeats N] [--out benchmarks/results]

Each problem is solved from the same start by the same SciPy method twice or more: once with the
generated module's derivatives (`hvp_flat`, `hessian_flat`, `jacobian_flat`) and once with what
SciPy does when a derivative is not given (`hess="2-point"`: differences of the gradient, or for
trust-exact, which has no such option, `approx_fprime` of the gradient;
`least_squares(jac="2-point")`: differences of the residuals; `minimize(fun, x0)` alone: BFGS on
a differenced gradient). It counts iterations and evaluations as SciPy reports them, times the
whole solve (median of up to --repeats solves, fewer past 3 s; compile time is reported apart) and
checks where it ended. Prints a table and writes optimisation.json (optimisation.quick.json with
--quick, a smaller and faster smoke run).
"""

from __future__ import annotations

import argparse
import json
import platform
import runpy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.optimize as so
import sympy as sp

import backpropc as bp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from workloads import rosenbrock_model

# Rosenbrock's tolerances, stated: SciPy's defaults (Newton-CG's xtol 1e-5, trust-krylov's gtol
# 1e-4 in 1.17) stop short of the minimiser, where exact and differenced runs part by 1e-5
NEWTON_CG, KRYLOV = {"xtol": 1e-8}, {"gtol": 1e-8}


def _example(name: str) -> dict:
    return runpy.run_path(str(ROOT / "examples" / f"{name}.py"))


class Counted:
    """The module's flat functions, each counting its calls: SciPy's own counters miss the
    gradients a differenced Hessian costs when the differencing is not SciPy's."""

    NAMES = (("value_and_grad_flat", "vg"), ("hvp_flat", "hvp"), ("hessian_flat", "hessian"),
             ("residuals_flat", "residuals"), ("jacobian_flat", "jacobian"))

    def __init__(self, module):
        self.module, self.calls = module, {}
        for name, short in self.NAMES:
            if hasattr(module, name):
                setattr(self, name, self._counting(getattr(module, name), short))

    def _counting(self, f, short):
        def counted(*args):
            self.calls[short] = self.calls.get(short, 0) + 1
            return f(*args)
        return counted

    def __getattr__(self, name):   # pack, unpack, ... uncounted
        return getattr(self.module, name)


def _compiled(model, derivatives):
    start = time.perf_counter()
    module = bp.compile(model, derivatives=derivatives).load()
    return Counted(module), time.perf_counter() - start


def _value(module):
    """The objective alone, as a user without derivatives hands it to SciPy."""
    return lambda theta, *data: module.value_and_grad_flat(theta, *data)[0]


def _grad(module):
    return lambda theta, *data: module.value_and_grad_flat(theta, *data)[1]


def _differenced(grad):
    """The Hessian by forward differences of the gradient (trust-exact takes no hess="2-point")."""
    return lambda theta, *data: so.approx_fprime(theta, grad, np.sqrt(np.finfo(float).eps), *data)


def rosenbrock(quick: bool):
    n = 20 if quick else 100
    m, compile_s = _compiled(rosenbrock_model(n), ("grad", "hvp", "hessian"))
    x0 = np.tile([-1.2, 1.0], n // 2)   # the classical start, repeated
    solution = np.ones(n)
    f, g, vg = _value(m), _grad(m), m.value_and_grad_flat
    runs = [
        ("Newton-CG", "hvp_flat",
         lambda: so.minimize(vg, x0, jac=True, hessp=m.hvp_flat, method="Newton-CG", options=NEWTON_CG)),
        ("Newton-CG", "hess='2-point'",
         lambda: so.minimize(f, x0, jac=g, hess="2-point", method="Newton-CG", options=NEWTON_CG)),
        ("trust-krylov", "hvp_flat",
         lambda: so.minimize(vg, x0, jac=True, hessp=m.hvp_flat, method="trust-krylov", options=KRYLOV)),
        ("trust-krylov", "hess='2-point'",
         lambda: so.minimize(f, x0, jac=g, hess="2-point", method="trust-krylov", options=KRYLOV)),
        ("trust-exact", "hessian_flat",
         lambda: so.minimize(vg, x0, jac=True, hess=m.hessian_flat, method="trust-exact")),
        ("trust-exact", "approx_fprime of the gradient",
         lambda: so.minimize(f, x0, jac=g, hess=_differenced(g), method="trust-exact")),
        ("BFGS", "value_and_grad_flat", lambda: so.minimize(vg, x0, jac=True, method="BFGS")),
        ("BFGS", "no derivatives (2-point gradient)", lambda: so.minimize(f, x0, method="BFGS")),
    ]
    return f"Rosenbrock n={n}", m, compile_s, runs, solution, f


def logistic_matrix(quick: bool):
    """Logistic regression with a 1 x d weight matrix, fitted through pack/unpack."""
    d, batch = 5, (1_000 if quick else 10_000)
    W, x = sp.MatrixSymbol("W", 1, d), sp.MatrixSymbol("x", d, 1)
    b, t, z, L = sp.symbols("b t z L")
    model = bp.Model("logistic_regression", [(z, (W * x)[0, 0] + b), (L, sp.log(1 + sp.exp(z)) - t * z)],
                     loss=L, wrt=[W, b], inputs=[x, t])
    m, compile_s = _compiled(model, ("grad", "hvp", "hessian"))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(batch, d, 1))
    p = 1 / (1 + np.exp(-(X[:, :, 0] @ np.linspace(-1, 1, d) + 0.5)))
    T = (rng.uniform(size=batch) < p).astype(float)
    x0, data = m.pack(np.zeros((1, d)), 0.0), (X, T)
    f, g, vg = _value(m), _grad(m), m.value_and_grad_flat
    runs = [
        ("trust-krylov", "hvp_flat",
         lambda: so.minimize(vg, x0, args=data, jac=True, hessp=m.hvp_flat, method="trust-krylov")),
        ("trust-krylov", "hess='2-point'",
         lambda: so.minimize(f, x0, args=data, jac=g, hess="2-point", method="trust-krylov")),
        ("trust-exact", "hessian_flat",
         lambda: so.minimize(vg, x0, args=data, jac=True, hess=m.hessian_flat, method="trust-exact")),
        ("trust-exact", "approx_fprime of the gradient",
         lambda: so.minimize(f, x0, args=data, jac=g, hess=_differenced(g), method="trust-exact")),
        ("BFGS", "no derivatives (2-point gradient)", lambda: so.minimize(f, x0, args=data, method="BFGS")),
    ]
    solution = so.minimize(vg, x0, args=data, jac=True, hess=m.hessian_flat, method="trust-exact",
                           options={"gtol": 1e-12}).x
    return f"logistic regression, W 1x{d}, batch {batch:,}", m, compile_s, runs, solution, \
        lambda theta: f(theta, *data)


def _least_squares_runs(m, x0, data):
    return [
        ("least_squares (trf)", "jacobian_flat",
         lambda: so.least_squares(m.residuals_flat, x0, jac=m.jacobian_flat, args=data)),
        ("least_squares (trf)", "jac='2-point'", lambda: so.least_squares(m.residuals_flat, x0, args=data)),
    ]


def michaelis_menten(quick: bool):
    example = _example("michaelis_menten")
    m, compile_s = _compiled(example["model"], ("grad", "jacobian"))
    data = (np.array(example["DATA"]["S"], float), np.array(example["DATA"]["v"], float))
    x0 = m.pack(100.0, 0.5)
    solution = so.least_squares(m.residuals_flat, x0, jac=m.jacobian_flat, args=data, xtol=1e-15,
                                ftol=1e-15, gtol=1e-15).x
    return "Michaelis-Menten, Puromycin (12 points)", m, compile_s, _least_squares_runs(m, x0, data), solution, \
        lambda theta: _value(m)(theta, *data)


def exponential_decay(quick: bool):
    batch = 1_000 if quick else 100_000
    m, compile_s = _compiled(_example("exponential_decay")["model"], ("grad", "jacobian"))
    rng = np.random.default_rng(1)
    t = np.linspace(0, 5, batch)
    y = 3.0 * np.exp(-1.3 * t) + 0.5 + rng.normal(scale=0.05, size=batch)
    x0, data = m.pack(1.0, 0.5, 0.0), (t, y)
    solution = so.least_squares(m.residuals_flat, x0, jac=m.jacobian_flat, args=data, xtol=1e-15,
                                ftol=1e-15, gtol=1e-15).x
    return f"exponential decay ({batch:,} points)", m, compile_s, _least_squares_runs(m, x0, data), solution, \
        lambda theta: _value(m)(theta, *data)


PROBLEMS = (rosenbrock, logistic_matrix, michaelis_menten, exponential_decay)


def measure(run, module: Counted, repeats: int, budget_s: float = 3.0) -> tuple[object, float, dict]:
    """The result, the median time of up to `repeats` solves (fewer once `budget_s` is spent) and
    the calls of the module's functions one solve made."""
    result, times = None, []
    while len(times) < repeats and sum(times) < budget_s:
        module.calls = {}
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times), module.calls


def run_all(quick: bool, repeats: int, log=print) -> dict:
    problems = []
    for build in PROBLEMS:
        title, module, compile_s, runs, solution, objective = build(quick)
        rows = []
        for method, derivatives, run in runs:
            result, wall_s, calls = measure(run, module, repeats)
            rows.append({
                "method": method, "derivatives": derivatives, "success": bool(result.success),
                "nit": getattr(result, "nit", None), "nfev": int(result.nfev),
                "njev": None if getattr(result, "njev", None) is None else int(result.njev),
                "nhev": None if getattr(result, "nhev", None) is None else int(result.nhev),
                "calls": calls, "wall_s": wall_s, "objective": float(objective(result.x)),
                "distance": float(np.max(np.abs(result.x - solution) / np.maximum(1, np.abs(solution)))),
            })
            log(f"  {title}: {method} with {derivatives}: {wall_s * 1e3:.2f} ms")
        problems.append({"problem": title, "compile_s": compile_s, "rows": rows})
    return {"quick": quick, "repeats": repeats, "problems": problems,
            "environment": {"python": platform.python_version(), "numpy": np.__version__,
                            "scipy": scipy.__version__, "sympy": sp.__version__}}


def _n(v) -> str:
    return "-" if v is None else str(v)


def _t(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} µs"


def _calls(calls: dict) -> str:
    return " + ".join(f"{name} {count:,}" for name, count in calls.items())


HEADER = ("| method | derivatives | converged | nit | nfev | njev | nhev | module calls | wall time | objective | "
          "distance to solution |")


def table(data: dict) -> str:
    lines = []
    for p in data["problems"]:
        lines += [f"**{p['problem']}** (compile {_t(p['compile_s'])})", "",
                  HEADER, "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in p["rows"]:
            lines.append(f"| {r['method']} | {r['derivatives']} | {'yes' if r['success'] else 'no'} | {_n(r['nit'])} | "
                         f"{r['nfev']} | {_n(r['njev'])} | {_n(r['nhev'])} | {_calls(r['calls'])} | {_t(r['wall_s'])} | "
                         f"{r['objective']:.6g} | {r['distance']:.1e} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller problems, one solve each")
    parser.add_argument("--repeats", type=int, default=None, help="solves timed per row (default 5, quick 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)
    data = run_all(args.quick, repeats)
    print(table(data))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("optimisation.quick.json" if args.quick else "optimisation.json")
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
