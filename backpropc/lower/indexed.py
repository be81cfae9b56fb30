"""Indexed models (sympy.IndexedBase, sympy.Idx, sympy.Sum) to the array ops of the graph.

A Sum's summand is lowered once, with its index standing for all the values of its range at
once (backpropc.ops.array): `x[i + 1]` over i = lo..hi becomes the view x[lo + 1:hi + 2], and the
Sum a reduction over the range. A nested Sum lists its index tuples flat (`nest`), triangular
bounds included, and indexes through gathers. Index expressions and bounds are small SymPy
expressions (affine in the indices); they are the only trees examined here.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement

from ..errors import ModelError
from ..graph import Domain
from ..ops.array import (
    array_dim,
    gather,
    inner_of,
    lift,
    nest,
    ones_over,
    outer_of,
    segment_sum,
    span,
    total,
    window,
)


@dataclass(frozen=True)
class Loop:
    """A Sum index in scope: its symbol, bounds (SymPy), value node, and parent map (nested)."""

    symbol: sp.Basic
    lo: sp.Expr
    hi: sp.Expr
    values: int
    parent: int | None
    depth: int
    env: dict  # the symbols' nodes at this loop's depth


def is_indexed_expr(e: sp.Basic) -> bool:
    return isinstance(e, (sp.Sum, sp.Indexed, sp.IndexedBase, sp.Idx))


def convert(converter, e: sp.Basic, env: dict) -> int:
    if isinstance(e, sp.Sum):
        return _sum(converter, e, env)
    if isinstance(e, sp.Indexed):
        return _indexed(converter, e, env)
    if isinstance(e, sp.Idx):
        found = env.get(e)
        if found is None:
            raise ModelError(f"index {e} is used outside a Sum over it; sum over it, or use a number")
        return found
    raise ModelError(f"{e} is an indexed array; use its entries (such as {e}[i] inside "
                     f"sympy.Sum(..., (i, 0, n - 1))), not the whole array")


def dimension(converter, sym: sp.Symbol) -> int | None:
    """The node of shape symbol n (axis k of an IndexedBase argument, read at run time), or None."""
    graph = converter.graph
    source = graph.array_dimensions.get(sym)
    if source is None:
        return None
    base, axis = source
    # counted from the end: a batch of data leads
    node = graph.apply(array_dim, graph.symbol(base), graph.const(axis - len(base.shape)))
    if all(node != n for _, n in graph.array_names):
        graph.array_names.append((sp.Symbol(str(sym)), node))
    return node


def _scope(converter) -> list[Loop]:
    return converter.__dict__.setdefault("loops", [])


# ---- Sum ------------------------------------------------------------------------------------------
def _sum(converter, e: sp.Sum, env: dict) -> int:
    _register_all(converter, e)
    # SymPy's first limit is the innermost Sum: lower the outermost first.
    return _reduce(converter, e.function, list(e.limits), env)


def _register_all(converter, e) -> None:
    if not converter.__dict__.setdefault("arrays_registered", False):
        # a bound may use the shape symbol of an array that only a later term reads
        converter.arrays_registered = True
        for source in getattr(converter, "sources", ()):
            _register_arrays(converter.graph, source)
    _register_arrays(converter.graph, e)


def _reduce(converter, summand, limits, env) -> int:
    graph = converter.graph
    scope = _scope(converter)
    sym, lo, hi = limits[-1]
    if any(loop.symbol == sym for loop in scope):  # it shadows an enclosing Sum's index, as in SymPy
        summand, limits = _renamed(sym, summand, limits, scope)
        sym = limits[-1][0]
    loop = _enter(converter, sym, lo, hi, env)
    try:
        if len(limits) > 1:
            body = _reduce(converter, summand, limits[:-1], loop.env)
        else:
            body = converter.from_sympy(summand, loop.env)
    finally:
        scope.pop()
    if not isinstance(graph.shapes[body], Domain):  # the summand does not depend on the index
        count = converter.from_sympy(sp.Max(0, hi + 1 - lo), env)
        return graph.mul(body, count)
    if loop.parent is None:
        return graph.apply(total, body)
    return graph.apply(segment_sum, body, loop.parent, scope[-1].values)


def _renamed(sym, summand, limits, scope):
    """The summand and limits of a Sum whose index `sym` is an enclosing Sum's too, with its own
    index renamed where it is bound: the summand and the inner limits (its bounds read the
    enclosing index). A uniform renaming, so an inner rebinding stays one."""
    taken = {str(loop.symbol) for loop in scope}
    k = len(scope)
    while f"{sym}_{k}" in taken or summand.has(sp.Symbol(f"{sym}_{k}", integer=True)):
        k += 1
    rename = {sym: sp.Symbol(f"{sym}_{k}", integer=True)}
    inner = [tuple(sp.sympify(part).xreplace(rename) for part in limit) for limit in limits[:-1]]
    return summand.xreplace(rename), inner + [(rename[sym], *limits[-1][1:])]


def _enter(converter, sym, lo, hi, env) -> Loop:
    """The loop of index `sym` over lo..hi, in scope (the caller pops it): its values, one per
    index (tuples of an enclosing loop's and its own in a nested Sum), and the symbols' nodes."""
    graph = converter.graph
    scope = _scope(converter)
    for bound in (lo, hi):
        _check_integer_affine(graph, bound, {loop.symbol for loop in scope},
                              f"the bound {bound} of the Sum over {sym}",
                              "for a bound such as n/2, declare the shape with a new symbol, "
                              "(2*q,), and sum up to q - 1")
    if sp.sympify(lo).is_Integer and sp.sympify(hi).is_Integer and hi < lo - 1:
        raise ModelError(f"the Sum over {sym} runs from {lo} down to {hi}, which SymPy reads as minus the Sum "
                         f"from {hi + 1} to {lo - 1}; write the bounds in increasing order")
    lo_node = converter.from_sympy(sp.sympify(lo), env)
    stop_node = converter.from_sympy(sp.sympify(hi + 1), env)
    if not scope:
        values = graph.apply(span, lo_node, stop_node)
        inner_env = {**env, sym: values}
        loop = Loop(sym, lo, hi, values, None, 0, inner_env)
    else:
        outer = scope[-1]
        tuples = graph.apply(nest, lo_node, stop_node, outer.values)
        parent, values = graph.apply(outer_of, tuples), graph.apply(inner_of, tuples)
        inner_env = {**env, sym: values}
        for up in scope:  # an outer index, repeated to each inner tuple
            inner_env[up.symbol] = graph.apply(lift, env[up.symbol], parent)
            graph.array_names.append((sp.Symbol(f"{up.symbol}_{sym}"), inner_env[up.symbol]))
        loop = Loop(sym, lo, hi, values, parent, outer.depth + 1, inner_env)
    graph.array_names.append((sp.Symbol(str(sym)), values))
    scope.append(loop)
    return loop


# ---- a value for each index: residuals over a range ---------------------------------------------
def over_range(converter, expr, limit, env) -> int:
    """expr for each index of the range (sym, lo, hi), as a value over the range (not summed): a
    residual for each i, as residuals=[(y[i] - f(t[i]), (i, 0, n - 1))] writes it."""
    _register_all(converter, expr)
    sym, lo, hi = limit
    loop = _enter(converter, sym, lo, hi, env)
    try:
        body = converter.from_sympy(expr, loop.env)
    finally:
        _scope(converter).pop()
    graph = converter.graph
    if not isinstance(graph.shapes[body], Domain):  # the same for every index: spread over the range
        ones = graph.apply(ones_over, loop.values)
        # (0 times the ones would fold back to the number 0, one row instead of one per index)
        body = graph.add(ones, graph.const(-1)) if graph.number(body) == 0 else graph.mul(body, ones)
    return body


def free_indices(expr) -> list[sp.Idx]:
    """The sympy.Idx objects of expr that no Sum in it sums over (each object visited once), by name."""
    seen, found, bound, stack = set(), set(), set(), [expr]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, sp.Idx):
            found.add(e)
            continue
        if isinstance(e, sp.Sum):
            bound.update(limit[0] for limit in e.limits)
        if isinstance(e, sp.Basic):
            stack.extend(e.args)
    return sorted(found - bound, key=str)


def _register_arrays(graph, summand) -> None:
    """Make the shape symbols of the IndexedBases in a Sum known (each object visited once), and
    refuse a matrix entry at a symbolic index."""
    seen, stack = set(), [summand]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, sp.IndexedBase):
            register_shape(graph, e)
        elif isinstance(e, MatrixElement) and not (e.i.is_Integer and e.j.is_Integer):
            raise ModelError(f"{e}: a matrix entry needs numeric indices (SymPy writes an entry of a "
                             f"product, such as (A*x)[0, 0], as a sum over a symbolic index); use the "
                             f"1x1 product itself, or bp.sum of it")
        elif isinstance(e, sp.Basic) and not isinstance(e, (sp.Symbol, sp.Number)):
            stack.extend(e.args)


def register_shape(graph, sym: sp.Basic) -> None:
    """Make the sizes an argument's shape names known to the graph; each entry is a number or one
    symbol (an expression could not be read off the array at call time)."""
    shape = sym.shape if isinstance(sym, (sp.IndexedBase, sp.MatrixSymbol)) else None
    for d in shape or ():
        if not (isinstance(d, sp.Symbol) or d.is_Integer):
            raise ModelError(f"the shape of {sym} has {d}, an expression; give each size as a number or "
                             f"one symbol (shape=(m,) for m = {d}) and write the bounds in it")
        if d.is_Integer and d < 0:
            raise ModelError(f"the shape of {sym} has {d} entries along an axis; a size is 0 or more")
    graph.register_dimensions(sym)


# ---- Indexed --------------------------------------------------------------------------------------
def _indexed(converter, e: sp.Indexed, env: dict) -> int:
    graph = converter.graph
    base, indices = e.base, e.indices
    if base.shape is None:
        raise ModelError(f"{base} has no shape; declare it with sympy.IndexedBase({str(base)!r}, "
                         f"shape=(n,)) (its gradient and its range checks need one)")
    if len(base.shape) != len(indices):
        raise ModelError(f"{e} has {len(indices)} indices but {base} has shape {tuple(base.shape)}")
    if len(indices) > 2:
        raise ModelError(f"{e}: indexed arrays of more than 2 dimensions are not supported")
    register_shape(graph, base)
    scope = _scope(converter)
    loops = {loop.symbol: loop for loop in scope}
    affine = [_check_integer_affine(graph, k, set(loops), f"the index {k} of {e}") for k in indices]
    _check_static_range(e, affine, loops)
    leaf = graph.symbol(base)
    used = [[s for s, a in coeffs.items() if a != 0] for coeffs, _ in affine]
    deepest = max((loops[s].depth for axis in used for s in axis), default=-1)
    if 0 <= deepest < len(scope) - 1 and not _may_miss(base, affine, loops, scope, deepest):
        # x[i] inside the Sum over j: the entry at the outer depth (a view there), repeated to
        # the inner tuples; its adjoint adds the inner tuples up in order, not by scattering.
        inner = scope[deepest + 1:]
        del scope[deepest + 1:]
        try:
            node = _indexed(converter, e, scope[-1].env)
        finally:
            scope.extend(inner)
        for loop in inner:
            node = graph.apply(lift, node, loop.parent)
        return node
    if not any(used):  # a fixed entry, x[3] or x[n - 1]
        axes = []
        for k in indices:
            axes += [converter.from_sympy(sp.sympify(k), env), graph.const(0), graph.const(0)]
        return graph.apply(window, leaf, graph.const(0), *axes)
    if len(scope) == 1 and sum(map(len, used)) == 1:
        loop = scope[0]
        axes = []
        for (coeffs, rest), k in zip(affine, indices):
            a = coeffs.get(loop.symbol, 0)
            if a < 0:
                break
            if a == 0:
                axes += [converter.from_sympy(sp.sympify(k), env), graph.const(0), graph.const(0)]
            else:
                start, stop = a * loop.lo + rest, a * loop.hi + rest + 1
                axes += [converter.from_sympy(start, env), converter.from_sympy(stop, env), graph.const(a)]
        else:
            return graph.apply(window, leaf, graph.const(loop.values), *axes)
    index = [converter.from_sympy(sp.sympify(k), env) for k in indices]
    return graph.apply(gather, leaf, *index)


def _check_static_range(e: sp.Indexed, affine, loops) -> None:
    """Refuse an entry that every call would find out of range: the size and the bounds of the
    Sums it runs over are numbers (the run time checks the rest)."""
    for axis, ((coeffs, rest), size) in enumerate(zip(affine, e.base.shape)):
        terms = [(a, loops[sym]) for sym, a in coeffs.items() if a != 0]
        bounds = [(sp.sympify(loop.lo), sp.sympify(loop.hi)) for _, loop in terms]
        if not (size.is_Integer and rest.is_Integer and all(lo.is_Integer and hi.is_Integer for lo, hi in bounds)):
            continue
        if any(lo > hi for lo, hi in bounds):  # an empty range reads nothing
            continue
        low = rest + sum(min(a * lo, a * hi) for (a, _), (lo, hi) in zip(terms, bounds))
        high = rest + sum(max(a * lo, a * hi) for (a, _), (lo, hi) in zip(terms, bounds))
        if low < 0 or high >= size:
            where = f"along axis {axis} " if len(affine) > 1 else ""
            raise ModelError(f"{e} reaches index {low if low < 0 else high} {where}of {e.base}, which has "
                             f"{size} entries there (0 to {size - 1}); change the index or the Sum's bounds")


def _may_miss(base, affine, loops, scope, deepest) -> bool:
    """Whether x[i + 1] inside an inner Sum, read at the outer depth for every outer value, might
    fall outside x for an outer value whose inner range is empty (j = i + 1 .. n - 1 at
    i = n - 1): then no tuple reads it, and it is gathered through the inner tuples instead, so
    that only what is read is range-checked. Not so when the inner bounds do not move with an
    outer index, or when the entry is inside x over the whole outer range (X[i, 0], the usual
    case), as SymPy can tell from the bounds and the shape."""
    ragged = any(not {loop.symbol for loop in scope[:k]}.isdisjoint(sp.sympify(bound).free_symbols)
                 for k, loop in enumerate(scope) if k > deepest for bound in (loop.lo, loop.hi))
    if not ragged:
        return False
    for (coeffs, rest), size in zip(affine, base.shape):
        terms = [(a, loops[sym]) for sym, a in coeffs.items() if a != 0]
        if len(terms) > 1:
            return True
        low = high = rest
        if terms:
            a, loop = terms[0]
            low, high = (a * loop.lo + rest, a * loop.hi + rest) if a > 0 else (a * loop.hi + rest, a * loop.lo + rest)
        # a few symbols each (bounds and a shape): expanding them is cheap
        if not (sp.expand(low).is_nonnegative and sp.expand(size - 1 - high).is_nonnegative):
            return True
    return False


def _check_integer_affine(graph, expr, loop_symbols: set, what: str,
                          fix: str = "write an index such as 2*i + 1"):
    """({index: integer coefficient}, rest) of an affine index expression; a ModelError names
    anything else (a parameter or data, a non-integer coefficient, a power)."""
    expr = sp.sympify(expr)
    if expr.has(sp.Indexed):  # a small index expression
        raise ModelError(f"{what} depends on data (an indexed entry); indices must be affine in the Sum "
                         f"indices, such as x[2*i + 1]")
    allowed = set(loop_symbols) | set(graph.array_dimensions)
    for s in sorted(expr.free_symbols, key=str):
        if s not in allowed:
            step = ("; a step is its own expression, outside every Sum: write what uses the index "
                    "inside the Sum") if s.is_integer else ""
            raise ModelError(f"{what} depends on {s}, which is not the index of an enclosing Sum nor "
                             f"a shape symbol; indices and Sum bounds may use only numbers, enclosing "
                             f"Sum indices and the shape symbols of IndexedBase arguments (no "
                             f"parameters or data){step}")
    gens = sorted(expr.free_symbols, key=str)
    try:
        poly = sp.Poly(expr, *gens) if gens else None
    except sp.PolynomialError:
        poly = None
    if gens and (poly is None or poly.total_degree() > 1
                 or not all(c.is_integer for c in poly.coeffs())):
        raise ModelError(f"{what} is not affine with integer coefficients in the indices; {fix}")
    if not gens and not expr.is_integer:
        raise ModelError(f"{what} is not an integer")
    coeffs = {s: int(poly.coeff_monomial(s)) for s in gens if s in loop_symbols} if gens else {}
    rest = expr - sum(a * s for s, a in coeffs.items())
    return coeffs, sp.expand(rest)
