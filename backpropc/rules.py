"""Every derivative rule, in one table.

A rule receives the output's error signal `out_bar`, the output `out` and the arguments, all as
`Ref`s (graph nodes with arithmetic), plus which arguments need a contribution, and returns one
contribution per argument (None = none). Elementwise functions are given by their local
derivative, written with the output where that is cheaper (exp' = out, tanh' = 1 - out**2), so
the backward pass reuses forward values. Any SymPy function that defines `fdiff` and is not in
the table goes through one generic rule.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from . import matrices as M
from .errors import UnsupportedFunctionError
from .functions import logsumexp, relu, sigmoid, softplus
from .graph import CONST, SYMBOL, Graph


class Ref:
    """A graph node that supports arithmetic, so rules read like the math they implement."""

    __slots__ = ("graph", "id")

    def __init__(self, graph: Graph, id: int) -> None:
        self.graph = graph
        self.id = id

    def _ref(self, other) -> int:
        return other.id if isinstance(other, Ref) else self.graph.const(other)

    def _wrap(self, i: int) -> Ref:
        return Ref(self.graph, i)

    def __add__(self, other):
        return self._wrap(self.graph.add(self.id, self._ref(other)))

    __radd__ = __add__

    def __mul__(self, other):
        return self._wrap(self.graph.mul(self.id, self._ref(other)))

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        return self + (-1) * self._wrap(self._ref(other))

    def __rsub__(self, other):
        return self._wrap(self._ref(other)) - self

    def __pow__(self, other):
        return self._wrap(self.graph.pow(self.id, self._ref(other)))

    def __truediv__(self, other):
        return self * self._wrap(self._ref(other)) ** -1

    def __rtruediv__(self, other):
        return self._wrap(self._ref(other)) * self ** -1

    @property
    def number(self):
        """The value when this node is a numeric constant, else None."""
        return self.graph.number(self.id)

    @property
    def is_constant(self) -> bool:
        return self.graph[self.id].op == CONST


def call(op, *args: Ref) -> Ref:
    graph = args[0].graph
    return Ref(graph, graph.apply(op, *[a.id for a in args]))


def where(cond: Ref, then: Ref, otherwise=0) -> Ref:
    """`then` where cond holds, else `otherwise`: Piecewise((then, cond), (otherwise, True))."""
    graph = cond.graph
    other = otherwise.id if isinstance(otherwise, Ref) else graph.const(otherwise)
    return Ref(graph, graph.piecewise((then.id, cond.id), (other, graph.const(sp.true))))


def exp(x):
    return call(sp.exp, x)


def log(x):
    return call(sp.log, x)


def sqrt(x):
    return x ** sp.S.Half


# ---- elementwise unary functions: d out / d x ----------------------------------------------
DERIVATIVES = {
    sp.exp: lambda x, out: out,
    sp.log: lambda x, out: 1 / x,
    sp.sin: lambda x, out: call(sp.cos, x),
    sp.cos: lambda x, out: -call(sp.sin, x),
    sp.tan: lambda x, out: 1 + out ** 2,
    sp.asin: lambda x, out: 1 / sqrt(1 - x ** 2),
    sp.acos: lambda x, out: -1 / sqrt(1 - x ** 2),
    sp.atan: lambda x, out: 1 / (1 + x ** 2),
    sp.sinh: lambda x, out: call(sp.cosh, x),
    sp.cosh: lambda x, out: call(sp.sinh, x),
    sp.tanh: lambda x, out: 1 - out ** 2,
    sp.asinh: lambda x, out: 1 / sqrt(x ** 2 + 1),
    sp.acosh: lambda x, out: 1 / sqrt(x ** 2 - 1),
    sp.atanh: lambda x, out: 1 / (1 - x ** 2),
    sp.erf: lambda x, out: 2 / sp.sqrt(sp.pi) * exp(-x ** 2),
    sp.erfc: lambda x, out: -2 / sp.sqrt(sp.pi) * exp(-x ** 2),
    sp.Abs: lambda x, out: call(sp.sign, x),            # Abs'(0) = sign(0) = 0
    sigmoid: lambda x, out: out * (1 - out),
    softplus: lambda x, out: call(sigmoid, x),
    relu: lambda x, out: call(sp.Heaviside, x, Ref(x.graph, x.graph.const(0))),  # relu'(0) = 0
    log1p: lambda x, out: 1 / (1 + x),
    expm1: lambda x, out: out + 1,
}

# Piecewise constant: the derivative is 0 everywhere it exists, and 0 at the jumps.
ZERO_DERIVATIVE = (sp.sign, sp.Heaviside, sp.floor, sp.ceiling,
                   sp.StrictGreaterThan, sp.GreaterThan, sp.StrictLessThan, sp.LessThan,
                   sp.Equality, sp.Unequality, sp.And, sp.Or, sp.Not, sp.ITE, *M.CONSTANT)


# ---- n-ary and multi-argument rules: (out_bar, out, args, needed) -> contributions ---------
def add_vjp(out_bar, out, args, needed):
    return [out_bar if n else None for n in needed]


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
    else:
        d_base = n * base ** (n - 1)
    return [out_bar * d_base if needed[0] else None,
            out_bar * out * log(base) if needed[1] else None]


def atan2_vjp(out_bar, out, args, needed):
    y, x = args
    scale = out_bar / (x ** 2 + y ** 2)
    return [scale * x if needed[0] else None, -scale * y if needed[1] else None]


def logsumexp_vjp(out_bar, out, args, needed):
    return [out_bar * exp(a - out) if n else None for a, n in zip(args, needed)]


def piecewise_vjp(out_bar, out, args, needed):
    """The branch taken gets out_bar, with the conditions evaluated as in the forward pass."""
    exprs, conds = args[0::2], args[1::2]
    contributions = []
    for i, (e, n) in enumerate(zip(exprs, needed[0::2])):
        if not n:
            contributions += [None, None]
            continue
        graph = out_bar.graph
        zero = graph.const(0)
        pairs = [(zero, c.id) for c in conds[:i]] + [(out_bar.id, conds[i].id), (zero, graph.const(sp.true))]
        contributions += [Ref(graph, graph.piecewise(*pairs)), None]
    return contributions


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
                ties = [where(call(sp.Eq, v, out), Ref(out.graph, out.graph.const(1))) for v in variables]
                count = ties[0]
                for t in ties[1:]:
                    count = count + t
                mine = call(sp.Eq, a, out)
                if beats_constants is not None:
                    mine = call(sp.And, mine, beats_constants)
                signal = where(mine, out_bar / count)
            result[a.id] = signal
        return [result.get(a.id) if n else None for a, n in zip(args, needed)]
    return vjp


# ---- matrix-level rules (slide 17: W_bar = z_bar x^T, h_bar = W^T z_bar) ----------------------
def T(x):
    return call(M.transpose, x)


def matmul_vjp(out_bar, out, args, needed):
    a, b = args
    return [call(M.matmul, out_bar, T(b)) if needed[0] else None,
            call(M.matmul, T(a), out_bar) if needed[1] else None]


def transpose_vjp(out_bar, out, args, needed):
    return [T(out_bar)]


def trace_vjp(out_bar, out, args, needed):
    return [out_bar * Ref(out.graph, M.eye_like(out.graph, args[0].id))]


def inverse_vjp(out_bar, out, args, needed):
    """Y = X^-1: X_bar = -Y^T Y_bar Y^T."""
    return [-call(M.matmul, call(M.matmul, T(out), out_bar), T(out))]


def det_vjp(out_bar, out, args, needed):
    """d = det(X): X_bar = d_bar d X^-T (Jacobi's formula)."""
    return [out_bar * out * T(call(M.inverse, args[0]))]


def logdet_vjp(out_bar, out, args, needed):
    return [out_bar * T(call(M.inverse, args[0]))]


def sum_entries_vjp(out_bar, out, args, needed):
    """sum(X): every entry of X gets the scalar signal."""
    return [call(M.fill, out_bar, args[0])]


def entry_vjp(out_bar, out, args, needed):
    """X[i, j]: that entry of X gets the signal (a 1x1 X gets it everywhere)."""
    x, i, j = args
    if out.graph.shapes[x.id] == (1, 1):
        return [call(M.fill, out_bar, x), None, None]
    return [call(M.place, out_bar, x, i, j), None, None]


def fill_vjp(out_bar, out, args, needed):
    return [call(M.sum_entries, out_bar) if needed[0] else None, None]


class _Compare:
    def __init__(self, strict, extremum):
        self.strict, self.extremum = strict, extremum


VJPS = {
    sp.Add: add_vjp,
    sp.Mul: mul_vjp,
    sp.Pow: pow_vjp,
    sp.atan2: atan2_vjp,
    logsumexp: logsumexp_vjp,
    sp.Piecewise: piecewise_vjp,
    sp.Max: extremum_vjp(_Compare(sp.StrictGreaterThan, sp.Max)),
    sp.Min: extremum_vjp(_Compare(sp.StrictLessThan, sp.Min)),
    M.matmul: matmul_vjp,
    M.transpose: transpose_vjp,
    M.trace: trace_vjp,
    M.inverse: inverse_vjp,
    M.det: det_vjp,
    M.logdet: logdet_vjp,
    M.sum_entries: sum_entries_vjp,
    M.entry: entry_vjp,
    M.fill: fill_vjp,
}


# ---- the generic rule: any SymPy function that defines fdiff -------------------------------
@lru_cache(maxsize=None)
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
        if d.has(sp.Derivative, sp.Subs):
            raise UnsupportedFunctionError(
                f"function {op.__name__!r} has no usable derivative: define fdiff returning a "
                f"closed form")
        partials.append(d)
    return params, applied, partials


def generic_vjp(op):
    def vjp(out_bar, out, args, needed):
        params, applied, partials = _fdiff_template(op, len(args))
        graph = out.graph
        env = {p: a.id for p, a in zip(params, args)}
        result = []
        for d, n in zip(partials, needed):
            if not n:
                result.append(None)
                continue
            local = Ref(graph, graph.from_sympy(d, env))
            result.append(out_bar * local)
        return result
    return vjp


def unary_vjp(derivative):
    def vjp(out_bar, out, args, needed):
        return [out_bar * derivative(args[0], out) if needed[0] else None]
    return vjp


def zero_vjp(out_bar, out, args, needed):
    return [None] * len(args)


def has_rule(op) -> bool:
    return op in DERIVATIVES or op in VJPS or op in ZERO_DERIVATIVE


def rule_for(op):
    """The vector-Jacobian product of op: from the table, or the generic fdiff rule."""
    if op in VJPS:
        return VJPS[op]
    if op in DERIVATIVES:
        return unary_vjp(DERIVATIVES[op])
    if op in ZERO_DERIVATIVE:
        return zero_vjp
    if op in (SYMBOL, CONST):
        raise AssertionError("leaves have no rule")
    if isinstance(op, type) and issubclass(op, sp.Function):
        return generic_vjp(op)
    raise UnsupportedFunctionError(f"{getattr(op, '__name__', op)} has no derivative rule")


def supported_functions() -> list[str]:
    """Names of the functions with a rule in the table (operators and comparisons left out), sorted."""
    ops = list(DERIVATIVES) + list(VJPS) + list(ZERO_DERIVATIVE)
    operators = (sp.Add, sp.Mul, sp.Pow, sp.core.relational.Relational, sp.logic.boolalg.BooleanFunction,
                 M.MatrixOp)
    return sorted({op.__name__ for op in ops if not issubclass(op, operators)})
