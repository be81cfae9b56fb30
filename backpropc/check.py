"""The gradient checker: a compiled module against central finite differences and sympy.diff.

`check(model)` compiles the model (or takes a `Compiled`), draws random points (seeded), and
reports for each parameter the largest relative error of backprop's gradient against both
references. sympy.diff is the exact oracle, applied to the fully substituted loss one parameter at
a time: the naive expansion, so it is skipped (and said so) when the printed loss would be too
large to differentiate that way.
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.hadamard import HadamardPower, HadamardProduct
from sympy.matrices.expressions.matexpr import MatrixElement

from . import runtime
from .check_indexed import indexed_oracle, written_out_indexed
from .compiler import Compiled, compile
from .display import html_table
from .emit import SympyPrinter
from .errors import ModelError, UnusedWrtWarning
from .functions import EntrySum
from .graph import CONST, SYMBOL
from .model import Model, lower
from .naming import printable
from .opcount import node_cost
from .runtime.core import _finite_difference_errors as finite_differences

# A named matrix dimension takes this size in random points and written-out references.
NAMED_SIZE = 3
# Parameters and data are drawn from these ranges in turn until loss and gradient are finite.
RANGES = ((0.1, 0.9), (1.1, 2.0), (-0.9, -0.1), (-2.0, 2.0))
# A point where finite differences cannot decide is replaced, up to this many times as many points.
REDRAWS = 4
# Finite differences cannot decide when backprop's disagreement with them is within this factor
# of their own error estimate.
NOISE = 10.0


@dataclass
class ParameterCheck:
    name: str
    value: float                       # backprop's gradient at the first point
    finite_difference_error: float | None  # None when finite differences were unreliable everywhere
    sympy_error: float | None          # None when sympy.diff was skipped
    unreliable: int = 0                # points where finite differences could not decide

    @property
    def verified(self) -> bool:
        return self.finite_difference_error is not None or self.sympy_error is not None


@dataclass
class CheckReport:
    model: str
    rows: list[ParameterCheck] = field(default_factory=list)
    tolerance: float = 1e-6
    points: int = 0
    batch: int = 0                     # 0 for a model without data
    seed: int = 0
    note: str = ""                     # why sympy.diff was skipped, or why no point was found
    unreliable_points: int = 0         # points where finite differences could not decide for some parameter

    @property
    def worst(self) -> float:
        errors = [r.finite_difference_error for r in self.rows if r.finite_difference_error is not None]
        errors += [r.sympy_error for r in self.rows if r.sympy_error is not None]
        return max(errors, default=float("inf"))

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.verified for r in self.rows) and self.worst < self.tolerance

    def format(self) -> str:
        lines = [self._title()]
        if self.rows:
            width = max(9, *(len(r.name) for r in self.rows))
            lines.append(f"{'parameter':<{width}}  {'gradient':>14}  {'vs finite diff.':>15}  "
                         f"{'vs sympy.diff':>13}")
            for r in self.rows:
                sym = "skipped" if r.sympy_error is None else f"{r.sympy_error:.2e}"
                fd = "unreliable" if r.finite_difference_error is None else f"{r.finite_difference_error:.2e}"
                lines.append(f"{r.name:<{width}}  {r.value:>14.6g}  {fd:>15}  {sym:>13}")
        if self.unreliable_points:
            names = ", ".join(r.name for r in self.rows if r.unreliable)
            decides = ("sympy.diff decides there" if all(r.sympy_error is not None for r in self.rows if r.unreliable)
                       else "they are not counted")
            lines.append(f"finite differences unreliable at {self.unreliable_points} of the points for {names} "
                         f"(steps h and h/2 disagree, or rounding swamps the difference, as near a "
                         f"singularity); {decides}")
        if self.note:
            lines.append(self.note)
        unverified = [r.name for r in self.rows if not r.verified]
        if unverified:
            lines.append(f"not verified: {', '.join(unverified)} (no reliable finite difference and no "
                         f"sympy.diff)")
        lines.append(self._verdict())
        return "\n".join(printable(line) for line in lines)

    def _title(self) -> str:
        batches = f", batches of {self.batch:,}" if self.batch else ""  # a model without data has none
        return f"check {self.model}: {plural(self.points, 'random point')} (seed {self.seed}){batches}"

    def _verdict(self) -> str:
        return f"largest relative error {self.worst:.2e} (tolerance {self.tolerance:g}): " + \
            ("ok" if self.ok else "FAILED")

    def _repr_html_(self) -> str:
        """The report as a table, for Jupyter."""
        rows = [(r.name, f"{r.value:.6g}",
                 "unreliable" if r.finite_difference_error is None else f"{r.finite_difference_error:.2e}",
                 "skipped" if r.sympy_error is None else f"{r.sympy_error:.2e}") for r in self.rows]
        parts = [self._title(),
                 html_table(("parameter", "gradient", "vs finite diff.", "vs sympy.diff"), rows),
                 self.note, self._verdict()]
        return "".join(f"<p>{html.escape(p)}</p>" if not p.startswith("<table") else p for p in parts if p)


def plural(n: int, noun: str) -> str:
    """'1 random point', '3 random points', '1,000 random points'."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def sampling_domains(domains) -> dict[str, tuple[float, float]]:
    """DOMAINS of a model file (or check's `domains`) validated: argument name -> (low, high)
    with finite low < high. None means no ranges."""
    if domains is None:
        return {}
    if not isinstance(domains, dict):
        raise ModelError(f"DOMAINS must be a dict {{argument name: (low, high)}}, not "
                         f"{type(domains).__name__}")
    ranges = {}
    for name, value in domains.items():
        key = name.name if isinstance(name, sp.Symbol) else name
        if not isinstance(key, str):
            raise ModelError(f"DOMAINS key {name!r} is not an argument name; use the name as a string")
        try:  # a string is not a pair, even "12"
            low, high = (float(v) for v in (None if isinstance(value, (str, bytes)) else value))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"DOMAINS[{key!r}] = {value!r} is not a (low, high) pair of numbers; "
                             f"write for example (0.5, 1.5)") from exc
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ModelError(f"DOMAINS[{key!r}] = {value!r}: need finite numbers with low < high; "
                             f"write for example (0.5, 1.5)")
        ranges[key] = (low, high)
    return ranges


def check(model, *, reduction: str = "sum", seed: int = 0, points: int = 3, batch: int = 4,
          tolerance: float = 1e-6, domains: dict | None = None,
          sympy_limit: int = 20_000) -> CheckReport:
    """Check backprop's gradient at `points` random points of `batch` examples each.

    `domains` maps argument names to (low, high) sampling ranges; `sympy_limit` is the largest
    printed loss (in operations) that sympy.diff is asked to differentiate. sympy.diff checks
    every point drawn; a point where finite differences cannot decide (the estimates with steps
    h and h/2 disagree, as near a singularity) is replaced by another, up to REDRAWS times as
    many points in all.
    """
    domains = sampling_domains(domains)
    compiled = model if isinstance(model, Compiled) else compile(model, reduction=reduction)
    module = compiled.load()
    has_data = len(module.ARGS) > len(module.WRT)
    indexed = getattr(module, "INDEXED", ())
    report = CheckReport(compiled.name, tolerance=tolerance, points=points,
                         batch=batch if has_data else 0, seed=seed)
    if indexed:
        oracle, report.note = indexed_oracle(compiled, sympy_limit, NAMED_SIZE, _sympy_oracle)
    elif getattr(module, "SHAPES", None):  # a scalar model has SHAPES = {}
        oracle, report.note = _matrix_oracle(compiled, sympy_limit)
    else:
        oracle, report.note = _sympy_oracle(compiled, sympy_limit)
    mean = compiled.reduction == "mean"
    rng = np.random.default_rng(seed)
    n = len(module.WRT)
    fd_errors, sympy_errors = np.full(n, np.nan), np.zeros(n)
    unreliable = np.zeros(n, dtype=int)
    first, counted = None, 0
    for _ in range(REDRAWS * points):
        if counted == points:
            break
        point, grads = finite_point(module, rng, batch, domains)
        if point is None:
            if first is None:
                report.note = "no point found where the loss and its gradient are finite"
                return report
            break
        first = grads if first is None else first
        errors = _finite_difference_errors(module, point, grads, rng, tolerance)
        decided = ~np.isnan(errors)
        fd_errors[decided] = np.fmax(fd_errors[decided], errors[decided])
        unreliable += ~decided
        counted += bool(decided.all())
        report.unreliable_points += not decided.all()
        if oracle is not None:
            exact = oracle(point, batch, mean)
            sympy_errors = np.maximum(sympy_errors, [np.max(_relative(g, e), initial=0.0)
                                                     for g, e in zip(grads, exact)])
    report.points = counted + report.unreliable_points
    for i, name in enumerate(module.WRT):
        g = first[i]  # a matrix's gradient is reported by its norm
        value = float(g) if np.ndim(g) == 0 else float(np.linalg.norm(g))
        report.rows.append(ParameterCheck(name, value, None if np.isnan(fd_errors[i]) else float(fd_errors[i]),
                                          None if oracle is None else float(sympy_errors[i]),
                                          int(unreliable[i])))
    return report


def _relative(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    with np.errstate(invalid="ignore"):
        err = np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1.0)
    return np.where(np.isfinite(err), err, np.inf)


def argument_shape(module, name: str, batch: int | None) -> tuple:
    """The shape a random value of argument `name` gets: a parameter its own shape (scalar or
    matrix), data `batch` of them; a named matrix dimension is 3."""
    shape = tuple(NAMED_SIZE if isinstance(n, str) else n for n in getattr(module, "SHAPES", {}).get(name, ()))
    return shape if name in module.WRT or not batch else (batch,) + shape


def finite_point(module, rng, batch: int, domains: dict):
    """(point, gradients) at random parameters and `batch` examples of data where the loss and
    its gradient are finite, or (None, None). `domains` overrides RANGES per argument."""
    for low, high in RANGES * 5:
        point = {}
        for a in module.ARGS:
            lo, hi = domains.get(a, (low, high))
            shape = argument_shape(module, a, batch)
            point[a] = rng.uniform(lo, hi, shape) if shape else float(rng.uniform(lo, hi))
        with np.errstate(all="ignore"):
            value, grads = module.value_and_grad(**point)
        if np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads):
            return point, grads
    return None, None


def _finite_difference_errors(module, point, grads, rng, tolerance):
    """Per parameter, the relative error of the gradient's derivative along a random direction
    (along 1 for a scalar) against central finite differences (the generated modules' own
    checker); NaN where finite differences cannot decide: the error is above the tolerance but
    within NOISE times their own error (steps h and h/2 disagree, or the loss's rounding)."""
    rows = finite_differences(module.value_and_grad, point, module.WRT, rng)
    return np.array([error if error < tolerance or error > NOISE * own else float("nan")
                     for _, _, _, error, own in rows])


def term_by_term(compiled: Compiled):
    """The compiled program with every family of terms written out, term by term: what the
    oracle differentiates (a re-rolled family's lane ops mean nothing to sympy.diff)."""
    if not compiled.program.graph.families:
        return compiled.program
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedWrtWarning)  # compiling said so already
        return lower(compiled.model, reroll=False)


def printed_size(program) -> int:
    """Operations of the fully substituted loss as a printed tree (memoised over the graph)."""
    size = [0] * program.n_forward
    for i in range(program.n_forward):
        size[i] = node_cost(program.graph, i) + sum(size[a] for a in program.graph[i].args)
    return size[program.loss]


def _sympy_oracle(compiled: Compiled, limit: int):
    """A function point -> exact gradient by sympy.diff, or (None, why not)."""
    program = term_by_term(compiled)
    size = printed_size(program)
    if size > limit:
        return None, (f"sympy.diff skipped: the substituted loss has {size:,} operations when "
                      f"printed (limit {limit:,})")
    loss = to_sympy(program)
    wrt_symbols = list(program.wrt)
    # Away from jumps, the derivatives SymPy leaves unevaluated (floor) or as deltas are zero.
    grads = [sp.diff(loss, w).replace(lambda e: isinstance(e, sp.Derivative), lambda e: sp.S.Zero)
             .replace(sp.DiracDelta, lambda *a: sp.S.Zero) for w in wrt_symbols]
    f = numpy_function(program.args, grads)

    def exact(point, batch, mean):
        values = [point[name] for name in compiled.args]
        shape = np.broadcast_shapes(*(np.shape(v) for v in values))
        with np.errstate(all="ignore"):
            per_example = f(*values)
        total = np.array([np.sum(np.broadcast_to(g, shape)) for g in per_example])
        return total / max(int(np.prod(shape)), 1) if mean else total
    return exact, ""


@dataclass
class ScalarModel:
    """A matrix model written out with one scalar symbol per entry (the calculus-class form)."""

    model: Model
    layout: list[tuple[sp.Basic, tuple | None, list[sp.Symbol]]]  # (argument, shape, its entries)

    def flatten(self, point: dict) -> dict:
        """Argument values by entry name: W_0_1 = W[..., 0, 1]."""
        flat = {}
        for arg, shape, entries in self.layout:
            value = point[str(arg)]
            if shape is None:
                flat[entries[0].name] = value
                continue
            value = np.asarray(value)
            for k, e in enumerate(entries):
                flat[e.name] = value[(..., *np.unravel_index(k, shape))]
        return flat

    def gather(self, arg: sp.Basic, grads_by_entry: dict):
        """The gradient of a matrix argument from the gradients of its entries."""
        for a, shape, entries in self.layout:
            if a == arg:
                if shape is None:
                    return grads_by_entry[entries[0].name]
                return np.array([grads_by_entry[e.name] for e in entries]).reshape(shape)
        raise KeyError(arg)


def written_out(compiled: Compiled) -> tuple[ScalarModel, Compiled]:
    """A compiled matrix or indexed model written out entry by entry, and that model compiled."""
    program = compiled.program
    model = compiled.model
    if any(isinstance(a, sp.IndexedBase) for a in program.args):  # every Sum carried out
        scalar = ScalarModel(*written_out_indexed(model, program, NAMED_SIZE))
    else:
        scalar = scalar_model(Model(model.name, model.steps, model.loss, program.wrt, program.inputs))
    with warnings.catch_warnings():  # an entry the loss does not use is no news here
        warnings.simplefilter("ignore", UnusedWrtWarning)
        return scalar, compile(scalar.model, reduction=compiled.reduction)


def scalar_model(model: Model, size: int = NAMED_SIZE) -> ScalarModel:
    """`model` with every matrix argument and step written out entry by entry, a named dimension
    being `size`: the reference the matrix path is checked against. Arguments keep their order."""
    env, layout = {}, []
    args = list(model.wrt) + list(model.inputs or [])
    for a in args:
        for d in getattr(a, "shape", ()):
            if isinstance(d, sp.Symbol):
                env[d] = sp.Integer(size)
    for a in args:
        if isinstance(a, sp.MatrixSymbol):
            rows, cols = sp.Tuple(*a.shape).xreplace(env)
            entries = [sp.Symbol(f"{a.name}_{i}_{j}") for i in range(rows) for j in range(cols)]
            env[a] = sp.ImmutableMatrix(rows, cols, entries)
            layout.append((a, (int(rows), int(cols)), entries))
        else:
            layout.append((a, None, [a]))

    def explicit(e):
        return _written_out(sp.sympify(e).xreplace(env), {})

    steps = []
    for step in model.steps:
        lhs, rhs = (step.lhs, step.rhs) if isinstance(step, sp.Equality) else step
        value = explicit(rhs)
        if isinstance(lhs, sp.MatrixSymbol):
            env[lhs] = value
        else:  # a scalar step (a 1x1 matrix counts as its entry) stays a named step
            steps.append((lhs, value[0, 0] if isinstance(value, sp.MatrixBase) else value))
            env[lhs] = lhs
    loss = explicit(model.loss if model.loss is not None else steps[-1][0])
    loss = loss[0, 0] if isinstance(loss, sp.MatrixBase) else loss
    flat = [e for a, _, entries in layout for e in entries]
    n_wrt = sum(len(entries) for _, _, entries in layout[:len(model.wrt)])
    return ScalarModel(Model(f"{model.name}_scalar", steps, loss, flat[:n_wrt], flat[n_wrt:]), layout)


def _matrix_oracle(compiled: Compiled, limit: int):
    """sympy.diff of the model written out entry by entry (a named dimension is NAMED_SIZE), or
    (None, why not)."""
    scalar, flat_compiled = written_out(compiled)
    oracle, note = _sympy_oracle(flat_compiled, limit)
    if oracle is None:
        return None, note

    def exact(point, batch, mean):
        flat = scalar.flatten(by_symbol_name(compiled, point))
        grads = oracle(by_module_name(flat_compiled, flat), batch, mean)
        by_entry = dict(zip((w.name for w in flat_compiled.program.wrt), grads))
        return [scalar.gather(w, by_entry) for w in compiled.program.wrt]
    return exact, ""


def by_symbol_name(compiled: Compiled, point: dict) -> dict:
    """A point keyed by the module's argument names, keyed by the symbols' own names instead
    (they differ for names that are not identifiers: `lambda` is the argument `lambda_`)."""
    return {str(s): point[name] for s, name in zip(compiled.program.args, compiled.args)}


def by_module_name(compiled: Compiled, values: dict) -> dict:
    """The inverse of by_symbol_name."""
    return {name: values[str(s)] for s, name in zip(compiled.program.args, compiled.args)}


def _written_out(e, memo: dict):
    """e with every matrix operation carried out on explicit matrices (small models only)."""
    if e in memo:
        return memo[e]
    if isinstance(e, sp.MatrixBase) or not e.args or isinstance(e, sp.MatrixSymbol):
        return e
    if isinstance(e, ElementwiseApplyFunction):
        result = _written_out(e.expr, memo).applyfunc(e.function)
    elif isinstance(e, MatrixElement):
        result = _written_out(e.parent, memo)[e.i, e.j]
    else:
        args = [_written_out(a, memo) for a in e.args]
        if isinstance(e, sp.Inverse):
            result = args[0].adjugate() / args[0].det()  # SymPy's inv() simplifies: slow
        elif isinstance(e, sp.Determinant):
            result = args[0].det()
        elif isinstance(e, sp.Trace):
            result = args[0].trace()
        elif isinstance(e, EntrySum):
            result = sp.Add(*args[0])
        elif isinstance(e, HadamardProduct):
            result = args[0]
            for a in args[1:]:
                result = result.multiply_elementwise(a)
        elif isinstance(e, HadamardPower):
            result = args[0].applyfunc(lambda z: z ** args[1])
        elif isinstance(e, sp.MatrixExpr):
            result = e.func(*args).doit()
            result = result.as_explicit() if isinstance(result, sp.MatrixExpr) else result
        else:
            result = e.func(*args)
    result = sp.ImmutableMatrix(result) if isinstance(result, sp.MatrixBase) else result
    memo[e] = result
    return result


def numpy_function(args, exprs, cse: bool = False):
    """`sympy.lambdify` of `exprs` with backpropc's NumPy printer (stable forms, erf in NumPy)."""
    namespace = runtime.namespace()
    return sp.lambdify(args, exprs, modules=[namespace], printer=SympyPrinter({"human": True}), cse=cse)


def to_sympy(program) -> sp.Expr:
    """The loss as one SymPy expression, rebuilt node by node (SymPy shares the subtrees)."""
    graph = program.graph
    built: list[sp.Basic] = []
    for i in range(program.n_forward):
        node = graph[i]
        if node.op in (SYMBOL, CONST):
            built.append(node.value)
        elif node.op is sp.Piecewise:
            args = [built[a] for a in node.args]
            built.append(sp.Piecewise(*zip(args[::2], args[1::2])))
        else:
            built.append(node.op(*[built[a] for a in node.args]))
    return built[program.loss]
