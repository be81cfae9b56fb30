"""The model a user writes, validated and lowered to the graph IR.

Input: a `Model` (named steps, loss, wrt, inputs). Output: a `Program`: the graph, the node of
every step, the loss node and the argument symbols. Validation happens here, with typed errors
that say how to fix the model; nothing walks a SymPy tree except the front end's converter
(backpropc.lower), once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import sympy as sp

from .errors import ModelError, NonScalarLossError, UnusedWrtWarning
from .graph import SYMBOL, Domain, Graph, closure
from .lower import Converter
from .lower.indexed import free_indices, over_range, register_shape
from .lower.matrices import loss_scalar
from .ops.array import total
from .reroll import reroll as reroll_families

REDUCTIONS = ("sum", "mean")


@dataclass
class Model:
    """A forward pass: `steps` in order, the scalar `loss`, the parameters `wrt`, the data `inputs`.

    `steps` holds (Symbol, expression) pairs or `sympy.Eq(Symbol, expression)`; `inputs` defaults
    to every other free symbol, sorted by name.
    """

    name: str
    steps: list = field(default_factory=list)
    loss: object = None
    wrt: list = field(default_factory=list)
    inputs: list | None = None
    residuals: list | None = None


@dataclass
class Program:
    """A model lowered to the graph IR."""

    name: str
    graph: Graph
    steps: list[tuple[sp.Symbol, int]]     # user step names with their nodes, in order
    loss: int
    wrt: list[sp.Symbol]
    inputs: list[sp.Symbol]
    n_forward: int                         # nodes with smaller ids belong to the forward pass
    # per-example residual nodes, in order; one over a range (graph shape Domain) is a residual per
    # index, and a re-rolled run of alike residuals (shape Lanes) one per lane
    residuals: list[int] = field(default_factory=list)

    @property
    def args(self) -> list[sp.Symbol]:
        return self.wrt + self.inputs


def _as_symbol_list(values, what: str) -> list[sp.Symbol]:
    """Symbols (a str is the name of a plain Symbol: a name, never parsed as an expression)."""
    if values is None:
        return []
    if isinstance(values, (sp.Basic, str)):
        values = [values]
    if isinstance(values, (set, frozenset)):
        raise ModelError(f"{what} must be a list, not a set: a set's order changes from run to run and "
                         f"would reorder the arguments; pass sorted(..., key=str)")
    if not _is_sequence(values):
        raise ModelError(f"{what} must be a list of SymPy symbols, not {type(values).__name__} "
                         f"{_short(values)}; write for example {what}=[w, b]")
    result, seen = [], set()
    for v in values:
        if isinstance(v, str):
            v = sp.Symbol(v)
        if not isinstance(v, (sp.Symbol, sp.MatrixSymbol, sp.IndexedBase)):
            raise ModelError(f"{what} must hold SymPy symbols, got {_short(v)} ({type(v).__name__}); "
                             f"declare it with sympy.symbols, sympy.MatrixSymbol or sympy.IndexedBase")
        if isinstance(v, sp.IndexedBase) and v.shape is None:
            raise ModelError(f"{what} lists {v}, an IndexedBase without a shape; declare it with "
                             f"sympy.IndexedBase({str(v)!r}, shape=(n,)) ("
                             f"{'its gradient has that shape' if what == 'wrt' else 'its range checks need one'})")
        if v in seen:
            raise ModelError(f"{what} lists {v} twice; list each symbol once")
        seen.add(v)
        result.append(v)
    return result


def _is_sequence(values) -> bool:
    """A list, tuple or other ordered collection (a set or dict would make the order random)."""
    return not isinstance(values, (str, bytes, dict)) and hasattr(values, "__iter__")


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _parse_steps(steps) -> list[tuple[sp.Symbol, sp.Basic]]:
    if steps is not None and (not _is_sequence(steps) or isinstance(steps, sp.Basic)):
        raise ModelError(f"steps must be a list of (Symbol, expression) pairs, not {type(steps).__name__} "
                         f"{_short(steps)}")
    parsed = []
    for step in steps or []:
        if isinstance(step, sp.Equality):
            lhs, rhs = step.lhs, step.rhs
        elif isinstance(step, (tuple, list)) and len(step) == 2:
            lhs, rhs = step
        else:
            raise ModelError(f"step {_short(step)} is not a (Symbol, expression) pair or sympy.Eq(Symbol, "
                             f"expression)")
        if isinstance(lhs, sp.MatrixSymbol):
            if not isinstance(rhs, sp.MatrixExpr) or rhs.shape != lhs.shape:
                shape = getattr(rhs, "shape", None) or "a scalar"
                raise ModelError(f"step {lhs} is a {lhs.shape[0]}x{lhs.shape[1]} matrix but its "
                                 f"expression has shape {shape}; make the shapes agree")
            parsed.append((lhs, rhs))
            continue
        if not isinstance(lhs, sp.Symbol):
            raise ModelError(f"step {lhs} = ... must assign to a single SymPy Symbol or MatrixSymbol")
        parsed.append((lhs, _scalar(rhs, f"step {lhs}")))
    return parsed


def parse_residual(r, what: str) -> tuple[sp.Basic, tuple | None]:
    """(expression, range or None) of a residual: a scalar expression, one for each index of a
    range, (expr, (i, lo, hi)), or an expression whose free sympy.Idx has bounds (Idx('i', n))."""
    if isinstance(r, (tuple, sp.Tuple)) and len(r) == 2 and isinstance(r[1], (tuple, list, sp.Tuple)) \
            and not isinstance(r[0], (tuple, list, sp.Tuple)):
        expr, limit = r
        if len(limit) != 3 or not isinstance(limit[0], (sp.Symbol, sp.Idx)):
            raise ModelError(f"{what}: the range of a residual is (i, lo, hi), as in sympy.Sum; got {_short(limit)}")
        expr = _scalar(expr, what)
        return expr, tuple(sp.sympify(b) for b in limit)
    expr = _scalar(r, what)
    free = free_indices(expr)
    if not free:
        return expr, None
    if len(free) > 1:
        raise ModelError(f"{what} has the free indices {', '.join(map(str, free))}; a residual ranges over "
                         f"one index: sum over the others, or give one residual per value")
    index = free[0]
    if index.lower is None or index.upper is None:
        raise ModelError(f"{what} has the free index {index} without a range; give it one, "
                         f"sympy.Idx({str(index)!r}, n), or write the residual as ({_short(expr)}, ({index}, 0, n - 1))")
    return expr, (index, index.lower, index.upper)


def _residual_node(converter, expr, limit, env) -> int:
    """A residual's node: a scalar, or a value over its range."""
    if limit is not None:
        return over_range(converter, expr, limit, env)
    try:
        return loss_scalar(converter.graph, converter.from_sympy(expr, env))
    except ModelError as exc:
        if "not the index of an enclosing Sum" not in str(exc):
            raise
        raise ModelError(f"{exc}; for a residual for each index, give its range: (residual, (i, 0, n - 1))") from None


def _scalar(expr, what: str) -> sp.Basic:
    """A scalar expression; a 1x1 matrix expression is accepted as is (its only entry)."""
    if isinstance(expr, sp.MatrixExpr):
        if tuple(expr.shape) != (1, 1):
            raise NonScalarLossError(f"{what} has shape {tuple(expr.shape)}, not a scalar; reduce "
                                     f"it to one number (bp.sum sums the entries of a matrix)")
        return expr
    if isinstance(expr, (list, tuple, sp.MatrixBase, sp.Tuple)):
        shape = getattr(expr, "shape", None) or (len(expr),)
        if not (shape == (1, 1) and isinstance(expr, sp.MatrixBase)):
            raise NonScalarLossError(f"{what} has shape {tuple(shape)}, not a scalar; reduce it to "
                                     f"one number (for example sum its entries)")
        expr = expr[0, 0]
    if isinstance(expr, (str, bytes)):  # sympify would evaluate it as Python code
        raise ModelError(f"{what} is the string {_short(expr)}; strings are not parsed (that would run "
                         f"them as Python): build the expression from SymPy symbols")
    try:
        expr = sp.sympify(expr, strict=True)  # numbers and SymPy objects; never parses text
    except (sp.SympifyError, TypeError) as exc:
        raise ModelError(f"{what} is not a SymPy expression: {_short(expr)} ({type(expr).__name__})") from exc
    if not isinstance(expr, sp.Expr):
        raise ModelError(f"{what} is {type(expr).__name__}, not a scalar expression")
    return expr


def lower(model: Model, rewrite: bool = True, reroll: bool = True) -> Program:
    """Validate the model and build its graph (one node per distinct subexpression).

    With `rewrite`, unstable forms users write (1/(1 + exp(-x)), log(1 + exp(x)), ...) become the
    stable functions (backpropc.stable); the graph's `rewrites` lists what was rewritten. With
    `reroll`, families of isomorphic terms (a model written in a loop over scalar symbols) are
    computed over arrays (backpropc.reroll)."""
    if not isinstance(model.name, str) or not model.name.strip():
        raise ModelError("the model needs a non-empty name (Model(name='...'))")
    if "\0" in model.name:  # no file name or Python source can hold it
        raise ModelError(f"the model name {model.name!r} contains a NUL character; remove it")
    steps = _parse_steps(model.steps)
    wrt = _as_symbol_list(model.wrt, "wrt")
    if not wrt:
        raise ModelError("wrt is empty; list the symbols to differentiate with respect to")
    inputs = None if model.inputs is None else _as_symbol_list(model.inputs, "inputs")
    residuals = None
    if model.residuals is not None:
        if isinstance(model.residuals, (sp.Basic, str)) or not hasattr(model.residuals, "__iter__"):
            raise ModelError("residuals must be a list of scalar expressions, [r1, r2, ...]")
        residuals = [parse_residual(r, f"residual {k}") for k, r in enumerate(model.residuals)]
        if not residuals:
            raise ModelError("residuals is empty; give at least one residual expression")
    if model.loss is None and residuals is not None:
        loss_expr = None  # half the sum of the squared residuals (SciPy's and Ceres' convention)
    elif model.loss is None:
        if not steps:
            raise ModelError("the model has no loss; give loss= an expression or a step symbol")
        loss_expr = steps[-1][0]
    else:
        loss_expr = _scalar(model.loss, "the loss")

    step_index = {}
    arguments = set(wrt) | set(inputs or ())
    for i, (lhs, _) in enumerate(steps):
        if lhs in step_index:
            raise ModelError(f"step {lhs} is defined twice; give the second one another name")
        if lhs in arguments:
            raise ModelError(f"step {lhs} redefines an argument; rename the step or the argument")
        step_index[lhs] = i
    input_set = set(inputs or ())
    for w in wrt:
        if w in input_set:
            raise ModelError(f"{w} is both in wrt and in inputs; list it in one of them")

    converter = Converter(rewrite)
    graph = converter.graph
    for s in wrt + (inputs or []):  # symbolic matrix dimensions are read off the arguments
        register_shape(graph, s)
    for s in wrt + (inputs or []):
        source = graph.array_dimensions.get(s) or graph.dimension_sources.get(s)
        if source is not None:
            raise ModelError(f"{s} is a size in the shape of {source[0]}, read off {source[0]} at call time; "
                             f"remove it from {'wrt' if s in wrt else 'inputs'}")
    env: dict[sp.Basic, int] = {}
    named: list[tuple[sp.Symbol, int]] = []
    converter.pending = step_index
    converter.sources = [rhs for _, rhs in steps] + [r for r, _ in residuals or []] + \
        ([loss_expr] if loss_expr is not None else [])
    for i, (lhs, rhs) in enumerate(steps):
        converter.pending_from, converter.pending_step = i, lhs
        node = converter.from_sympy(rhs, env)
        if isinstance(lhs, sp.Symbol):
            node = loss_scalar(graph, node)
        env[lhs] = node
        graph.protected.add(node)
        named.append((lhs, node))
    converter.pending = {}
    residual_nodes = [_residual_node(converter, r, limit, env) for r, limit in residuals or []]
    for node in residual_nodes:
        graph.protected.add(node)
    if loss_expr is None:  # a residual over a range adds the sum of its squares
        squares = [graph.pow(r, graph.const(2)) for r in residual_nodes]
        squares = [graph.apply(total, q) if isinstance(graph.shapes[q], Domain) else q for q in squares]
        loss = graph.mul(graph.const(sp.S.Half), graph.add(*squares))
    else:
        loss = loss_scalar(graph, converter.from_sympy(loss_expr, env))
    named += [(sym, node) for sym, node in graph.array_names if node not in env.values()]

    leaves = [graph[i].value for i in closure(graph, [loss, *residual_nodes]) if graph[i].op == SYMBOL]
    used = set(leaves)
    for w in wrt:
        if w not in used:
            where = "the loss" if not residual_nodes else "the residuals" if loss_expr is None else "the loss or residuals"
            warnings.warn(f"wrt symbol {w} does not occur in {where}; its gradient is zero",
                          UnusedWrtWarning, stacklevel=4)
    listed = set(wrt) | set(inputs or [])
    if inputs is None:
        inputs = sorted((s for s in leaves if s not in listed), key=lambda s: (s.name, str(s.assumptions0)))
    else:
        missing = [s for s in leaves if s not in listed]
        if missing:
            names = ", ".join(sorted(str(s) for s in missing))
            raise ModelError(f"symbol(s) {names} used but not listed; add them to inputs or wrt")
    if reroll:
        changed, residual_nodes = reroll_families(graph, [loss, *residual_nodes], [*wrt, *inputs], residual_nodes)
        loss = changed.get(loss, loss)
        graph.protected.update(changed[node] for _, node in named if node in changed)
        named = [(sym, changed.get(node, node)) for sym, node in named]
    return Program(model.name, graph, named, loss, wrt, inputs, n_forward=len(graph), residuals=residual_nodes)
