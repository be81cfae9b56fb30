"""The two references every emitted gradient is checked against.

- `sympy_gradient`: the exact oracle, `sympy.diff` of the fully substituted loss, evaluated with
  mpmath at each example (only small models: this is the naive expansion).
- `directional_derivatives`: central finite differences of the module's own objective.
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp

import backpropc as bp
from backpropc.runtime.core import _finite_difference_errors as finite_differences

MPMATH = {
    "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "softplus": lambda x: mpmath.log1p(mpmath.exp(x)),
    "relu": lambda x: max(x, 0),
    "logsumexp": lambda *a: mpmath.log(sum(mpmath.exp(v) for v in a)),
    "log1p": mpmath.log1p,
    "expm1": mpmath.expm1,
    "Heaviside": lambda x, h0=0.5: mpmath.mpf(1) if x > 0 else (mpmath.mpf(0) if x < 0 else h0),
    "sign": lambda x: mpmath.sign(x),
    "Abs": abs,
    "floor": mpmath.floor,
    "ceiling": mpmath.ceil,
    "DiracDelta": lambda *a: 0,  # the points checked are never at a jump
}


def substituted_loss(model: bp.Model) -> sp.Expr:
    env = {}
    for step in model.steps:
        lhs, rhs = (step.lhs, step.rhs) if isinstance(step, sp.Equality) else step
        env[lhs] = sp.sympify(rhs).xreplace(env)
    if model.loss is None:   # a residual model: half the sum of the squared residuals
        return sum(sp.sympify(r).xreplace(env) ** 2 for r in model.residuals) / 2
    return sp.sympify(model.loss).xreplace(env)


def sympy_gradient(model: bp.Model, args: list[sp.Symbol], point: dict, reduction="sum"):
    """d(objective)/d(wrt) by sympy.diff, summed (or averaged) over the broadcast examples."""
    # Real symbols, so that SymPy differentiates Abs as sign(x), the way NumPy evaluates it.
    real = {a: sp.Dummy(str(a), real=True) for a in args}
    loss = substituted_loss(model).xreplace(real)
    # Derivatives SymPy leaves unevaluated (floor, ceiling) are 0 away from their jumps.
    grads = [sp.diff(loss, real[w]).replace(lambda e: isinstance(e, sp.Derivative), lambda e: 0)
             for w in model.wrt]
    f = sp.lambdify([real[a] for a in args], grads, modules=[MPMATH, "mpmath"])
    arrays = np.broadcast_arrays(*[np.asarray(point[str(a)], dtype=float) for a in args])
    total = np.zeros(len(grads))
    count = arrays[0].size
    with mpmath.workdps(30):
        for values in zip(*[a.ravel() for a in arrays]):
            total += np.array([float(g) for g in f(*[mpmath.mpf(float(v)) for v in values])])
    return total / count if reduction == "mean" else total


def reference_gradient(model: bp.Model, point: dict, reduction="sum"):
    """sympy_gradient for any model: a matrix model is written out entry by entry first, and each
    matrix argument's gradient gathered back into its shape."""
    from backpropc.check import scalar_model

    args = model.wrt + list(model.inputs or [])
    if any(isinstance(a, sp.IndexedBase) for a in args):
        return indexed_reference_gradient(model, point, reduction)
    if not any(isinstance(a, sp.MatrixSymbol) for a in args):
        return list(sympy_gradient(model, args, point, reduction))
    scalar = scalar_model(model)
    flat = scalar.model
    grads = sympy_gradient(flat, flat.wrt + list(flat.inputs), scalar.flatten(point), reduction)
    by_entry = dict(zip((w.name for w in flat.wrt), grads))
    return [scalar.gather(w, by_entry) for w in model.wrt]


def written_out_point(model: bp.Model, point: dict):
    """(the indexed model with every Sum written out at the point's sizes, the point by entry
    name, the layout), each entry of data with its batch: a batch leads, an array's axes trail."""
    from backpropc.check_indexed import written_out_indexed

    program = bp.compile(model).program
    size = next(np.shape(point[str(a)])[a.shape.index(d) - len(a.shape)] for a in program.args
                if isinstance(a, sp.IndexedBase) for d in a.shape if isinstance(d, sp.Symbol))
    flat, layout = written_out_indexed(model, program, size)
    values = {}
    for arg, shape, entries in layout:
        value = np.asarray(point[str(arg)], dtype=float)
        by_entry = value.reshape(value.shape[:value.ndim - len(shape or ())] + (-1,))
        for k, e in enumerate(entries):
            values[e.name] = by_entry[..., k]
    return flat, values, layout[:len(program.wrt)]


def indexed_reference_gradient(model: bp.Model, point: dict, reduction="sum"):
    """sympy_gradient of an indexed model with every Sum written out at the point's sizes, each
    IndexedBase's gradient gathered back into its shape."""
    flat, values, layout = written_out_point(model, point)
    grads = dict(zip((w.name for w in flat.wrt), sympy_gradient(flat, flat.wrt + list(flat.inputs), values,
                                                                  reduction)))
    return [np.array([grads[e.name] for e in entries]).reshape(shape) if shape else grads[entries[0].name]
            for arg, shape, entries in layout]


def random_point(module, rng, batch, domains=None, default=(-1.5, 1.5), dtype=np.float64):
    """Parameters in their own shape (scalars, matrices), data as `batch` examples (one example
    when batch is None); each argument drawn from its range in `domains`, else `default`."""
    from backpropc.check import argument_shape

    point = {}
    for name in module.ARGS:
        low, high = (domains or {}).get(name, default)
        shape = argument_shape(module, name, batch)
        point[name] = rng.uniform(low, high, shape).astype(dtype) if shape else float(rng.uniform(low, high))
    return point


def directional_derivatives(module, point: dict, grads, rng, h=1e-6):
    """(backprop, central finite differences) of the objective along a random direction per
    parameter (along 1 for a scalar): the generated modules' own checker."""
    rows = finite_differences(module.value_and_grad, point, module.WRT, rng, step=h)
    return np.array([(exact, estimate) for _, exact, estimate, _, _ in rows])


def assert_close(actual, expected, rtol, atol=1e-12, what=""):
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    err = np.abs(actual - expected) / np.maximum(np.abs(expected), 1.0)
    assert np.all(np.isfinite(actual)), f"{what}: non-finite gradient {actual}"
    assert np.all(err <= rtol + atol), f"{what}: max relative error {err.max():.3e}\n{actual}\n{expected}"
