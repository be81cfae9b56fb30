"""The op registry: one record per primitive (backpropc.ops.base.Op), grouped by kind.

    elementwise.py   exp, log, sin, ..., sigmoid, loggamma, polygamma, beta, ...
    arithmetic.py    Add, Mul, Pow, atan2, logsumexp, Max, Min
    logic.py         Piecewise, comparisons, And, Or, Not
    matrix.py        matmul, transpose, trace, inverse, det, ...
    array.py         Sum over IndexedBase: ranges, windows, gathers, reductions
    lanes.py         re-rolled families: lane vectors, slices, gathers, tables, sums

Any other SymPy function that defines `fdiff` (its derivative) and `_numpycode` (its NumPy form)
gets one generic record, built here on first use. The graph asks the registry for shapes,
folding and commutativity; the passes ask it for rules, NumPy forms and costs.
"""

from __future__ import annotations

import dataclasses
import math
from functools import cache

import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.printing.numpy import NumPyPrinter

from ..errors import UnsupportedFunctionError
from . import arithmetic, array, elementwise, lanes, logic, matrix
from .base import CONST, Op, Ref, call, total, where
from .matrix import MatrixOp, elementwise_shape

__all__ = ["RECORDS", "REGISTRY", "MatrixOp", "Op", "Ref", "call", "constant_value", "has_record", "record_for",
           "supported_functions", "total", "where"]

RECORDS: dict[object, Op] = {}
for _module in (arithmetic, elementwise, logic, matrix, array, lanes):
    for _record in _module.RECORDS:
        assert _record.op not in RECORDS, f"two records for {_record.name}"
        RECORDS[_record.op] = dataclasses.replace(_record, kind=_module.__name__.rsplit(".", 1)[-1])


def has_record(op) -> bool:
    return op in RECORDS


def record_for(op) -> Op:
    """The record of op: from the tables, or the generic fdiff record of a user function."""
    found = RECORDS.get(op)
    if found is not None:
        return found
    if isinstance(op, type) and issubclass(op, sp.Function):
        return _generic_record(op)
    raise UnsupportedFunctionError(f"{getattr(op, '__name__', op)} has no derivative rule")


def supported_functions() -> list[str]:
    """Names of the functions with a record (operators, comparisons and matrix ops left out), sorted."""
    operators = (sp.Add, sp.Mul, sp.Pow, sp.core.relational.Relational, sp.logic.boolalg.BooleanFunction,
                 MatrixOp)  # array ops are MatrixOps too
    return sorted({r.name for r in RECORDS.values() if not issubclass(r.op, operators)})


# ---- the generic record: any SymPy function that defines fdiff ---------------------------------
@cache
def _fdiff_template(op, nargs: int):
    """op's partial derivatives as small SymPy expressions in placeholder arguments."""
    params = sp.symbols(f"_a0:{nargs}", cls=sp.Dummy)
    applied = op(*params)
    if not isinstance(applied, sp.Function) or applied.func is not op:
        raise UnsupportedFunctionError(f"function {op.__name__!r} evaluates away on symbols; "
                                       f"it cannot be differentiated by rule")
    partials = []
    for i in range(1, nargs + 1):
        try:
            d = applied.fdiff(i)
        except Exception as exc:  # SymPy raises several types here
            raise UnsupportedFunctionError(
                f"function {op.__name__!r} has no derivative for argument {i}: define fdiff") from exc
        if d.has(sp.Derivative, sp.Subs):  # a small expression: one derivative, not a program
            raise UnsupportedFunctionError(
                f"function {op.__name__!r} has no usable derivative: define fdiff returning a "
                f"closed form")
        partials.append(d)
    return params, partials


def graph_of(graph, expr: sp.Basic, env: dict) -> int:
    """The node of a small SymPy expression (a derivative from fdiff) over the nodes in env."""
    if expr in env:
        return env[expr]
    if isinstance(expr, (sp.Number, sp.NumberSymbol)) or expr in (sp.true, sp.false):
        return graph.const(expr)
    args = [graph_of(graph, a, env) for a in expr.args]
    if not (expr.func in RECORDS or isinstance(expr, sp.Function) and hasattr(expr.func, "_numpycode")
            and not isinstance(expr, AppliedUndef)):  # an undefined h(x) would reach the module
        raise UnsupportedFunctionError(f"a derivative from fdiff uses {expr.func.__name__}, which has no "
                                       f"rule; write fdiff with the supported functions")
    record_for(expr.func)
    return graph.apply(expr.func, *args)


class NumPyNamesPrinter(NumPyPrinter):
    """SymPy's NumPy printer writing `np.exp` (the generated module's `import numpy as np`)."""

    def __init__(self, settings: dict | None = None) -> None:
        super().__init__({"fully_qualified_modules": True, "strict": False, **(settings or {})})

    def _module_format(self, fqn, register=True):
        text = super()._module_format(fqn, register)
        return "np." + text[len("numpy."):] if text.startswith("numpy.") else text


def _generic_record(op) -> Op:
    def vjp(out_bar, out, args, needed):
        params, partials = _fdiff_template(op, len(args))
        env = {p: a.id for p, a in zip(params, args)}
        return [out_bar * Ref(out.graph, graph_of(out.graph, d, env)) if n else None
                for d, n in zip(partials, needed)]

    def jvp(out, args, tangents):
        params, partials = _fdiff_template(op, len(args))
        env = {p: a.id for p, a in zip(params, args)}
        return total(t * Ref(out.graph, graph_of(out.graph, d, env))
                     for d, t in zip(partials, tangents) if t is not None)

    def code(*operands):
        printer = NumPyNamesPrinter()
        text = printer.doprint(op(*[sp.Symbol(t) for t in operands], evaluate=False))
        if getattr(printer, "_not_supported", None):
            raise UnsupportedFunctionError(
                f"no NumPy form for {op.__name__}: give the function a _numpycode(self, printer) method")
        return text

    return Op(op, vjp, jvp, code, tags=frozenset({"generic", "operands"}))


# Ops whose constant arguments make a constant that may be computed once, when compiling.
_FOLDABLE = ("elementwise", "arithmetic")


def constant_value(graph, i: int):
    """The value of node i as a SymPy number when it is computed from constants alone (such as
    -log(2*pi)/2), so that it is printed once as a literal instead of computed on every call;
    None otherwise."""
    cache = graph.__dict__.setdefault("_constant_values", {})
    if i in cache:
        return cache[i]
    stack, order = [i], []
    while stack:  # the constant subexpression below i, arguments first
        j = stack.pop()
        if j in cache or j in order:
            continue
        node = graph[j]
        record = RECORDS.get(node.op)
        if node.op == CONST or node.op == "symbol" or record is None or record.kind not in _FOLDABLE \
                or graph.is_matrix(j):
            cache[j] = None if node.op != CONST or not isinstance(node.value, sp.Number) else node.value
            if node.op == CONST and cache[j] is None and node.value.is_number and node.value not in (sp.true, sp.false):
                cache[j] = _real(node.value)
            continue
        order.append(j)
        stack.extend(node.args)
    for j in sorted(order):
        args = [cache.get(a) for a in graph[j].args]
        if any(a is None for a in args):
            cache[j] = None
            continue
        op = graph[j].op
        value = op(*args, evaluate=False) if op is not sp.Add and op is not sp.Mul else op(*args)
        cache[j] = _real(value)
    return cache[i]


def _real(value):
    """A SymPy number as an exact rational when it is one, else a 20-digit float; None when it
    is not a finite real number."""
    if isinstance(value, sp.Rational):
        return value
    try:
        number = sp.Float(value.evalf(20), 20)
    except (TypeError, ValueError):
        return None
    if not (number.is_finite and number.is_real) or not math.isfinite(float(number)):
        return None
    return number


# ---- what the graph asks ------------------------------------------------------------------------
class Registry:
    """The per-op facts the graph IR needs while it builds nodes (it imports nothing itself)."""

    def shape(self, graph, node):
        record = RECORDS.get(node.op)
        if record is not None and record.shape is None and all(graph.shapes[a] is None for a in node.args):
            return None  # scalars in, a scalar out: the common case, first
        if (record is None or record.shape is None) and any(graph.is_array(a) for a in node.args):
            return array.combined_shape(graph, node)
        if record is not None and record.shape is not None:
            return record.shape(graph, node)
        return elementwise_shape(graph, node)

    def fold(self, graph, op, args):
        record = RECORDS.get(op)
        return record.fold(graph, args) if record is not None and record.fold is not None else None

    def commutative(self, op) -> bool:
        record = RECORDS.get(op)
        return record is not None and record.commutative

    def is_fill(self, op) -> bool:
        return op is matrix.fill


REGISTRY = Registry()
