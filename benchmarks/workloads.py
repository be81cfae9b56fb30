"""The workloads of benchmarks/run.py: each a backpropc model, its data, and the same loss in
structured form (parameter arrays P, data arrays D) for the baselines. The wrt order of each
model is the row-major flattening of P, and its inputs are the rows of D, so one flat argument
list serves the generated module.

`benchmark_models()` lists every model the full benchmark run compiles, by label, so that the
tests can check properties of all of them (ops(value and gradient) <= 3 ops(forward)) without
running the benchmark.
"""

from __future__ import annotations

import functools
import math
import runpy
from dataclasses import dataclass
from pathlib import Path

import baselines as bl
import numpy as np
import sympy as sp
from comparison import chain_model  # the deep chain, built as in the comparison

import backpropc as bp

__all__ = ["Workload", "benchmark_models", "chain_model", "rosenbrock_model", "softmax_model", "workloads"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SIZE_NAMES = {"mlp": "n", "chain": "depth", "softmax": "K", "rosenbrock": "n"}


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


def example_function(example: str, name: str):
    """`name` from examples/<example>.py."""
    return runpy.run_path(str(EXAMPLES / f"{example}.py"))[name]


def example_model(example: str) -> bp.Model:
    return example_function(example, "model")


def benchmark_models() -> list[tuple[str, object]]:
    """(label, function building the model) for every workload of the full benchmark run."""
    mlp = example_function("mlp", "mlp_model")
    vectorised = example_function("vectorised_mlp", "vectorised_mlp")
    models = [("logistic", functools.partial(example_model, "logistic")),
              ("logistic_l2", functools.partial(example_model, "logistic_l2"))]
    models += [(f"mlp n={n}", functools.partial(mlp, 3, n, 2, name=f"mlp{n}")) for n in (4, 16, 64, 256)]
    models += [(f"chain depth={d}", functools.partial(chain_model, d)) for d in (10, 100, 1000)]
    models += [(f"softmax K={k}", functools.partial(softmax_model, k)) for k in (3, 10)]
    models += [(f"rosenbrock n={n}", functools.partial(rosenbrock_model, n)) for n in (10, 100, 1000)]
    models += [("vectorised mlp 784-128-10", functools.partial(vectorised, 784, 128, 10))]
    return models


@dataclass
class Workload:
    family: str
    size: int | None
    model: callable            # () -> bp.Model
    data: callable             # (rng, batch) -> (P, D)
    loss: callable             # loss(xp, P, D)
    hand: tuple | None = None  # (value_and_grad(P, D), forward(P, D))
    batched: bool = True

    @property
    def label(self) -> str:
        return self.family if self.size is None else f"{self.family} {SIZE_NAMES[self.family]}={self.size}"


def _logistic_data(rng, batch):
    P = (np.float64(rng.uniform(-1, 1)), np.float64(rng.uniform(-1, 1)))
    return P, (rng.normal(size=batch), rng.integers(0, 2, batch).astype(float))


def _logistic_l2_data(rng, batch):
    P, D = _logistic_data(rng, batch)
    return P, D + (np.full(batch, 0.01),)


def _mlp_data(n):
    def data(rng, batch):
        P = (rng.normal(size=(n, 3)) / math.sqrt(3), rng.normal(size=n) * 0.1,
             rng.normal(size=(2, n)) / math.sqrt(n), rng.normal(size=2) * 0.1)
        return P, (rng.normal(size=(3, batch)), rng.normal(size=(2, batch)))
    return data


def _chain_data(depth):
    def data(rng, batch):
        return (rng.uniform(-0.5, 0.5, depth),), (rng.uniform(-1, 1, batch),)
    return data


def _softmax_data(classes):
    def data(rng, batch):
        P = (rng.normal(size=(classes, 2)), rng.normal(size=classes) * 0.1)
        T = np.zeros((classes, batch))
        T[rng.integers(0, classes, batch), np.arange(batch)] = 1.0
        return P, (rng.normal(size=(2, batch)), T)
    return data


def _rosenbrock_data(n):
    def data(rng, batch):
        return (rng.uniform(-1.5, 1.5, n),), ()
    return data


def workloads(quick: bool) -> list[Workload]:
    mlp_widths = (4,) if quick else (4, 16, 64, 256)
    depths = (10,) if quick else (10, 100, 1000)
    classes = (3,) if quick else (3, 10)
    dims = (10,) if quick else (10, 100, 1000)
    result = [Workload("logistic", None, functools.partial(example_model, "logistic"), _logistic_data,
                       bl.loss_logistic, (bl.np_logistic, bl.np_logistic_forward)),
              Workload("logistic_l2", None, functools.partial(example_model, "logistic_l2"), _logistic_l2_data,
                       bl.loss_logistic_l2, (bl.np_logistic_l2, bl.np_logistic_l2_forward))]
    mlp_model = example_function("mlp", "mlp_model")
    result += [Workload("mlp", n, functools.partial(mlp_model, 3, n, 2, name=f"mlp{n}"), _mlp_data(n),
                        bl.loss_mlp, (bl.np_mlp, bl.np_mlp_forward)) for n in mlp_widths]
    result += [Workload("chain", d, functools.partial(chain_model, d), _chain_data(d), bl.loss_chain)
               for d in depths]
    result += [Workload("softmax", k, functools.partial(softmax_model, k), _softmax_data(k), bl.loss_softmax,
                        (bl.np_softmax, bl.np_softmax_forward)) for k in classes]
    result += [Workload("rosenbrock", n, functools.partial(rosenbrock_model, n), _rosenbrock_data(n),
                        bl.loss_rosenbrock, (bl.np_rosenbrock, bl.np_rosenbrock_forward), batched=False)
               for n in dims]
    return result

