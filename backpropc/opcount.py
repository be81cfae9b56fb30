"""One operation count for every way of computing a gradient.

An operation is an arithmetic operator or a function call of the evaluated code; a shared
temporary is counted once. For backprop's emitted code that is the cost of each scheduled graph
node. For a SymPy expression evaluated as a printed tree (the naive way) it is the size of that
tree, which can be astronomically large for a small DAG: it is computed with memoised subtree
sizes, one visit per distinct SymPy object, never by walking or printing the tree.
"""

from __future__ import annotations

import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair

from .graph import CONST, SYMBOL, Lanes
from .ops import RECORDS
from .ops.lanes import accumulated_lanes, lane_accumulate


def op_cost(op, nargs: int, ends_with_true: bool = False) -> int:
    """Operations to evaluate one node from its arguments' values: its record's cost (a
    function of another kind costs one call)."""
    if op in (SYMBOL, CONST):
        return 0
    record = RECORDS.get(op)
    return 1 if record is None else record.cost(nargs, ends_with_true)


def node_cost(graph, i: int) -> int:
    """A node's operations; a statement over a re-rolled family's lanes counts once per lane,
    as the terms it stands for would (a sum over the lanes, once per term it adds)."""
    node = graph[i]
    if node.op is lane_accumulate:
        return accumulated_lanes(graph, node)
    ends_with_true = node.op is sp.Piecewise and graph[node.args[-1]].value is sp.true
    cost = op_cost(node.op, len(node.args), ends_with_true)
    lanes = next((graph.shapes[a] for a in node.args if isinstance(graph.shapes[a], Lanes)), graph.shapes[i])
    return cost * lanes.count if isinstance(lanes, Lanes) else cost


def _sympy_cost(e: sp.Basic) -> int:
    if isinstance(e, (sp.Symbol, sp.Number, sp.NumberSymbol, ExprCondPair)) or e.is_Atom:
        return 0
    if isinstance(e, sp.Piecewise):
        return op_cost(sp.Piecewise, 2 * len(e.args), e.args[-1].cond is sp.true)
    if isinstance(e, sp.Mul) and e.args[0] == -1 and len(e.args) == 2:
        return 1  # negation
    return op_cost(e.func, len(e.args))


def tree_ops(expr: sp.Basic) -> int:
    """Operations of `expr` evaluated as a printed tree (no sharing), in time linear in its DAG."""
    memo: dict[int, int] = {}
    keep = []
    stack = [(expr, False)]
    while stack:
        e, ready = stack.pop()
        if id(e) in memo:
            continue
        children = [part for pair in e.args for part in pair] if isinstance(e, sp.Piecewise) else e.args
        if not ready:
            stack.append((e, True))
            stack.extend((c, False) for c in children if id(c) not in memo)
            continue
        keep.append(e)
        memo[id(e)] = _sympy_cost(e) + sum(memo[id(c)] for c in children)
    return memo[id(expr)]


def dag_ops(expr: sp.Basic) -> int:
    """Operations of `expr` with every distinct subexpression computed once (after a perfect CSE)."""
    seen: set[int] = set()
    keep = []
    total = 0
    stack = [expr]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        keep.append(e)
        total += _sympy_cost(e)
        stack.extend([part for pair in e.args for part in pair] if isinstance(e, sp.Piecewise) else e.args)
    return total
