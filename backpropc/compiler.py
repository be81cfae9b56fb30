"""The pipeline, end to end: model -> graph -> reverse accumulation -> statements -> module text.

`compile` is the public entry point; `Compiled` holds the generated source and can write it
(atomically) or import it.
"""

from __future__ import annotations

import ast
import builtins
import math
import types
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp

from . import __version__
from .emit import CodePrinter, Schedule, Statement, print_code, print_math
from .errors import ModelError
from .files import write_atomic
from .graph import SYMBOL, closure
from .matrices import HELPER_SOURCE, matmul, transpose
from .model import REDUCTIONS, Model, Program, lower
from .naming import Namer, clean
from .reverse import backprop
from .special import helper_source
from .templates import render

# A "from" comment quotes its forward statement when that fits, else names it.
COMMENT_WIDTH = 60
# The memory of one chunk's temporaries when a large batch is evaluated in chunks.
CHUNK_BYTES = 8 * 2 ** 20


@dataclass
class Listing:
    """The statements behind the generated code, for `explain` and `graph`."""

    forward: list[Statement]           # forward(): the per-example loss
    lines: list[Statement]             # value_and_grad(): forward then backward statements
    gradients: list[Statement]         # one per wrt symbol (`arg`), before the sum over the batch
    seed: tuple[str, str] | None       # (name, value) of the loss's error signal when not 1

    def _moved(self) -> list[Statement]:
        """Forward statements that are error signals (y_bar = y - t, computed once for both
        passes): the equations list them with the backward pass."""
        return [s for s in self.lines if s.section == "forward" and s.origins]

    def forward_equations(self) -> list[tuple[str, sp.Basic]]:
        """(name, right-hand side) of the forward pass, with moved signals written out."""
        inline = {sp.Symbol(s.name): s.rhs for s in self._moved()}
        return [(s.name, s.rhs.xreplace(inline)) for s in self.lines
                if s.section == "forward" and not s.origins]

    def backward_equations(self) -> list[tuple[str, sp.Basic, str]]:
        """(name, right-hand side, kind) of the backward pass: signals, then gradients."""
        result = [] if self.seed is None else [(self.seed[0], sp.Symbol(self.seed[1]), "signal")]
        result += [(s.name, s.rhs, "signal") for s in self._moved()]
        result += [(s.name, s.rhs, "signal") for s in self.lines if s.section == "backward"]
        result += [(g.name, g.rhs, "gradient") for g in self.gradients]
        return result


@dataclass
class Compiled:
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

    def write(self, path) -> Path:
        """Write the module to `path` atomically: an error leaves an existing file untouched."""
        return write_atomic(path, self.source.encode("utf-8"))

    def load(self) -> types.ModuleType:
        """The generated module, imported (without writing a file)."""
        module = types.ModuleType(f"{clean(self.name)}_grad")
        module.__file__ = f"<backpropc:{self.name}>"
        exec(builtins.compile(self.source, module.__file__, "exec"), module.__dict__)
        return module


def compile(model, *, wrt=None, inputs=None, name: str = "model", reduction: str = "sum",
            rewrite: bool = True) -> Compiled:
    """Compile a `Model`, or a loss expression with `wrt` (and optional `inputs`), to a module.

    The generated module computes the objective = the sum (or, with reduction="mean", the mean)
    of the per-example loss over all broadcast elements, and its gradient. With `rewrite` (the
    default) unstable forms such as log(1 + exp(x)) are rewritten into stable functions first.
    """
    if reduction not in REDUCTIONS:
        raise ModelError(f"reduction must be one of {', '.join(REDUCTIONS)}, not {reduction!r}")
    if not isinstance(model, Model):
        model = Model(name=name, steps=[], loss=model, wrt=wrt if wrt is not None else [],
                      inputs=inputs)
    elif wrt is not None or inputs is not None:
        raise ModelError("pass wrt and inputs inside the Model, not to compile()")
    program = lower(model, rewrite=rewrite)
    compiled = _Emitter(program, reduction).compiled()
    compiled.model = model
    return compiled


class _Emitter:
    """Builds the statements of `forward` and `value_and_grad` and renders the module."""

    def __init__(self, program: Program, reduction: str) -> None:
        self.program = program
        self.reduction = reduction
        self.printer = CodePrinter()
        graph = program.graph
        self.arg_nodes = {s: graph.find_symbol(s) for s in program.args}
        reached = set(closure(graph, [program.loss]))
        self.every_arg_reaches_loss = all(i in reached for i in self.arg_nodes.values())

    def _namer(self) -> tuple[Namer, dict[int, str], dict[int, str], list[str]]:
        """A namer with the arguments and steps named first, in order (deterministic); the names
        of argument nodes; the names wanted for step nodes; the argument list."""
        namer = Namer()
        names: dict[int, str] = {}
        for s in self.program.args:
            name = namer.name(("symbol", s), s.name)
            if self.arg_nodes[s] is not None:
                names[self.arg_nodes[s]] = name
        wanted: dict[int, str] = {}
        for sym, node in self.program.steps:
            if node not in wanted and not self.program.graph[node].is_leaf:
                wanted[node] = sym.name
        if self.program.loss not in wanted and not self.program.graph[self.program.loss].is_leaf:
            wanted[self.program.loss] = "L"
        for node, wanted_name in wanted.items():
            namer.name(("node", node), wanted_name)
        return namer, names, wanted, [namer.names[("symbol", s)] for s in self.program.args]

    def compiled(self) -> Compiled:
        program, graph = self.program, self.program.graph
        # value_and_grad(): every value is conceptually broadcast to the batch shape of all the
        # arguments, so the seed is a scalar: 1 for the sum, 1/size for the mean.
        namer, names, wanted, args = self._namer()
        step_names = dict(wanted)
        if self.reduction == "sum":
            seed = graph.const(1)
        else:
            seed = graph.symbol(sp.Dummy("seed"))
            loss_label = wanted.get(program.loss) or names.get(program.loss, "L")
            names[seed] = namer.name(("node", seed), f"{loss_label}_bar")
        backward = backprop(program, seed)

        aliases: list[tuple[float, str, int, int]] = []  # (position, name, node, step node)
        signal_of: dict[int, int] = {}
        for v in sorted(backward.signals, reverse=True):
            s = backward.signals[v]
            signal_of.setdefault(s, v)
            if v not in wanted or graph[s].is_leaf or s == seed:
                continue  # constants and arguments are written where they are used
            bar = f"{wanted[v]}_bar"
            if s not in wanted:
                wanted[s] = bar
                namer.name(("node", s), bar)
            else:  # the signal already has a name: say `v_bar = <that name>`, as the lecture would
                aliases.append((backward.marks[v] - 0.5, namer.name(("signal", v), bar), s, v))
        roots = [program.loss] + [a[2] for a in aliases]
        full = Schedule(graph, roots, wanted, namer, program.n_forward, backward.grads, signal_of)
        statements = self._lines(full, names, aliases, signal_of, backward.senders)
        loss = self._ref(program.loss, names, full)

        shape = namer.fresh("shape")
        # the batch: the loss's shape, or every argument's (a matrix's trailing axes are its own)
        batch_args = ", ".join(f"{a}[..., 0, 0]" if isinstance(s, sp.MatrixSymbol) else a
                               for a, s in zip(args, program.args))
        shape_code = f"np.shape({loss})" if self.every_arg_reaches_loss else f"_batch_shape({batch_args})"
        grads = []
        for w, g in zip(program.wrt, backward.grads):
            w_name = namer.names[("symbol", w)]
            rhs = sp.Symbol(names[g]) if g in names else full.rhs(g, names)
            grads.append(Statement(namer.fresh(f"{w_name}_bar"), g, "gradient", rhs,
                                   code=self._gradient_code(rhs, w_name, shape, isinstance(w, sp.MatrixSymbol)),
                                   arg=w_name,
                                   comment=self._from(backward.senders.get(self.arg_nodes[w], []))))
        # forward(): the per-example loss only, with the same names for the same values
        forward_names = {node: name for node, name in names.items() if graph[node].op == SYMBOL}
        forward = Schedule(graph, [program.loss], step_names, namer, program.n_forward)
        forward_lines = self._lines(forward, forward_names, [])
        loss_name = self._ref(program.loss, forward_names, forward)

        seed_code = None if self.reduction == "sum" else f"1/int(np.prod({shape}))"
        if self.reduction == "mean":
            value = f"np.mean({loss})"
        elif self.every_arg_reaches_loss:
            value = f"np.sum({loss})"
        else:
            value = f"np.sum(np.broadcast_to({loss}, {shape}))"
        forward_return = loss_name if self.every_arg_reaches_loss else \
            f"np.broadcast_to({loss_name}, _batch_shape({batch_args}))"

        code_lines = [f"{s.name} = {s.code}" for s in statements if s.section == "backward"]
        code_lines += [f"{g.name} = {g.code}" for g in grads]
        width = min(max(map(len, code_lines), default=0), 56)
        body = "\n".join(s.code for s in forward_lines + statements + grads)
        special = helper_source(body)
        matrix_shapes = {a: tuple(s.shape) for a, s in zip(args, program.args)
                         if isinstance(s, sp.MatrixSymbol)}
        ops = {"forward": forward.ops,
               "value_and_grad": full.ops + len(grads) + 1 + (1 if seed_code else 0)}
        listing = Listing(forward_lines, statements, grads,
                          (names[seed], "1/N") if seed_code else None)
        source = render(
            name=clean(program.name),
            version=__version__,
            steps=[f"{name} = {print_math(rhs)}" for name, rhs in listing.forward_equations()],
            args=args,
            args_tuple=_tuple(f'"{a}"' for a in args),
            wrt_tuple=_tuple(f'"{namer.names[("symbol", w)]}"' for w in program.wrt),
            grads_tuple=_tuple(g.name for g in grads),
            wrt=[namer.names[("symbol", w)] for w in program.wrt],
            reduction=self.reduction,
            forward_lines=forward_lines,
            forward_return=forward_return,
            lines=statements,
            shape=(shape, shape_code),
            seed=(names[seed], seed_code) if seed_code else None,
            grads=grads,
            value=value,
            width=width,
            uses_batch="_batch_" in forward_return,
            special=special,
            chunk=_chunk_size(len(statements) + len(program.inputs)),
            matrix_shapes=_shapes_source(matrix_shapes) if matrix_shapes else "",
            matrix_helpers=HELPER_SOURCE.strip() if matrix_shapes or "_matmul(" in body else "",
        )
        ast.parse(source)  # the generated module must be valid Python, whatever the names
        return Compiled(program.name, source, ops, tuple(g.arg for g in grads), tuple(args),
                        program, listing, self.reduction)

    def _gradient_code(self, rhs: sp.Basic, arg: str, shape: str, matrix: bool) -> str:
        """The gradient of argument `arg` from its per-example signal: summed over the batch down
        to the argument's shape. A matrix parameter's sum over the batch happens inside the
        matrix products that form its signal (W1_bar = z_bar x^T, summed over the examples)."""
        if not matrix:
            return f"_sum_like({print_code(rhs, self.printer)}, {arg}, {shape})"
        parts = []
        for term in sp.Add.make_args(rhs):
            coeff, product = term.as_coeff_Mul()
            if isinstance(product, transpose) and isinstance(product.args[0], matmul):
                a, b = product.args[0].args  # the sum of (a b)^T is the sum of b^T a^T
                product = matmul(_transposed(b), _transposed(a), evaluate=False)
            if isinstance(product, matmul):
                a, b = (print_code(x, self.printer) for x in product.args)
                scale = "" if abs(coeff) == 1 else f"{print_code(abs(coeff), self.printer)}*"
                parts.append(("-" if coeff < 0 else "+", f"{scale}_sum_matmul({a}, {b}, {arg}, {shape})"))
            else:
                parts.append(("+", f"_sum_like({print_code(term, self.printer)}, {arg}, {shape} + {arg}.shape[-2:])"))
        text = ("-" if parts[0][0] == "-" else "") + parts[0][1]
        return text + "".join(f" {sign} {code}" for sign, code in parts[1:])

    def _ref(self, node: int, names: dict[int, str], schedule: Schedule) -> str:
        """How code refers to a node's value: its name, or its expression when it has none."""
        if node in names:
            return names[node]
        return print_code(schedule.rhs(node, names), self.printer)

    def _lines(self, schedule: Schedule, names: dict[int, str], aliases, signal_of=None,
               senders=None) -> list[Statement]:
        """Statements in order, printed; `names` is updated as each one names its node."""
        order = [(float(i), None, i, None) for i in schedule.own] + list(aliases)
        order.sort(key=lambda item: item[0])
        statements: list[Statement] = []
        owner = schedule.inlined_into()
        for _, alias_name, node, step in order:
            section = "forward" if node < schedule.n_forward and alias_name is None else "backward"
            if alias_name is None:
                name = schedule.names[node]
                rhs = schedule.rhs(node, names)
                v = signal_of.get(node) if signal_of else None
                if v is not None and senders is not None:
                    origins = tuple(senders.get(v, ()))
                else:
                    origin = schedule.graph.origin_of.get(node)
                    origins = () if origin is None else (origin,)
            else:
                name, rhs = alias_name, sp.Symbol(names[node])
                origins = tuple(senders.get(step, ()))
            statements.append(Statement(name, node, section, rhs, origins,
                                        print_code(rhs, self.printer)))
            if not schedule.graph[node].is_leaf:  # arguments keep their own names
                names[node] = name
        self._owner = owner
        self._math: dict[str, str] = {}
        self._forward_by_node = {s.node: s for s in statements if s.section == "forward"}
        for statement in statements:  # comments may point at later forward statements
            statement.comment = self._from(statement.origins)
        return statements

    def _from(self, origins) -> str:
        """'from z = w*x + b': the forward statements whose rules produced a backward line."""
        sources = []
        for v in origins:
            s = self._forward_by_node.get(self._owner.get(v, v))
            if s is not None and s not in sources:
                sources.append(s)
        if len(sources) == 1:
            text = self._math.get(sources[0].name)
            if text is None:
                text = self._math[sources[0].name] = f"{sources[0].name} = {print_math(sources[0].rhs)}"
            if len(text) <= COMMENT_WIDTH:
                return f"from {text}"
        return "from " + ", ".join(s.name for s in sources) if sources else ""


def _chunk_size(live_arrays: int) -> int:
    """Examples per chunk: a power of two for which the arrays that value_and_grad keeps alive
    (one per statement and per data argument) take about 8 MB, from 16,384 (below that, Python's
    cost per statement and chunk shows) to 65,536 (docs/scaling.md)."""
    chunk = 2 ** int(math.log2(CHUNK_BYTES / (8 * max(live_arrays, 1))))
    return min(max(chunk, 16384), 65536)


def _transposed(e: sp.Basic) -> sp.Basic:
    return e.args[0] if isinstance(e, transpose) else transpose(e, evaluate=False)


def _shapes_source(shapes: dict) -> str:
    """SHAPES = {"W": (3, 4), "x": ("n", 1)}: numeric dimensions as numbers, named ones as names."""
    def dim(d):
        return str(int(d)) if d.is_Integer else f'"{d}"'
    return "{" + ", ".join(f'"{a}": ({dim(r)}, {dim(c)})' for a, (r, c) in shapes.items()) + "}"


def _tuple(items) -> str:
    """Python source of a tuple of the given item texts: (a,) or (a, b)."""
    items = list(items)
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
