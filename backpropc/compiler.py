"""The pipeline, end to end: model -> graph -> derivatives -> function descriptions -> module text.

`compile` is the public entry point; `Compiled` holds the generated source and can write it
(atomically) or import it. A module is a list of `Function` descriptions, each made by one
builder of backpropc.outputs; one template prints any list of them.
"""

from __future__ import annotations

import ast
import builtins
import gc
import math
import re
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp

from . import __version__, runtime
from .display import DisplayMixin
from .errors import ModelError
from .files import write_atomic
from .model import REDUCTIONS, Model, Program, lower
from .naming import clean, docstring_text, python_string
from .outputs import DERIVATIVES, Listing, ModuleBuilder, tuple_source
from .templates import render

# The memory of one chunk's temporaries when a large batch is evaluated in chunks.
CHUNK_BYTES = 8 * 2 ** 20


@dataclass
class Compiled(DisplayMixin):
    """A compiled model: the generated module's `source`, its op counts, and ways to use it."""

    name: str
    source: str
    ops: dict[str, int]
    wrt: tuple[str, ...]
    args: tuple[str, ...]
    program: Program = field(repr=False)
    listing: Listing = field(repr=False, default=None)
    reduction: str = "sum"
    model: Model = field(repr=False, default=None)
    derivatives: tuple[str, ...] = ("grad",)

    def write(self, path) -> Path:
        """Write the module to `path` atomically: an error leaves an existing file untouched."""
        ast.parse(self.source)  # never a file that is not valid Python, whatever the names
        return write_atomic(path, self.source.encode("utf-8"))

    def load(self) -> types.ModuleType:
        """The generated module, imported (without writing a file)."""
        module = types.ModuleType(f"{clean(self.name)}_grad")
        module.__file__ = f"<backpropc:{clean(self.name)}>"
        exec(builtins.compile(self.source, module.__file__, "exec"), module.__dict__)
        return module


def compile(model, *, wrt=None, inputs=None, name: str = "model", reduction: str = "sum",
            rewrite: bool = True, derivatives=("grad",), broadcast: bool = False,
            reroll: bool = True) -> Compiled:
    """Compile a `Model`, or a loss expression with `wrt` (and optional `inputs`), to a module.

    The generated module computes the objective = the sum (or, with reduction="mean", the mean)
    of the per-example loss over all broadcast elements, and its gradient. With `rewrite` (the
    default) unstable forms such as log(1 + exp(x)) are rewritten into stable functions first.
    `derivatives` chooses what else the module contains (backpropc.outputs.DERIVATIVES). Data
    arguments must share one batch shape (up to broadcasting against a smaller one) unless
    `broadcast` allows them to broadcast into a larger one (an outer product). With `reroll` (the
    default) a model written in a loop over scalar symbols has its families of alike terms
    computed over arrays (backpropc.reroll); a module with "hessian" is re-rolled too, and reads
    its Hessian's structure from the model lowered term by term.
    """
    with _collector_paused():
        return _compile(model, wrt, inputs, name, reduction, rewrite, derivatives, broadcast, reroll)


@contextmanager
def _collector_paused():
    """Compiling allocates many small objects and frees them all at once: Python's cycle
    collector would scan the growing graph again and again (a third of the time) for cycles
    that are not there."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _compile(model, wrt, inputs, name, reduction, rewrite, derivatives, broadcast, reroll) -> Compiled:
    if reduction not in REDUCTIONS:
        raise ModelError(f"reduction must be one of {', '.join(REDUCTIONS)}, not {reduction!r}")
    derivatives = _derivatives(derivatives)
    if not isinstance(model, Model):
        model = Model(name=name, steps=[], loss=model, wrt=wrt if wrt is not None else [],
                      inputs=inputs)
    elif wrt is not None or inputs is not None:
        raise ModelError("pass wrt and inputs inside the Model, not to compile()")
    program = lower(model, rewrite=rewrite, reroll=reroll)
    builder = ModuleBuilder(program, reduction)
    if program.graph.families:  # over lanes every entry looks coupled: the structure comes term by term
        builder.term_by_term = lambda: lower(model, rewrite=rewrite, reroll=False)
    for d in derivatives:
        for output in DERIVATIVES[d]:
            builder.add(output)
    compiled = _render(builder, broadcast)
    compiled.model, compiled.derivatives = model, derivatives
    return compiled


def _derivatives(derivatives) -> tuple[str, ...]:
    if isinstance(derivatives, str):
        derivatives = [d.strip() for d in derivatives.split(",")]
    if isinstance(derivatives, (set, frozenset)):  # no order of its own: the table's
        derivatives = sorted(derivatives, key=lambda d: list(DERIVATIVES).index(d) if d in DERIVATIVES else -1)
    if not isinstance(derivatives, (list, tuple)):
        raise ModelError(f"derivatives must be a list of names (or one string of them, comma-separated) "
                         f"from {', '.join(DERIVATIVES)}; got {type(derivatives).__name__}")
    chosen = []
    for d in derivatives:
        if not isinstance(d, str) or d not in DERIVATIVES:
            raise ModelError(f"unknown derivative {d!r}; choose from {', '.join(DERIVATIVES)}")
        if d not in chosen:
            chosen.append(d)
    if "grad" not in chosen:
        chosen.insert(0, "grad")  # forward, value_and_grad and grad are always there
    return tuple(chosen)


def _render(builder: ModuleBuilder, broadcast: bool) -> Compiled:
    program = builder.program
    functions = builder.functions
    args = builder.arg_names
    matrix_shapes = builder.matrix_shapes
    indexed = [a for a, s in zip(args, program.args) if isinstance(s, sp.IndexedBase)]
    for f in functions:
        # a private function (_name) is called with values already checked
        f.checks = None if f.name.startswith("_") else _checks(f.params, builder, broadcast, bool(indexed))
    checks = {c for f in functions for c in f.checks or ()}
    # Chunks split a batch of data (an indexed model's is evaluated at once); a module without
    # data needs them only for its fast path on Python floats, which _in_chunks chooses.
    chunked = not indexed and (builder.has_data or any(f.scalar for f in functions))
    helpers = (builder.helpers | builder.printer.helpers | checks | {"_checked", "_self_check"}
               | ({"_in_chunks"} if chunked else set()))
    helpers_source = runtime.source(helpers, builder.lacks | ({"checks"} if not checks else set()))
    # the functions known by an unchecked _name too: chunked ones, and those the code names so
    code = " ".join([helpers_source] + [f.returns + " " + " ".join(s.code for _, b in f.sections for s in b)
                                        for f in functions])
    aliased = {f.name for f in functions if f.combine and (chunked or re.search(rf"\b_{f.name}\b", code))}
    source = render(
        name=docstring_text(program.name),
        version=__version__,
        steps=[docstring_text(f"{name} = {text}") for name, text in builder.step_equations()],
        wrt=[builder.namer.names[("symbol", w)] for w in program.wrt],
        reduction=builder.reduction,
        args_tuple=tuple_source(python_string(a) for a in args),
        wrt_tuple=tuple_source(python_string(builder.namer.names[("symbol", w)]) for w in program.wrt),
        chunk=_chunk_size(builder.live_arrays()) if chunked else None,
        matrix_shapes=_shapes_source(matrix_shapes) if matrix_shapes else "{}",
        indexed=tuple_source(python_string(a) for a in indexed) if indexed else "()",
        functions=functions,
        uses_math=builder.uses_math,
        constants=builder.constants,
        tables=builder.tables,
        broadcast=bool(broadcast),
        aliased=aliased,
        helpers=helpers_source,
    )
    return Compiled(program.name, source, builder.ops, tuple(builder.wrt_names), tuple(args),
                    program, builder.listing, builder.reduction)


def _checks(params, builder: ModuleBuilder, broadcast: bool, indexed: bool) -> list[str] | None:
    """The checks a public function's arguments need beyond _checked's own, chosen here so that a
    module carries only the checks its functions call; None for a function of flat vectors
    alone (theta, p), which their readers check: a call from an optimiser pays for no wrapper."""
    if set(params) <= {builder.theta, builder.p}:
        return None
    wrt, args = set(builder.wrt_names), set(builder.arg_names)
    checks = []
    if any(a in builder.matrix_shapes or indexed and a in wrt for a in params):
        checks.append("_check_matrices")
    data = sum(1 for a in params if a in args and a not in wrt)
    if not broadcast and data > 1:
        checks.append("_check_batch")
    if data:
        checks.append("_check_float_type")
    return checks


def _chunk_size(live_arrays: int) -> int:
    """Examples per chunk: a power of two for which the arrays that value_and_grad keeps alive
    (one per statement and per data argument) take about 8 MB, from 16,384 (below that, Python's
    cost per statement and chunk shows) to 65,536 (docs/scaling.md)."""
    chunk = 2 ** int(math.log2(CHUNK_BYTES / (8 * max(live_arrays, 1))))
    return min(max(chunk, 16384), 65536)


def _shapes_source(shapes: dict) -> str:
    """SHAPES = {"W": (3, 4), "x": ("n", 1), "y": ("n",)}: numeric dimensions as numbers, named
    ones as strings."""
    def dim(d):
        return str(int(d)) if d.is_Integer else python_string(str(d))
    return "{" + ", ".join(f"{python_string(a)}: {tuple_source(dim(d) for d in dims)}" for a, dims in shapes.items()) + "}"
