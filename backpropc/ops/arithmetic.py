"""n-ary arithmetic: sums, products, powers, atan2, logsumexp, Max and Min.

A reverse rule gets (out_bar, out, args, needed) and returns one contribution per argument. These
rules are linear in out_bar, and each op has one output, so the forward rule is the same local
derivatives contracted with the arguments' tangents: `linearised(vjp)` builds it, which keeps one
definition of each derivative.
"""

from __future__ import annotations

import mpmath as mp
import sympy as sp

from ..functions import logsumexp
from .base import Op, Ref, balanced, call, nary_cost, total, where


def linearised(vjp):
    """The forward rule of a scalar op from its reverse rule: out_dot = sum_i vjp(1)_i * x_i_dot."""
    def jvp(out, args, tangents):
        needed = [t is not None for t in tangents]
        if not any(needed):
            return None
        one = Ref(out.graph, out.graph.const(1))
        partials = vjp(one, out, args, needed)
        return total(t * p for t, p in zip(tangents, partials) if t is not None and p is not None)
    return jvp


def add_vjp(out_bar, out, args, needed):
    return [out_bar if n else None for n in needed]


def add_jvp(out, args, tangents):
    return total(tangents)


def mul_vjp(out_bar, out, args, needed):
    """Argument i gets out_bar times the product of the others, never out/arg_i (0/0 at 0)."""
    if sum(needed) <= 2 or len(args) <= 3:
        def others(i):
            product = out_bar
            for j, a in enumerate(args):
                if j != i:
                    product = product * a
            return product
        return [others(i) if n else None for i, n in enumerate(needed)]
    # Many factors: prefix and suffix products keep the work linear in the number of factors.
    prefix = [out_bar]
    for a in args[:-1]:
        prefix.append(prefix[-1] * a)
    suffix = [None] * len(args)
    running = None
    for i in range(len(args) - 1, -1, -1):
        suffix[i] = running
        running = args[i] if running is None else args[i] * running
    return [(prefix[i] if suffix[i] is None else prefix[i] * suffix[i]) if n else None
            for i, n in enumerate(needed)]


def pow_vjp(out_bar, out, args, needed):
    base, exponent = args
    n = exponent.number
    if n is None:
        d_base = exponent * base ** (exponent - 1)
    elif n == sp.S.Half:
        d_base = sp.S.Half / out                       # sqrt' = 1/(2 sqrt)
    elif n == -1:
        d_base = -out ** 2                             # (1/x)' = -(1/x)**2
    elif n == -sp.S.Half:
        d_base = -sp.S.Half * out ** 3                 # (x**-1/2)' = -x**-3/2 / 2
    elif n.is_Integer and n < -1:
        d_base = n * out / base                        # (x**-k)' = -k x**-k / x: one division
    else:
        d_base = n * base ** (n - 1)
    # d/dp x**p = x**p log(x); at x = 0 with p > 0 the limit is 0 (x**p is 0 there), not 0*(-inf)
    d_exponent = None
    if needed[1]:
        d_exponent = out * call(sp.log, where(call(sp.Eq, base, 0), Ref(out.graph, out.graph.const(1)), base)) \
            if not base.is_constant else out * call(sp.log, base)
    return [out_bar * d_base if needed[0] else None,
            out_bar * d_exponent if needed[1] else None]


def atan2_vjp(out_bar, out, args, needed):
    y, x = args
    scale = out_bar / (x ** 2 + y ** 2)
    return [scale * x if needed[0] else None, -scale * y if needed[1] else None]


def logsumexp_vjp(out_bar, out, args, needed):
    """d/da_i = exp(a_i - out): the softmax weight of argument i, computed from the output."""
    return [out_bar * call(sp.exp, a - out) if n else None for a, n in zip(args, needed)]


class _Compare:
    def __init__(self, strict, extremum):
        self.strict, self.extremum = strict, extremum


def extremum_vjp(compare):
    """Max/Min: the winning argument gets out_bar. At a tie with a constant argument nobody gets
    anything (so Max(0, x) at 0 agrees with relu); ties among variables split evenly."""
    def vjp(out_bar, out, args, needed):
        constants = [a for a in args if a.is_constant]
        variables = [a for a in args if not a.is_constant]
        beats_constants = None
        if constants:
            bound = constants[0] if len(constants) == 1 else call(compare.extremum, *constants)
            beats_constants = call(compare.strict, out, bound)
        result = {}
        share = None  # out_bar over the number of variables tied at the maximum (3 or more of them)
        if len(variables) > 2:
            one = Ref(out.graph, out.graph.const(1))
            share = out_bar / total(where(call(sp.Eq, v, out), one) for v in variables)
        for i, a in enumerate(variables):
            others = variables[:i] + variables[i + 1:]
            if not others:
                signal = out_bar if beats_constants is None else where(beats_constants, out_bar)
            elif len(others) == 1:
                wins, tie = call(compare.strict, a, others[0]), call(sp.Eq, a, others[0])
                if beats_constants is not None:
                    wins, tie = call(sp.And, wins, beats_constants), call(sp.And, tie, beats_constants)
                signal = where(wins, out_bar, where(tie, out_bar / 2))
            else:
                mine = call(sp.Eq, a, out)
                if beats_constants is not None:
                    mine = call(sp.And, mine, beats_constants)
                signal = where(mine, share)
            result[a.id] = signal
        return [result.get(a.id) if n else None for a, n in zip(args, needed)]
    return vjp


def _mp_max(*args):
    return max(args)


def _mp_min(*args):
    return min(args)


_max_vjp = extremum_vjp(_Compare(sp.StrictGreaterThan, sp.Max))
_min_vjp = extremum_vjp(_Compare(sp.StrictLessThan, sp.Min))

RECORDS = [
    Op(sp.Add, add_vjp, add_jvp, cost=nary_cost, commutative=True,
       mpmath=lambda *a: sum(a)),
    Op(sp.Mul, mul_vjp, linearised(mul_vjp), cost=nary_cost, commutative=True,
       mpmath=lambda *a: mp.fprod(a)),
    Op(sp.Pow, pow_vjp, linearised(pow_vjp), mpmath=lambda b, e: b ** e, domain=(0.2, 3.0)),
    Op(sp.atan2, atan2_vjp, linearised(atan2_vjp), "np.arctan2({0}, {1})", mpmath=mp.atan2, scalar="math.atan2({0}, {1})",
       domain=(0.2, 3.0)),
    Op(logsumexp, logsumexp_vjp, linearised(logsumexp_vjp),
       lambda *a: f"np.logaddexp({a[0]}, {a[1]})" if len(a) == 2 else f"_logsumexp({', '.join(a)})",
       helpers=("_logsumexp",), cost=nary_cost, mpmath=lambda *a: mp.log(mp.fsum(mp.exp(v) for v in a))),
    Op(sp.Max, _max_vjp, linearised(_max_vjp), lambda *a: balanced("np.maximum", a), cost=nary_cost, commutative=True,
       scalar=lambda *a: f"max({', '.join(a)})",
       mpmath=_mp_max),
    Op(sp.Min, _min_vjp, linearised(_min_vjp), lambda *a: balanced("np.minimum", a), cost=nary_cost, commutative=True,
       scalar=lambda *a: f"min({', '.join(a)})",
       mpmath=_mp_min),
]
