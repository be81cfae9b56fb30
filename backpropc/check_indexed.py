"""The exact oracle of an indexed model: every Sum written out at a small size, then sympy.diff.

The oracle side of backpropc.check: a shape symbol n takes check.NAMED_SIZE, each Sum is carried
out term by term (what `.doit()` gives), and each entry x[k] becomes a scalar symbol x_k; the written-out model is
differentiated by sympy.diff, and its gradient gathered back into arrays.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import sympy as sp

from .compiler import compile
from .errors import UnusedWrtWarning
from .model import Model, parse_residual


def written_out_indexed(model: Model, program, size: int):
    """(scalar Model, layout) of an indexed model at shape symbols = `size`; the layout lists
    (argument, shape or None, entry symbols) in argument order."""
    sizes = {d: sp.Integer(size) for a in program.args if isinstance(a, sp.IndexedBase)
             for d in a.shape if isinstance(d, sp.Symbol)}
    layout, entry_of = [], {}
    for a in program.args:
        if not isinstance(a, sp.IndexedBase):
            layout.append((a, None, [a]))
            continue
        shape = tuple(int(sp.sympify(d).xreplace(sizes)) for d in a.shape)
        entries = []
        for k in itertools.product(*map(range, shape)):
            entry_of[(a.name, k)] = s = sp.Symbol(f"{a.name}_{'_'.join(map(str, k))}")
            entries.append(s)
        layout.append((a, shape, entries))

    def explicit(e):
        e = _carried_out(sp.sympify(e).xreplace(sizes), {})
        return e.replace(lambda t: isinstance(t, sp.Indexed),
                         lambda t: entry_of[(t.base.name, tuple(int(i) for i in t.indices))])

    steps = []
    for step in model.steps:
        lhs, rhs = (step.lhs, step.rhs) if isinstance(step, sp.Equality) else step
        steps.append((lhs, explicit(rhs)))
    if model.loss is None and model.residuals is not None:  # half the sum of the squared residuals
        squares = [r ** 2 if limit is None else sp.Sum(r ** 2, limit)
                   for r, limit in (parse_residual(r, "a residual") for r in model.residuals)]
        loss = explicit(sp.Add(*squares) / 2)
    else:
        loss = explicit(model.loss if model.loss is not None else steps[-1][0])
    n_wrt = len(program.wrt)
    flat = [s for _, _, entries in layout for s in entries]
    n_flat_wrt = sum(len(entries) for _, _, entries in layout[:n_wrt])
    scalar = Model(f"{model.name}_written_out", steps, loss, flat[:n_flat_wrt], flat[n_flat_wrt:])
    return scalar, layout


def indexed_oracle(compiled, limit: int, size: int, sympy_oracle):
    """A function point -> exact gradient (sympy.diff of the written-out model), or (None, why);
    `sympy_oracle` is backpropc.check's, for the written-out scalar model."""
    scalar, layout = written_out_indexed(compiled.model, compiled.program, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedWrtWarning)
        flat_compiled = compile(scalar, reduction=compiled.reduction)
    oracle, note = sympy_oracle(flat_compiled, limit)
    if oracle is None:
        return None, note

    def exact(point, batch, mean):
        flat = {}
        for arg, shape, entries in layout:
            value = point[str(arg)]
            if shape is None:
                flat[entries[0].name] = value
            else:  # each entry with the batch of data it has (batch axes lead)
                value = np.asarray(value)
                by_entry = value.reshape(value.shape[:value.ndim - len(shape)] + (-1,))
                for k, e in enumerate(entries):
                    flat[e.name] = by_entry[..., k]
        by_entry = dict(zip(flat_compiled.wrt, oracle({a: flat[a] for a in flat_compiled.args}, None, mean)))
        grads = []
        for arg, shape, entries in layout[:len(compiled.program.wrt)]:
            values = [by_entry.get(e.name, 0.0) for e in entries]
            grads.append(values[0] if shape is None else np.array(values, dtype=float).reshape(shape))
        return grads
    return exact, ""


def _carried_out(e, memo: dict):
    """e with each Sum written out term by term, outermost index first (SymPy's doit looks for a
    closed form, which is slow for triangular bounds)."""
    if e in memo:
        return memo[e]
    if isinstance(e, sp.Sum):
        (index, lo, hi), inner = e.limits[-1], e.limits[:-1]
        body = sp.Sum(e.function, *inner) if inner else e.function
        result = sp.Add(*[_carried_out(body.xreplace({index: k}), memo) for k in range(int(lo), int(hi) + 1)])
    elif e.args and not isinstance(e, sp.Indexed):
        result = e.func(*[_carried_out(a, memo) for a in e.args])
    else:
        result = e
    memo[e] = result
    return result
