"""The Hessian of an indexed model of symbolic size, as families of entries over a Sum's range
(and the Jacobian of its residuals).

Where every indexed parameter is read through windows only (x[i + 1] over a Sum's range, fixed
entries x[0] and x[n - 1]), the objective is a function of the accesses: each window at each
index of its range, each fixed entry and each scalar parameter is one variable u, and the
Hessian over the parameters is P^T H_u P, P the selection of the accesses. H_u[k, j] is the
tangent of access k's error signal when access j's value moves by 1 (forward over reverse,
seeded at the access instead of the parameter): for two windows over one range the second
derivative at each index, an array over the range, as long as nothing between them couples
different indices (a Sum inside, a gather); for a fixed entry or a scalar parameter, a number or
an array over the range. So the Hessian is a few families of entries, rows and columns affine
in the index, whatever n is: the module builds their indices at run time and adds up the
entries that meet (Rosenbrock: x[i] and x[i + 1] give three families, the tridiagonal band).

Anything else (a gather, a nested Sum, a value over the range that depends on a Sum of it, a
matrix) is not followed: `families` returns None, and a model of numeric size still gets the
entry-by-entry structure of backpropc.sparsity.

The Jacobian of residuals over a range is read the same way (`jacobian_families`): the tangent
of each residual when one access moves by 1 is its column of entries, one per index of the
residual's range (Broyden's tridiagonal residuals: three such columns), whatever n is.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .forward import tangents
from .graph import CONST, Domain
from .ops.array import array_dim, window
from .ops.matrix import MatrixOp


@dataclass(frozen=True)
class Access:
    """One way the objective reads a parameter: a window of it (its node and axis nodes) or the
    scalar parameter itself (no axes)."""

    wrt: int          # the parameter's position in WRT
    node: int         # the window's node, or the scalar parameter's symbol node
    axes: tuple       # (start, stop, step) nodes per axis of the window; (index, 0, 0) for a fixed one
    lane: bool        # over a Sum's range (one value per index), or one number


@dataclass(frozen=True)
class Family:
    """Hessian entries (row of access `row`, column of access `col`) with value node `value`, one
    per index of the range where either access is over one; mirrored: also at (col, row)."""

    row: Access
    col: Access
    value: int
    lane: bool        # the value is over the range (else one number per example)
    mirrored: bool


def accesses(m) -> list[Access] | None:
    """Every access of the WRT parameters, in WRT order and then graph order; None when an indexed
    parameter is read otherwise than through windows (or a parameter is a matrix)."""
    program, graph = m.program, m.graph
    leaves = {}
    found = []
    for k, w in enumerate(program.wrt):
        node = m.arg_nodes[w]
        if isinstance(w, sp.MatrixSymbol):
            return None
        if node is None:
            continue
        if isinstance(w, sp.IndexedBase):
            leaves[node] = k
        else:
            found.append(Access(k, node, (), False))
    windows = []
    for i in range(program.n_forward):
        node = graph[i]
        for position, a in enumerate(node.args):
            if a not in leaves:
                continue
            if node.op is window and position == 0:
                windows.append(Access(leaves[a], i, tuple(node.args[2:]), isinstance(graph.shapes[i], Domain)))
            elif node.op is not array_dim:  # a gather, or the array as a whole
                return None
    return sorted(found + windows, key=lambda access: (access.wrt, access.node))


def families(m) -> list[Family] | None:
    """The Hessian of the objective as families of entries, or None where it is not of that kind."""
    graph = m.graph
    found = accesses(m)
    if found is None:
        return None
    signals = m.backward.signals
    signal = {a: signals.get(a.node) for a in found}
    along = {}  # access j -> {signal node: its tangent when access j moves by 1}
    for j in found:
        roots = [signal[k] for k in found if signal[k] is not None and (k.lane or not j.lane)]
        along[j] = tangents(graph, roots, {j.node: graph.const(1)})
        if j.lane and _crosses_array_op(graph, along[j], j):
            return None
    graph.current_origin = None
    result = []
    for position, k in enumerate(found):
        for j in found[position:]:
            # a value over the range is read off the signal over the range, whichever access moves
            first, second = (j, k) if j.lane and not k.lane else (k, j)
            if signal[first] is None:
                continue
            value = along[second].get(signal[first])
            if value is None or _is_zero(graph, value):
                continue
            lane = isinstance(graph.shapes[value], Domain)
            if k.lane and j.lane and graph.shapes[k.node] != graph.shapes[j.node]:
                return None  # two ranges met without a Sum between them: not a family
            result.append(Family(k, j, value, lane, k != j))
    return result


@dataclass(frozen=True)
class Column:
    """Jacobian entries of residual `residual` (its position) in the column of access `access`, with
    value node `value`: one per index of the residual's range, or its one row."""

    residual: int
    access: Access
    value: int
    lane: bool        # the value is over the range (else one number per example)


def jacobian_families(m) -> list[Column] | None:
    """The Jacobian of the residuals as families of entries, or None where it is not of that kind:
    the tangent of each residual when one access moves by 1. A residual over a range reads a
    window at its own index, so that each index's row has the window's entry there."""
    graph, residuals = m.graph, m.program.residuals
    found = accesses(m)
    if found is None:
        return None
    result = []
    for j in found:
        along = tangents(graph, residuals, {j.node: graph.const(1)})
        if j.lane and _crosses_array_op(graph, along, j):
            return None
        for k, r in enumerate(residuals):
            value = along.get(r)
            if value is None or _is_zero(graph, value):
                continue
            lane = isinstance(graph.shapes[value], Domain)
            ranges = {graph.shapes[j.node]} if j.lane else set()
            ranges |= {graph.shapes[value]} if lane else set()
            if ranges and ranges != {graph.shapes[r]}:
                return None  # an entry over another range than its residual's
            result.append(Column(k, j, value, lane))
    graph.current_origin = None
    return result


def _crosses_array_op(graph, along: dict, j: Access) -> bool:
    """Whether moving one index of access j moves other indices (a Sum over its range in between)."""
    return any(isinstance(graph[i].op, type) and issubclass(graph[i].op, MatrixOp) for i in along if i != j.node)


def _is_zero(graph, node: int) -> bool:
    return graph[node].op == CONST and graph[node].value == 0


def index_code(m, access: Access, names: dict) -> str:
    """The access's axes as code, for the runtime's _stencil_coo: (start, stop, step) per axis."""
    return "(" + ", ".join(m.ref(a, names) for a in access.axes) + ("," if len(access.axes) == 1 else "") + ")"

