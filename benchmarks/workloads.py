"""The models of the benchmark workloads (benchmarks/run.py), also used by the tests.

`benchmark_models()` lists every model the full benchmark run compiles, by label, so that the
tests can check properties of all of them (ops(value and gradient) <= 3 ops(forward)) without
running the benchmark.
"""

from __future__ import annotations

import functools
import runpy
from pathlib import Path

import sympy as sp
from comparison import chain_model  # the deep chain, built as in the comparison

import backpropc as bp

__all__ = ["softmax_model", "rosenbrock_model", "chain_model", "benchmark_models"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def softmax_model(classes: int, features: int = 2) -> bp.Model:
    """examples/softmax_regression.py with K classes: z_k = W_k . x + b_k, L = -sum t_k (z_k - lse)."""
    x = sp.symbols(f"x1:{features + 1}")
    t = sp.symbols(f"t1:{classes + 1}")
    W = [[sp.Symbol(f"w{k}_{j}") for j in range(1, features + 1)] for k in range(1, classes + 1)]
    b = sp.symbols(f"b1:{classes + 1}")
    z = sp.symbols(f"z1:{classes + 1}")
    lse, L = sp.symbols("lse L")
    steps = [(z[k], sum(W[k][j] * x[j] for j in range(features)) + b[k]) for k in range(classes)]
    steps += [(lse, bp.logsumexp(*z)), (L, -sum(t[k] * (z[k] - lse) for k in range(classes)))]
    return bp.Model(name=f"softmax{classes}", steps=steps, loss=L,
                    wrt=[w for row in W for w in row] + list(b), inputs=list(x) + list(t))


def rosenbrock_model(n: int) -> bp.Model:
    xs = sp.symbols(f"x0:{n}")
    e = sum(100 * (xs[i + 1] - xs[i] ** 2) ** 2 + (1 - xs[i]) ** 2 for i in range(n - 1))
    return bp.Model(f"rosenbrock{n}", [], e, list(xs), [])


def _example(name: str) -> bp.Model:
    return runpy.run_path(str(EXAMPLES / f"{name}.py"))["model"]


def benchmark_models() -> list[tuple[str, object]]:
    """(label, function building the model) for every workload of the full benchmark run."""
    mlp = runpy.run_path(str(EXAMPLES / "mlp.py"))["mlp_model"]
    vectorised = runpy.run_path(str(EXAMPLES / "vectorised_mlp.py"))["vectorised_mlp"]
    models = [("logistic", functools.partial(_example, "logistic")),
              ("logistic_l2", functools.partial(_example, "logistic_l2"))]
    models += [(f"mlp n={n}", functools.partial(mlp, 3, n, 2, name=f"mlp{n}")) for n in (4, 16, 64, 256)]
    models += [(f"chain depth={d}", functools.partial(chain_model, d)) for d in (10, 100, 1000)]
    models += [(f"softmax K={k}", functools.partial(softmax_model, k)) for k in (3, 10)]
    models += [(f"rosenbrock n={n}", functools.partial(rosenbrock_model, n)) for n in (10, 100, 1000)]
    models += [("vectorised mlp 784-128-10", functools.partial(vectorised, 784, 128, 10))]
    return models
