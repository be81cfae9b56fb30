"""What an op record is, and the arithmetic that lets derivative rules read like mathematics.

A record holds everything the passes ask of one primitive: its reverse rule (VJP), its forward
rule (JVP), its NumPy form (a format string over the printed arguments, or a runtime helper it
calls), its notation for `explain`, its shape and folding facts, its cost, the safe argument for
untaken branches and the mpmath reference the tests compare against.

Rules receive graph nodes as `Ref`s. A VJP gets (out_bar, out, args, needed) and returns one
contribution per argument (None = none); a JVP gets (out, args, tangents), where a tangent is a
Ref or None (a symbolic zero), and returns the output's tangent or None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

CONST = "const"  # the graph's leaf kinds (backpropc.graph), repeated here so rules need no IR import


def unit_cost(nargs: int, ends_with_true: bool = False) -> int:
    return 1


@dataclass(frozen=True)
class Op:
    """One primitive and everything about it."""

    op: object                               # the SymPy class (or backpropc placeholder) it is
    vjp: Callable | None                      # reverse rule; None for the generic fdiff rule
    jvp: Callable | None                      # forward rule
    code: str | Callable = ""                 # NumPy form: "np.exp({0})", or f(args) -> str
    math: str = ""                            # notation, "{0}^T"; "" for name(args)
    scalar: str | Callable = ""               # form for Python floats (math module); "" for none
    helpers: tuple[str, ...] = ()             # runtime helpers the NumPy form calls
    cost: Callable = unit_cost                # (number of arguments, ...) -> operations to evaluate it
    safe: object = None                       # argument value for untaken branches, if risky
    mpmath: Callable | None = None            # reference for tests: f(*mpf) -> mpf
    domain: tuple[float, float] = (-2.0, 2.0)  # where tests evaluate its rules
    shape: Callable | None = None             # matrix ops: (graph, node) -> (rows, cols) | None
    fold: Callable | None = None              # (graph, args) -> node | None, applied on building
    zero_derivative: bool = False             # piecewise constant: no contributions at all
    arity: int | None = None                  # the number of arguments, when it is fixed
    commutative: bool = False                 # argument order does not matter
    tags: frozenset = field(default_factory=frozenset)
    kind: str = ""                            # the module it is defined in: elementwise, ...

    @property
    def name(self) -> str:
        return getattr(self.op, "__name__", str(self.op))


def nary_cost(nargs: int, ends_with_true: bool = False) -> int:
    return nargs - 1


def balanced(fn: str, texts) -> str:
    """fn(a, fn(b, c)) as a balanced tree of binary calls: any number of arguments stays far
    from the parser's nesting limit."""
    texts = list(texts)
    if len(texts) == 1:
        return texts[0]
    half = len(texts) // 2
    return f"{fn}({balanced(fn, texts[:half])}, {balanced(fn, texts[half:])})"


class Ref:
    """A graph node that supports arithmetic, so rules read like the math they implement."""

    __slots__ = ("graph", "id")

    def __init__(self, graph, id: int) -> None:
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


def call(op, *args) -> Ref:
    graph = next(a.graph for a in args if isinstance(a, Ref))
    return Ref(graph, graph.apply(op, *[a.id if isinstance(a, Ref) else graph.const(a) for a in args]))


def where(cond: Ref, then: Ref, otherwise=0) -> Ref:
    """`then` where cond holds, else `otherwise`: Piecewise((then, cond), (otherwise, True))."""
    graph = cond.graph
    other = otherwise.id if isinstance(otherwise, Ref) else graph.const(otherwise)
    return Ref(graph, graph.piecewise((then.id, cond.id), (other, graph.const(sp.true))))


def total(parts) -> Ref | None:
    """The sum of the contributions that are not symbolic zeros (None when all are)."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    graph = parts[0].graph
    return Ref(graph, graph.add(*[p.id for p in parts]))


def zero_vjp(out_bar, out, args, needed):
    return [None] * len(args)


def zero_jvp(out, args, tangents):
    return None
