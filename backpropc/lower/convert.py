"""SymPy expressions to graph nodes, each distinct SymPy object converted once.

The walk is iterative (deep chains would overflow the interpreter's stack) and memoised by
object, so a shared subtree costs one visit; nothing here walks a printed tree. Every function
met is checked against the op registry, and refused with a message that says what to add.
"""

from __future__ import annotations

import math

import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.logic.boolalg import Boolean, BooleanAtom

from ..errors import ModelError, NonRealConstantError, UnsupportedFunctionError
from ..graph import CONST, Graph
from ..factoring import factored_sum
from ..ops import REGISTRY, constant_value, has_record, record_for, supported_functions
from . import indexed, matrices, stable


class Converter:
    """Lowers SymPy expressions into one graph, with the state of the steps being lowered."""

    def __init__(self, rewrite: bool = True) -> None:
        self.graph = Graph(REGISTRY)
        self.rewrite = rewrite
        # While step number `pending_from` is lowered, steps from it on are not yet defined:
        # using one is an ordering error.
        self.pending: dict[sp.Symbol, int] = {}
        self.pending_from = 0
        self.pending_step: sp.Symbol | None = None

    def from_sympy(self, expr: sp.Basic, env: dict[sp.Basic, int]) -> int:
        """The node of a SymPy expression; symbols in `env` stand for existing nodes."""
        memo: dict[int, int] = {}
        keep_alive = []
        stack: list[tuple[sp.Basic, tuple | None]] = [(expr, None)]
        while stack:
            e, children = stack.pop()
            if id(e) in memo:
                continue
            if children is None:  # first visit: convert now, or after the children not yet done
                children = _children(e)
                pending = [c for c in children if id(c) not in memo]
                if pending:
                    stack.append((e, children))
                    stack.extend((c, None) for c in reversed(pending))
                    continue
            keep_alive.append(e)
            memo[id(e)] = self._convert(e, [memo[id(c)] for c in children], env)
        return memo[id(expr)]

    def constant(self, value) -> int:
        if value in (sp.nan, sp.zoo, sp.oo, -sp.oo) or (value.is_number and value.is_real is False):
            raise NonRealConstantError(
                f"constant {value} is not a finite real number; replace it with a real value")
        if isinstance(value, sp.Number) and not _fits_float(value):
            raise NonRealConstantError(
                f"constant {sp.Float(value, 3)} does not fit in a float64 (it would be inf); "
                f"rescale the model so its constants stay below 1.8e308")
        return self.graph.const(value)

    def _convert(self, e: sp.Basic, args: list[int], env: dict[sp.Basic, int]) -> int:
        graph = self.graph
        kind = _kind(e)
        if kind == "symbol":
            found = env.get(e)
            if found is not None:
                return found
            if self.pending.get(e, -1) >= self.pending_from:
                if e == self.pending_step:
                    raise ModelError(f"step {e} uses itself; a step may only use earlier steps")
                raise ModelError(f"step {self.pending_step} uses {e} before {e} is defined; put the "
                                 f"steps in order (a cycle among steps is not allowed)")
            size = indexed.dimension(self, e)
            if size is not None:  # the shape symbol of an IndexedBase: its size, read at run time
                return size
            indexed.register_shape(graph, e)
            return graph.symbol(e)
        if kind == "constant":
            return self.constant(e)
        if kind == "piecewise":
            pairs = list(zip(args[::2], args[1::2]))
            if all(graph[c].value is sp.false for _, c in pairs):
                raise ModelError("Piecewise has no branch that can be taken; add a (value, True) branch")
            return graph.piecewise(*stable.guard_branches(graph, pairs))
        if kind == "matrix":
            return matrices.convert(self, e, args, env)
        if kind == "indexed":
            return indexed.convert(self, e, env)
        check_supported(e)
        if self.rewrite:
            found = stable.stable_form(graph, e.func, args)
            if found is not None:
                node, note = found
                if note not in graph.rewrites:
                    graph.rewrites.append(note)
                return node
        node = factored_sum(graph, args) if e.func is sp.Add else graph.apply(e.func, *args)
        if all(graph[a].op == CONST for a in args) and constant_value(graph, node) is None \
                and isinstance(e, sp.Expr) and e.is_number and e.is_real is not False:
            raise NonRealConstantError(  # exp(1000): a constant that overflows a float64
                f"constant {e} does not fit in a float64 (it is about {sp.Float(e.evalf(5), 3)}); "
                f"rescale the model so its constants stay below 1.8e308")
        return node


def _fits_float(value: sp.Number) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


# What a SymPy class is to the converter, found once per class: every test below is by type.
_KINDS: dict[type, str] = {}
_REFUSED = (sp.Product, sp.Integral, sp.Derivative, sp.Subs, sp.Lambda)


def _kind(e: sp.Basic) -> str:
    found = _KINDS.get(type(e))
    if found is None:
        found = _KINDS[type(e)] = (
            "symbol" if isinstance(e, (sp.Symbol, sp.MatrixSymbol))
            else "constant" if isinstance(e, (sp.Number, sp.NumberSymbol, BooleanAtom)) or e is sp.S.ImaginaryUnit
            else "piecewise" if isinstance(e, sp.Piecewise)
            else "matrix" if matrices.is_matrix_expr(e)
            else "indexed" if indexed.is_indexed_expr(e)
            else "refused" if isinstance(e, _REFUSED)
            else "function")
    return found


def _children(e: sp.Basic) -> tuple:
    kind = _kind(e)
    if kind == "function":
        return e.args
    if kind == "matrix":
        return matrices.children(e)
    if kind == "piecewise":
        return tuple(part for pair in e.args for part in pair)  # expr, cond, expr, cond, ...
    # leaves; a Sum lowers its summand itself, with its index bound; what is refused (by
    # check_supported, by name) is refused before its limits are looked at
    return ()


# Constructs that are not functions, with what to write instead.
_NOT_FUNCTIONS = {
    "Integral": "compute the integral in closed form first (sympy.integrate), or approximate it by a sum",
    "Derivative": "write the derivative out (call .doit() on it), or let backpropc differentiate",
    "Subs": "substitute first (call .doit() on it)",
    "Product": "write it out (.doit()) when its bounds are numbers, or a product of positive factors "
               "as exp(Sum(log(...)))",
    "Lambda": "apply the Lambda to its arguments",
}


def check_supported(e: sp.Basic) -> None:
    """Refuse what cannot be differentiated or printed, naming what to add."""
    name = type(e).__name__
    if name in _NOT_FUNCTIONS:
        raise UnsupportedFunctionError(f"{name} is not supported in a model; {_NOT_FUNCTIONS[name]}")
    if isinstance(e, AppliedUndef):
        raise UnsupportedFunctionError(
            f"function {e.func.__name__!r} is undefined; define it as a sympy.Function subclass "
            f"with fdiff (its derivative) and _numpycode (its NumPy form), or write it out")
    if isinstance(e, (sp.Expr, Boolean)) and has_record(e.func):
        arity = record_for(e.func).arity
        if arity is not None and len(e.args) != arity:  # LambertW(x, k): another branch
            raise UnsupportedFunctionError(
                f"{name} with {len(e.args)} arguments is not supported; backpropc's {name} takes "
                f"{arity} (write {name}({', '.join('xyz'[:arity])}))")
        return
    if isinstance(e, sp.Function) and e.func.__module__.startswith("sympy."):
        raise UnsupportedFunctionError(
            f"function {e.func.__name__!r} is not supported; supported: "
            f"{', '.join(supported_functions())}; or wrap it in your own sympy.Function subclass "
            f"with fdiff and _numpycode")
    if isinstance(e, sp.Function):
        missing = [m for m, ok in (("fdiff", _defines(e.func, "fdiff", sp.Function)),
                                   ("_numpycode", hasattr(e.func, "_numpycode"))) if not ok]
        if not missing:
            return
        raise UnsupportedFunctionError(
            f"function {e.func.__name__!r} is not supported: add {' and '.join(missing)} to it "
            f"(see the supported list with backpropc.supported_functions())")
    if isinstance(e, (sp.MatrixBase, sp.Tuple)):
        raise ModelError(f"{name} is not supported; write matrices as sympy.MatrixSymbol expressions")
    raise UnsupportedFunctionError(
        f"{name} is not supported; write it with the supported functions "
        f"(backpropc.supported_functions())")


def _defines(cls: type, method: str, base: type) -> bool:
    return getattr(cls, method, None) is not getattr(base, method, None)
