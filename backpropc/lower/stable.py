"""Numerically safe forms, applied while the model is lowered to the graph (docs/nonsmooth.md).

Two jobs:
- `stable_form`: rewrite what users write into the stable functions before differentiation:
  1/(1 + exp(-x)) -> sigmoid(x), log(1 + exp(x)) -> softplus(x),
  log(exp(a) + exp(b) + ...) -> logsumexp(a, b, ...), log(1 + x) -> log1p(x), exp(x) - 1 -> expm1(x),
  log(det(X)) -> logdet(X) (from the LU factors: no overflow).
- `guard_branches`: a Piecewise is emitted as np.where, which evaluates every branch. Inside a
  branch, the argument of each function with a restricted domain (log, sqrt, 1/x, asin, ...) or
  that can overflow (exp, cosh, ...) is replaced by a safe value wherever the branch is not taken,
  so neither the value nor the gradient of an untaken branch can produce a NaN, an inf or a warning.
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from ..functions import logsumexp, sigmoid, softplus
from ..graph import CONST, Graph
from ..ops import RECORDS
from ..ops.matrix import det, logdet

# ---- rewrites into stable functions ----------------------------------------------------------


def stable_form(graph: Graph, op, args: list[int]) -> tuple[int, str] | None:
    """(the node in a stable form, what was rewritten), or None when no rule applies."""
    if op is sp.Pow and graph.number(args[1]) == -1:
        terms = _add_terms(graph, args[0])
        if terms is not None and len(terms) == 2 and graph.number(terms[0]) == 1 and _is(graph, terms[1], sp.exp):
            u = graph[terms[1]].args[0]
            return graph.apply(sigmoid, graph.mul(graph.const(-1), u)), "1/(1 + exp(-x)) -> sigmoid(x)"
    if op is sp.log and graph[args[0]].op is det:
        return graph.apply(logdet, graph[args[0]].args[0]), "log(det(X)) -> logdet(X)"
    if op is sp.log:
        terms = _add_terms(graph, args[0])
        if terms is None:
            return None
        if len(terms) == 2 and graph.number(terms[0]) == 1:
            if _is(graph, terms[1], sp.exp):
                return graph.apply(softplus, graph[terms[1]].args[0]), "log(1 + exp(x)) -> softplus(x)"
            return graph.apply(log1p, terms[1]), "log(1 + x) -> log1p(x)"
        if len(terms) >= 2 and all(_is(graph, t, sp.exp) for t in terms):
            return (graph.apply(logsumexp, *[graph[t].args[0] for t in terms]),
                    "log(exp(a) + exp(b) + ...) -> logsumexp(a, b, ...)")
    if op is sp.Add and len(args) >= 2:
        minus_one = [a for a in args if graph.number(a) == -1]
        exps = [a for a in args if _is(graph, a, sp.exp)]
        if minus_one and exps:
            rest = [a for a in args if a not in (minus_one[0], exps[0])]
            return (graph.add(graph.apply(expm1, graph[exps[0]].args[0]), *rest),
                    "exp(x) - 1 -> expm1(x)")
    return None


def _add_terms(graph: Graph, i: int) -> tuple[int, ...] | None:
    """The terms of an Add node, the numeric constant first; None when i is not a sum."""
    node = graph[i]
    if node.op is not sp.Add:
        return None
    return tuple(sorted(node.args, key=lambda a: graph.number(a) is None))


def _is(graph: Graph, i: int, op) -> bool:
    return graph[i].op is op


# ---- safe branches -----------------------------------------------------------------------------

def _safe_argument(op):
    """The value op's argument takes where the branch is not taken (its record's `safe`: a point
    well inside the domain, where the derivative is finite too), or None when op is safe anywhere."""
    record = RECORDS.get(op)
    return None if record is None else record.safe


def _needs_guard(graph: Graph, node) -> bool:
    if _safe_argument(node.op) is not None:
        return True
    if node.op is sp.Pow:  # fractional, negative or symbolic powers: the base must be safe
        exponent = graph.number(node.args[1])
        return exponent is None or not (exponent.is_integer and exponent >= 0)
    return False


def guard_branches(graph: Graph, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Piecewise (expr, cond) pairs whose untaken branches evaluate on safe arguments."""
    true = graph.const(sp.true)
    guarded = []
    earlier: list[int] = []
    for expr, cond in pairs:
        taken = cond if not earlier else graph.apply(
            sp.And, cond, *[graph.apply(sp.Not, c) for c in earlier])
        if graph[cond].value is sp.true:
            taken = true if not earlier else graph.apply(
                sp.And, *[graph.apply(sp.Not, c) for c in earlier])
        guarded.append((_guard(graph, expr, taken), cond))
        earlier.append(cond)
    return guarded


def _guard(graph: Graph, root: int, taken: int) -> int:
    """A copy of root's anonymous subexpression with risky arguments replaced where not taken.

    The walk stops at user steps (computed outside the branch anyway) and at leaves."""
    if graph[taken].op == CONST:
        return root
    done: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        i, ready = stack.pop()
        if i in done:
            continue
        node = graph[i]
        if node.is_leaf or i in graph.protected:
            done[i] = i
            continue
        if not ready:
            stack.append((i, True))
            stack.extend((a, False) for a in node.args if a not in done)
            continue
        args = [done[a] for a in node.args]
        if _needs_guard(graph, node) and graph[args[0]].op != CONST:
            safe = graph.const(_safe_argument(node.op) if _safe_argument(node.op) is not None else 1)
            args[0] = graph.piecewise((args[0], taken), (safe, graph.const(sp.true)))
        done[i] = graph.apply(node.op, *args) if args != list(node.args) else i
    return done[root]
