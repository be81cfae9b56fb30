"""Piecewise, comparisons and logic.

Piecewise differentiates the branch taken, with its conditions evaluated exactly as in the
forward pass; comparisons and logic have no derivative (their value is piecewise constant).
"""

from __future__ import annotations

import sympy as sp

from .base import Op, Ref, balanced, nary_cost, zero_jvp, zero_vjp


def piecewise_vjp(out_bar, out, args, needed):
    """The branch taken gets out_bar; every other branch gets nothing."""
    conds = args[1::2]
    graph = out_bar.graph
    zero, true = graph.const(0), graph.const(sp.true)
    contributions = []
    for i, n in enumerate(needed[0::2]):
        if not n:
            contributions += [None, None]
            continue
        pairs = [(zero, c.id) for c in conds[:i]] + [(out_bar.id, conds[i].id), (zero, true)]
        contributions += [Ref(graph, graph.piecewise(*pairs)), None]
    return contributions


def piecewise_jvp(out, args, tangents):
    """The tangent of the branch taken, under the same conditions."""
    if all(t is None for t in tangents[0::2]):
        return None
    graph = out.graph
    zero = graph.const(0)
    pairs = [(zero if t is None else t.id, c.id) for t, c in zip(tangents[0::2], args[1::2])]
    return Ref(graph, graph.piecewise(*pairs))


def _mp_piecewise(*args):
    return next(e for e, c in zip(args[0::2], args[1::2]) if c)


def _relation(op, symbol: str, compare) -> Op:
    return Op(op, zero_vjp, zero_jvp, f"({{0}} {symbol} {{1}})", math=f"{{0}} {symbol} {{1}}",
              scalar=f"({{0}} {symbol} {{1}})",
              zero_derivative=True, mpmath=lambda a, b: compare(a, b))


def _logic(op, fn: str, mpmath, word: str) -> Op:
    return Op(op, zero_vjp, zero_jvp, lambda *a: balanced(fn, a), cost=nary_cost,
              scalar=lambda *a: "(" + f" {word} ".join(a) + ")",
              zero_derivative=True, commutative=True, mpmath=mpmath)


RECORDS = [
    Op(sp.Piecewise, piecewise_vjp, piecewise_jvp, "np.where", mpmath=_mp_piecewise,
       cost=lambda nargs, ends_with_true=False: nargs // 2 - ends_with_true),  # one select per branch
    _relation(sp.StrictGreaterThan, ">", lambda a, b: a > b),
    _relation(sp.GreaterThan, ">=", lambda a, b: a >= b),
    _relation(sp.StrictLessThan, "<", lambda a, b: a < b),
    _relation(sp.LessThan, "<=", lambda a, b: a <= b),
    _relation(sp.Equality, "==", lambda a, b: a == b),
    _relation(sp.Unequality, "!=", lambda a, b: a != b),
    _logic(sp.And, "np.logical_and", lambda *a: all(a), "and"),
    _logic(sp.Or, "np.logical_or", lambda *a: any(a), "or"),
    Op(sp.Not, zero_vjp, zero_jvp, "np.logical_not({0})", zero_derivative=True, mpmath=lambda a: not a,
       scalar="(not {0})"),
    Op(sp.ITE, zero_vjp, zero_jvp, "np.where({0}, {1}, {2})", zero_derivative=True,
       mpmath=lambda c, a, b: a if c else b),
    # of indices as a rule (SymPy's derivative of x[i] by x[j]): 1 where they are equal, else 0
    Op(sp.KroneckerDelta, zero_vjp, zero_jvp, "np.where({0} == {1}, 1.0, 0.0)", zero_derivative=True,
       mpmath=lambda a, b: 1 if a == b else 0, scalar="(1.0 if {0} == {1} else 0.0)", arity=2),
]
