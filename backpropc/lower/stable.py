"""Numerically safe forms, applied while the model is lowered to the graph (docs/nonsmooth.md).

Two jobs:
- `stable_form`: rewrite what users write into the stable functions before differentiation
  (`RULES`, by op): 1/(1 + exp(-x)) -> sigmoid(x) (and 1/(a + b*exp(x)) for positive a, b),
  exp(x)/(1 + exp(x)) -> sigmoid(x), log(sigmoid(x)) -> -softplus(-x),
  log(1 - sigmoid(x)) -> -softplus(x) (binary cross-entropy), log(exp(x)) -> x,
  log(1 + exp(x)) -> softplus(x), log(c + exp(a) + exp(b) + ...) -> logsumexp(log c, a, b, ...),
  log(1 + x) -> log1p(x), exp(x) - 1 -> expm1(x), sqrt(x**2) -> Abs(x),
  log(det(X)) -> logdet(X) (from the LU factors: no overflow). Steps are nodes, so a rule sees
  through them: mu = exp(eta), then log(mu), is eta.
- `guard_branches`: a Piecewise is emitted as np.where, which evaluates every branch. Inside a
  branch, the argument of each function with a restricted domain (log, sqrt, 1/x, asin, ...) or
  that can overflow (exp, cosh, ...) is replaced by a safe value wherever the branch is not taken,
  so neither the value nor the gradient of an untaken branch can produce a NaN, an inf or a warning.
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from ..functions import logsumexp, sigmoid, softplus
from ..graph import CONST, Domain, Graph
from ..ops import RECORDS, record_for
from ..ops.array import lifted
from ..ops.matrix import det, logdet

# ---- rewrites into stable functions ----------------------------------------------------------


def stable_form(graph: Graph, op, args: list[int]) -> tuple[int, str] | None:
    """(the node in a stable form, what was rewritten), or None when no rule applies."""
    for rule in RULES.get(op, ()):
        found = rule(graph, args)
        if found is not None:
            return found
    return None


def _neg(graph: Graph, i: int) -> int:
    return graph.mul(graph.const(-1), i)


def _positive(value) -> bool:
    return value is not None and value.is_positive is True


def _scaled_exp(graph: Graph, i: int):
    """(k, u) when node i is k*exp(u) with a positive number k (k = 1 for exp(u)); else None."""
    k, rest = graph.split_coeff(i)
    if graph[rest].op is sp.exp and _positive(k):
        return k, graph[rest].args[0]
    return None


def _sigmoid_argument(graph: Graph, i: int):
    return graph[i].args[0] if graph[i].op is sigmoid else None


def _reciprocal_of_exp_sum(graph, args):
    """1/(a + b*exp(u)) = sigmoid(-u - log(b/a))/a for positive a and b: never overflows."""
    if graph.number(args[1]) != -1:
        return None
    terms = _add_terms(graph, args[0])
    if terms is None or len(terms) != 2 or not _positive(graph.number(terms[0])):
        return None
    scaled = _scaled_exp(graph, terms[1])
    if scaled is None:
        return None
    a, (b, u) = graph.number(terms[0]), scaled
    shifted = u if a == b else graph.add(u, graph.const(sp.log(b / a)))
    node = graph.mul(graph.const(1 / a), graph.apply(sigmoid, _neg(graph, shifted)))
    note = "1/(1 + exp(-x)) -> sigmoid(x)" if a == b == 1 else \
        "1/(a + a*exp(-x)) -> sigmoid(x)/a" if a == b else "1/(a + b*exp(x)) -> sigmoid(-x - log(b/a))/a"
    return node, note


def _exp_times_sigmoid(graph, args):
    """exp(u)*sigmoid(-u) = sigmoid(u): exp(x)/(1 + exp(x)), once its denominator is a sigmoid."""
    for e in args:
        if graph[e].op is not sp.exp:
            continue
        u = graph[e].args[0]
        for s in args:
            if s != e and _sigmoid_argument(graph, s) == _neg(graph, u):
                rest = [a for a in args if a not in (e, s)]
                return graph.mul(graph.apply(sigmoid, u), *rest), "exp(x)/(1 + exp(x)) -> sigmoid(x)"
    return None


def _log_of_sigmoid(graph, args):
    """log(sigmoid(u)) = -softplus(-u), log(1 - sigmoid(u)) = -softplus(u): finite at any u (the
    binary cross-entropy of a logistic output)."""
    u = _sigmoid_argument(graph, args[0])
    if u is not None:
        return _neg(graph, graph.apply(softplus, _neg(graph, u))), "log(sigmoid(x)) -> -softplus(-x)"
    terms = _add_terms(graph, args[0])
    if terms is not None and len(terms) == 2 and graph.number(terms[0]) == 1:
        return _log1p_of_sigmoid(graph, [terms[1]])
    return None


def _log1p_of_sigmoid(graph, args):
    """log1p(-sigmoid(u)) = log(1 - sigmoid(u)) = -softplus(u)."""
    k, rest = graph.split_coeff(args[0])
    u = _sigmoid_argument(graph, rest)
    if k == -1 and u is not None:
        return _neg(graph, graph.apply(softplus, u)), "log(1 - sigmoid(x)) -> -softplus(x)"
    return None


def _log_of_exp(graph, args):
    """log(exp(u)) = u (the log link: mu = exp(eta), then log(mu))."""
    if graph[args[0]].op is sp.exp:
        return graph[args[0]].args[0], "log(exp(x)) -> x"
    return None


def _log_of_det(graph, args):
    if graph[args[0]].op is det:
        return graph.apply(logdet, graph[args[0]].args[0]), "log(det(X)) -> logdet(X)"
    return None


def _log_of_sum(graph, args):
    """log(c + k1*exp(u1) + ...) -> softplus or logsumexp; log(1 + x) -> log1p(x)."""
    terms = _add_terms(graph, args[0])
    if terms is None:
        return None
    constant = graph.number(terms[0])
    if len(terms) == 2 and constant == 1:
        if graph[terms[1]].op is sp.exp:
            return graph.apply(softplus, graph[terms[1]].args[0]), "log(1 + exp(x)) -> softplus(x)"
    rest = terms[1:] if constant is not None else terms
    scaled = [_scaled_exp(graph, t) for t in rest]
    if len(terms) >= 2 and all(scaled) and (constant is None or _positive(constant)):
        parts = [u if k == 1 else graph.add(u, graph.const(sp.log(k))) for k, u in scaled]
        if constant is not None:
            parts.insert(0, graph.const(sp.log(constant)))
        return graph.apply(logsumexp, *parts), "log(exp(a) + exp(b) + ...) -> logsumexp(a, b, ...)"
    if len(terms) == 2 and constant == 1:
        return graph.apply(log1p, terms[1]), "log(1 + x) -> log1p(x)"
    return None


def _exp_minus_one(graph, args):
    minus_one = [a for a in args if graph.number(a) == -1]
    exps = [a for a in args if graph[a].op is sp.exp]
    if len(args) >= 2 and minus_one and exps:
        rest = [a for a in args if a not in (minus_one[0], exps[0])]
        return graph.add(graph.apply(expm1, graph[exps[0]].args[0]), *rest), "exp(x) - 1 -> expm1(x)"
    return None


def _sqrt_of_square(graph, args):
    """sqrt(x**2) = Abs(x), whose derivative at 0 is 0 (not 0/0)."""
    base = graph[args[0]]
    if graph.number(args[1]) == sp.S.Half and base.op is sp.Pow and graph.number(base.args[1]) == 2:
        return graph.apply(sp.Abs, base.args[0]), "sqrt(x**2) -> Abs(x)"
    return None


# op -> the rewrites tried, in order, when a node of that op is built
RULES = {
    sp.Pow: (_reciprocal_of_exp_sum, _sqrt_of_square),
    sp.Mul: (_exp_times_sigmoid,),
    sp.log: (_log_of_det, _log_of_exp, _log_of_sigmoid, _log_of_sum),
    log1p: (_log1p_of_sigmoid,),
    sp.Add: (_exp_minus_one,),
}


def _add_terms(graph: Graph, i: int) -> tuple[int, ...] | None:
    """The terms of an Add node, the numeric constant first; None when i is not a sum."""
    node = graph[i]
    if node.op is not sp.Add:
        return None
    return tuple(sorted(node.args, key=lambda a: graph.number(a) is None))


# ---- safe branches -----------------------------------------------------------------------------

def _safe_argument(op):
    """The value op's argument takes where the branch is not taken (its record's `safe`: a point
    well inside the domain, where the derivative is finite too), or None when op is safe anywhere."""
    record = RECORDS.get(op)
    return None if record is None else record.safe


def _needs_guard(graph: Graph, node) -> bool:
    if _safe_argument(node.op) is not None:
        return True
    if node.op is sp.Pow:  # fractional, negative or symbolic powers: the base must be safe; and
        # a power of 2 or more overflows for large bases (x**3 at 1e200), which turns the untaken
        # branch's zero signal into 0*inf = NaN
        exponent = graph.number(node.args[1])
        return exponent is None or exponent != 1 and exponent != 0
    return False


def _risky(graph: Graph, i: int, memo: dict) -> bool:
    """Whether node i's value needs a guarded argument anywhere below it (memoised)."""
    stack = [i]
    while stack:
        j = stack[-1]
        if j in memo:
            stack.pop()
            continue
        pending = [a for a in graph[j].args if a not in memo]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        node = graph[j]
        memo[j] = not node.is_leaf and (_needs_guard(graph, node) or any(memo[a] for a in node.args))
    return memo[i]


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
    """A copy of root's subexpression with risky arguments replaced where not taken.

    The walk goes through user steps too (s = sqrt(x), then Piecewise((s, x > 0), (0, True)):
    the branch's s is a guarded copy, so s's derivative is never evaluated at x < 0), and skips
    whatever has nothing to guard below it."""
    if graph[taken].op == CONST:
        return root
    memo = graph.__dict__.setdefault("_risky", {})
    done: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        i, ready = stack.pop()
        if i in done:
            continue
        node = graph[i]
        if node.is_leaf or not _risky(graph, i, memo):
            done[i] = i
            continue
        if not ready:
            stack.append((i, True))
            stack.extend((a, False) for a in node.args if a not in done)
            continue
        args = [done[a] for a in node.args]
        if _needs_guard(graph, node) and graph[args[0]].op != CONST:
            safe = _safe_argument(node.op)
            safe = graph.const(1 if safe is None else safe)  # a power's base: 1
            # a condition over an outer range is repeated to an inner range's tuples
            here = lifted(graph, taken, graph.shapes[args[0]])
            args[0] = graph.piecewise((args[0], here), (safe, graph.const(sp.true)))
        if args != list(node.args) and "array" not in record_for(node.op).tags:
            # a guarded number became a value over the condition's range: an elementwise op
            # repeats it to the deepest range among its arguments, as the front end does
            deepest = max((graph.shapes[a] for a in args if isinstance(graph.shapes[a], Domain)),
                          key=lambda d: d.depth, default=None)
            args = [lifted(graph, a, deepest) for a in args]
        done[i] = graph.apply(node.op, *args) if args != list(node.args) else i
    return done[root]
