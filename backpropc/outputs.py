"""What a generated module contains: a list of function descriptions, one builder each.

A builder takes the `ModuleBuilder` (the program, its names, the shared derivative passes) and
adds `Function`s: name, parameters, statements in sections, the returned expression, and how its
results combine over the chunks of a large batch (`combine`, see runtime.core._in_chunks). One
template prints any list of them. `DERIVATIVES` maps each choice of `compile(derivatives=...)`
to its builders: adding an output function is one builder and one entry there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import sympy as sp

from .blocking import blocked
from .emit import IRPrinter, NoScalarForm, Schedule, Statement, float_literal
from .errors import ModelError
from .forward import tangents
from .graph import SYMBOL, Domain, Lanes, Whole, closure
from .model import Program
from .naming import Namer, comment_text, python_string
from .ops import constant_value
from .ops.lanes import lane_accumulate, lane_item, lane_unslice, lanes, table_name
from .ops.matrix import entries as entries_op
from .ops.matrix import entry, matmul, transpose
from .reverse import Backward, backprop
from .sparsity import (
    HessianTooLarge,
    colour_columns,
    hessian_pattern,
    jacobian_pattern,
    runs,
)
from .stencil import families, index_code, jacobian_families

# Functions of more statements get no copy for Python floats: per-call overhead no longer shows
# beside their work, and compiling (and the module) would double.
SCALAR_LIMIT = 20000
MAX_SOURCES = 12  # the forward statements a "from" comment names before it shortens the list
# A "from" comment quotes its forward statement when that fits, else names it.
COMMENT_WIDTH = 60
BACKWARD_HEADER = "backward pass: v_bar is the error signal d(objective)/dv"
TANGENT_HEADER = "tangent pass: v_dot is the derivative of v along the directions, so w_bar_dot = H w_dot"


@dataclass
class Function:
    """One function of a generated module."""

    name: str
    doc: str
    params: list[str]
    sections: list[tuple[str, list[Statement]]]   # (header comment or "", statements)
    returns: str
    combine: str | None                            # chunk combination; None: it delegates
    scalar: tuple | None = None                    # (lines, returns) of the same on Python floats
    checks: list[str] | None = None                # the argument checks chosen (compiler._render)

    @cached_property
    def width(self) -> int:
        """The column where the statements' comments start."""
        lines = ["    " * s.indent + s.text for _, block in self.sections for s in block if s.comment]
        return min(max(map(len, lines), default=0), 56)


@dataclass
class Listing:
    """The statements behind the generated code, for `explain` and `graph`."""

    forward: list[Statement]           # forward(): the per-example loss
    lines: list[Statement]             # value_and_grad(): forward then backward statements
    gradients: list[Statement]         # one per wrt symbol (`arg`), before the sum over the batch
    seed: tuple[str, str] | None       # (name, value) of the loss's error signal when not 1
    tangent: list[Statement] = field(default_factory=list)  # hvp(): v_dot, then w_bar_dot = H w_dot

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

    def tangent_equations(self) -> list[tuple[str, sp.Basic]]:
        """(name, right-hand side) of the Hessian-vector product's tangent pass."""
        return [(s.name, s.rhs) for s in self.tangent]


class ModuleBuilder:
    """The program and everything its functions share: names, printers, derivative passes."""

    def __init__(self, program: Program, reduction: str) -> None:
        self.program = program
        self.graph = program.graph
        self.reduction = reduction
        self.functions: list[Function] = []
        self.ops: dict[str, int] = {}
        self.helpers: set[str] = set()
        self.listing: Listing | None = None
        graph = self.graph
        self.arg_nodes = {s: graph.find_symbol(s) for s in program.args}
        reached = set(closure(graph, [program.loss]))
        self.every_arg_reaches_loss = all(i in reached for i in self.arg_nodes.values())
        # Arguments and steps are named first, in order, so names are deterministic.
        self.namer = namer = Namer()
        self.arg_names = [namer.name(("symbol", s), s.name) for s in program.args]
        self.wrt_names = [namer.names[("symbol", w)] for w in program.wrt]
        self.leaf_names = {self.arg_nodes[s]: namer.names[("symbol", s)] for s in program.args
                           if self.arg_nodes[s] is not None}
        self.step_names: dict[int, str] = {}
        for sym, node in program.steps:
            if node not in self.step_names and not graph[node].is_leaf:
                self.step_names[node] = sym.name
        if program.loss not in self.step_names and not graph[program.loss].is_leaf:
            self.step_names[program.loss] = "L"
        for node, wanted in self.step_names.items():
            namer.name(("node", node), wanted)
        # the flat forms' vectors, named after the arguments and steps so that neither takes their names
        self.theta, self.p = namer.name(("flat", "theta"), "theta"), namer.name(("flat", "p"), "p")
        # The data of an indexed model may carry a batch: its scalars get a trailing axis beside
        # values over a Sum's range, and its indexed arrays' gradients sum over the batch.
        self.indexed = any(isinstance(s, sp.IndexedBase) for s in program.args)
        self.has_data = len(program.args) > len(program.wrt)
        data = frozenset(self.arg_nodes[s] for s in program.args[len(program.wrt):]
                         if self.arg_nodes[s] is not None) if self.indexed else frozenset()
        self.printer = IRPrinter(graph, data=data)
        self.notation = IRPrinter(graph, math=True)  # the lecture's notation, for comments
        self._statements = 0
        self.added: list = []
        self.uses_math = False           # a scalar body calls the math module
        self.constants: dict[str, str] = {}  # module-level constants: name -> source
        self.tables: dict[str, str] = {}  # module-level values the helpers compute, after them
        self.objective = ""                  # value_and_grad's objective, as code
        self.lane_signals: dict[int, str] = {}  # a lane vector's signal node -> its code
        # For a re-rolled program: () -> the same model lowered term by term (its Hessian's structure).
        self.term_by_term = None
        # matrix arguments of the module's functions -> their shape per example
        self.matrix_shapes = {a: tuple(s.shape) for a, s in zip(self.arg_names, program.args)
                              if isinstance(s, (sp.MatrixSymbol, sp.IndexedBase))}
        self.forward_statements: list[Statement] = []
        for k, (kind, values) in enumerate(graph.tables):  # of re-rolled families (backpropc.reroll)
            texts = [str(v) if kind == "index" else float_literal(repr(v)) for v in values]
            dtype = ", dtype=np.intp" if kind == "index" else ""
            self.constants[table_name(k)] = f"np.array({tuple_source(texts)}{dtype})"

    def add(self, output) -> None:
        """Add the functions of one builder (once, however many derivatives ask for it)."""
        if output not in self.added:
            self.added.append(output)
            output(self)

    def live_arrays(self) -> int:
        return self._statements + len(self.program.inputs)

    @property
    def data_names(self) -> list[str]:
        """The arguments that are not WRT, in ARGS order: a flat form's `*data`."""
        return [a for a in self.arg_names if a not in self.wrt_names]

    def flat_call(self) -> str:
        """A flat form's call of the structured function: the WRT values read from theta, then the data."""
        return ", ".join([_unpacked(self, self.theta)] + self.data_names)

    # ---- the batch and the objective ----------------------------------------------------------
    def batch_args(self) -> str:
        """The arguments whose broadcast shape is the batch (a matrix's trailing axes are its own)."""
        program = self.program
        return ", ".join(f"np.shape({a})[:-{len(s.shape)}]"  # an empty array has a batch too
                         if isinstance(s, (sp.MatrixSymbol, sp.IndexedBase)) else a
                         for a, s in zip(self.arg_names, program.args)
                         # an indexed parameter has no batch; per-index data's last axes are its own
                         if not (isinstance(s, sp.IndexedBase) and s in program.wrt))

    @cached_property
    def seed(self) -> int:
        """The loss's error signal: 1 for the sum, 1/N (a name set in the code) for the mean."""
        graph = self.graph
        if self.reduction == "sum":
            return graph.const(1)
        seed = graph.symbol(sp.Dummy("seed"))
        label = self.step_names.get(self.program.loss) or self.leaf_names.get(self.program.loss, "L")
        self.leaf_names[seed] = self.namer.name(("node", seed), f"{label}_bar")
        return seed

    @cached_property
    def backward(self) -> Backward:
        return backprop(self.program, self.seed)

    # ---- statements --------------------------------------------------------------------------------
    def ref(self, node: int, names: dict[int, str]) -> str:
        """How code refers to a node's value: its name, or its expression when it has none."""
        return names[node] if node in names else self.printer.print(node, names)

    @cached_property
    def signal_naming(self) -> tuple[dict[int, str], list, dict[int, int]]:
        """(names wanted for nodes: the steps and their signals `v_bar`; aliases `v_bar = <name>`
        where a step's signal already has a name; error-signal node -> its forward node)."""
        graph, namer, backward, seed = self.graph, self.namer, self.backward, self.seed
        wanted = dict(self.step_names)
        aliases: list[tuple[float, str, int, int]] = []  # (position, name, node, step node)
        signal_of: dict[int, int] = {}
        for v in sorted(backward.signals, reverse=True):
            s = backward.signals[v]
            signal_of.setdefault(s, v)
            if v not in wanted or graph[s].is_leaf or s == seed or constant_value(graph, s) is not None:
                continue  # constants (sin(1/2) too) and arguments are written where they are used
            bar = f"{wanted[v]}_bar"
            if s not in wanted:
                wanted[s] = bar
                namer.name(("node", s), bar)
            else:  # the signal already has a name: say `v_bar = <that name>`, as the lecture would
                aliases.append((backward.marks[v] - 0.5, namer.name(("signal", v), bar), s, v))
        return wanted, aliases, signal_of

    @cached_property
    def directions(self) -> dict:
        """The direction of each wrt symbol (its tangent, `w_dot`), as a node."""
        result = {}
        for k, w in enumerate(self.program.wrt):
            name = self.namer.name(("direction", w), f"{self.namer.names[('symbol', w)]}_dot")
            symbol = sp.MatrixSymbol(f"_direction{k}", *w.shape) if isinstance(w, sp.MatrixSymbol) \
                else sp.IndexedBase(f"_direction{k}", shape=w.shape) if isinstance(w, sp.IndexedBase) \
                else sp.Dummy(name)
            node = self.graph.symbol(symbol)
            self.leaf_names[node] = name
            if isinstance(w, (sp.MatrixSymbol, sp.IndexedBase)):
                self.matrix_shapes[name] = tuple(w.shape)
            result[w] = node
        return result

    @cached_property
    def second_order(self) -> dict[int, int]:
        """The tangent along the directions of every node between the wrt symbols and the gradient
        (forward over reverse): the tangents of the gradient nodes are the Hessian times the
        directions."""
        backward, directions = self.backward, self.directions
        self.n_backward = len(self.graph)
        seeds = {self.arg_nodes[w]: d for w, d in directions.items() if self.arg_nodes[w] is not None}
        return tangents(self.graph, backward.grads, seeds)

    def scalar_body(self, statements, names, loss: str, grads=None, hvps=None):
        """(lines, returns) of a function's statements for Python floats, or None where an op has no
        scalar form, the model has matrices, or its NumPy code is what floats would run anyway (a
        re-rolled model whose parameters all sit in lane vectors)."""
        if any(isinstance(s, (sp.MatrixSymbol, sp.IndexedBase)) for s in self.program.args) \
                or len(statements) > SCALAR_LIMIT or self.parameters_in_lanes:
            return None
        printer = IRPrinter(self.graph, scalar=True)
        # the names as each statement met them: a node renamed later (w5_bar = w0, an alias)
        # is still read by its first name before that
        own = {s.node for s in statements}
        current = {node: name for node, name in names.items() if node not in own}
        try:
            lines = []
            for s in statements:
                code = s.code if s.alias else printer.print(s.node, current)
                if code.isidentifier() and not s.alias:  # a number lifted over lanes is the number
                    current[s.node] = code
                    continue
                lines.append((s.name, code))
                current[s.node] = s.name
            if self.reduction == "mean" and (grads is not None or hvps is not None):  # derivatives: 1/N
                lines.insert(0, (self.leaf_names[self.seed], "1.0"))
            results = [] if loss is None else [float_literal(loss)]
            for group in (grads, hvps):
                if group is not None:
                    results.append(tuple_source(self._float_results([g for _, g in group], printer, current)))
        except NoScalarForm:
            return None
        self.uses_math = self.uses_math or printer.uses_math
        return lines, ", ".join(results)

    def _float_results(self, nodes: list[int], printer: IRPrinter, current: dict[int, str]) -> list[str]:
        """The code of each result node on floats; consecutive entries of one lane vector (the
        gradients of the symbols it holds) as one `*signal[a:b].tolist()`."""
        graph, texts, k = self.graph, [], 0
        while k < len(nodes):
            vector, first, run = _lane_run(graph, nodes, k)
            if run > 1:
                signal = current[vector] if vector in current else printer.print(vector, current)
                if (first, first + run) != (0, graph.shapes[vector].count):
                    signal = f"{signal}[{first}:{first + run}]"
                texts.append(f"*{signal}.tolist()")
            else:
                g = nodes[k]
                texts.append(float_literal(current[g] if g in current else printer.print(g, current)))
            k += run
        return texts

    @cached_property
    def lacks(self) -> frozenset[str]:
        """What the module has none of, so that its runtime helpers leave out their blocks for
        it (runtime, `[with X]`): data (Dask arrays come only as data), slices or gathers added
        into a lane vector's signal, long vectors (a Sum's range, or a family of more than 8192
        terms); compiler._render adds "checks" when its functions need no argument checks beyond
        _checked's own."""
        graph, has = self.graph, set()
        if any(isinstance(s, Domain) or (isinstance(s, Lanes) and s.count > 8192) for s in graph.shapes):
            has.add("long")
        for node in graph.nodes:
            if node.op is lane_accumulate:
                slices = int(graph.number(node.args[1]))
                has |= ({"slices"} if slices else set()) | ({"gathers"} if len(node.args) > 2 + 4 * slices else set())
            elif node.op is lane_unslice:
                has.add("slices")
        if self.has_data:
            has.add("data")
        return frozenset({"data", "slices", "gathers", "long"} - has)

    @cached_property
    def parameters_in_lanes(self) -> bool:
        """Whether the program is re-rolled and every wrt symbol is read only through lane
        vectors (then its NumPy code on floats is all a call on floats needs)."""
        graph = self.graph
        if not graph.families:
            return False
        wrt = {self.arg_nodes[w] for w in self.program.wrt} - {None}
        return all(graph[i].op is lanes for i in closure(graph, [self.program.loss])  # the live nodes
                   if not wrt.isdisjoint(graph[i].args))

    def lines(self, schedule: Schedule, names: dict[int, str], aliases=(), signal_of=None,
              senders=None, n_backward=None) -> list[Statement]:
        """Statements in order, printed; `names` is updated as each one names its node."""
        order = [(float(i), None, i, None) for i in schedule.own] + list(aliases)
        order.sort(key=lambda item: item[0])
        statements: list[Statement] = []
        for _, alias_name, node, step in order:
            section = "forward" if node < schedule.n_forward and alias_name is None else "backward"
            if n_backward is not None and node >= n_backward and alias_name is None:
                section = "tangent"
            if alias_name is None:
                name = schedule.names[node]
                code = self.printer.print(node, names)
                v = signal_of.get(node) if signal_of else None
                if v is not None and senders is not None:
                    origins = tuple(senders.get(v, ()))
                else:
                    origin = schedule.graph.origin_of.get(node)
                    origins = () if origin is None else (origin,)
                rhs = _rhs(schedule, node, names)
                math = None if section == "backward" else _math(self.notation, node, names)
            else:
                name, code, math = alias_name, names[node], names[node]
                origins = tuple(senders.get(step, ()))
                rhs = _symbol(names[node])
            statements.append(Statement(name, node, section, origins, code, _math=math, _rhs=rhs,
                                        alias=alias_name is not None))
            if not schedule.graph[node].is_leaf:  # arguments keep their own names
                names[node] = name
        self._statements = max(self._statements, len(statements))
        owner = schedule.inlined_into()
        forward_by_node = {s.node: s for s in statements if s.section == "forward"}
        for statement in statements:  # comments may point at later forward statements
            statement.comment = self.provenance(statement.origins, owner, forward_by_node) or \
                self.family_comment(statement.node)
        self._owner, self._forward_by_node = owner, forward_by_node
        return statements

    def provenance(self, origins, owner, forward_by_node) -> str:
        """'from z = w*x + b': the forward statements whose rules produced a backward line. An
        origin written inside another statement (a shared `-lse` in ell1, ell2 and ell3) stands
        for the statements that sent it its own signal."""
        senders = self.backward.senders if "backward" in self.__dict__ else {}
        sources, listed, stack, seen = [], set(), list(reversed(origins)), set()
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            s = forward_by_node.get(owner.get(v, v))
            if v not in forward_by_node and senders.get(v) and s is not None and s.node != v:
                stack.extend(reversed(senders[v]))
            elif s is not None and id(s) not in listed:
                listed.add(id(s))
                sources.append(s)
        sources.sort(key=lambda s: s.node)
        if len(sources) == 1 and len(sources[0].name) + len(sources[0].math) + 3 <= COMMENT_WIDTH:
            text = comment_text(f"{sources[0].name} = {sources[0].math}")
            if len(text) <= COMMENT_WIDTH:
                return f"from {text}"
        if len(sources) > MAX_SOURCES:  # a parameter read at every level of a chain: the ends
            shown = [s.name for s in sources[:MAX_SOURCES - 2]]
            return f"from {', '.join(shown)}, ..., {sources[-1].name} ({len(sources)} statements)"
        return "from " + ", ".join(s.name for s in sources) if sources else ""

    def family_comment(self, node: int) -> str:
        """What the sum of a re-rolled family adds up: `999 terms like (1 - x0)**2`."""
        if node not in self.graph.families:
            return ""
        count, first = self.graph.families[node]
        text = comment_text(f"{count} terms like {self.notation.print(first, self.leaf_names)}")
        return text if len(text) <= COMMENT_WIDTH else f"{count} terms"

    def step_equations(self) -> list[tuple[str, str]]:
        """(name, expression) of each statement of forward(), for the module docstring."""
        return [(s.name, s.math) for s in self.forward_statements]

    def gradient_code(self, g: int, arg: str, shape: str, matrix: bool, names: dict[int, str],
                      indexed: bool = False) -> str:
        """The gradient of argument `arg` from its per-example signal g: summed over the batch
        down to the argument's shape. A matrix parameter's sum over the batch happens inside the
        matrix products that form its signal (W1_bar = z_bar x^T, summed over the examples)."""
        if indexed:
            return self.array_gradient_code(g, arg, shape, names)
        self.helpers.add("_sum_like")
        if not matrix:
            return f"_sum_like({self.ref(g, names)}, {arg}, {shape})"
        graph = self.graph
        terms = [g] if g in names or graph[g].op is not sp.Add else list(graph[g].args)
        parts = []
        for term in terms:
            coeff, product = graph.split_coeff(term) if term not in names else (sp.S.One, term)
            a = b = None
            if product not in names and graph[product].op is matmul:
                a, b = graph[product].args
                a, b = self.ref(a, names), self.ref(b, names)
            elif product not in names and graph[product].op is transpose and \
                    graph[graph[product].args[0]].op is matmul:
                x, y = graph[graph[product].args[0]].args  # the sum of (x y)^T is the sum of y^T x^T
                a, b = self._transposed(y, names), self._transposed(x, names)
            if a is not None:
                self.helpers.add("_sum_matmul")
                scale = "" if abs(coeff) == 1 else f"{self.printer._constant(abs(coeff))[0]}*"
                parts.append(("-" if coeff < 0 else "+", f"{scale}_sum_matmul({a}, {b}, {arg}, {shape})"))
            else:
                parts.append(("+", f"_sum_like({self.ref(term, names)}, {arg}, {shape} + {arg}.shape[-2:])"))
        text = ("-" if parts[0][0] == "-" else "") + parts[0][1]
        return text + "".join(f" {sign} {code}" for sign, code in parts[1:])

    def array_gradient_code(self, g: int, arg: str, shape: str, names: dict[int, str]) -> str:
        """The gradient of an indexed argument: its signal is an array of its shape, after the
        batch axes of the data it met (summed here); a constant one is spread over that shape.
        Without data there is no batch to sum over."""
        if not isinstance(self.graph.shapes[g], Whole):
            return f"np.full(np.shape({arg}), {self.ref(g, names)}, dtype=float)"
        if not self.has_data:
            return self.ref(g, names)
        self.helpers.add("_sum_like")
        return f"_sum_like({self.ref(g, names)}, {arg}, {shape} + np.shape({arg}))"

    def _transposed(self, i: int, names) -> str:
        graph = self.graph
        if i not in names and graph[i].op is transpose:
            return self.ref(graph[i].args[0], names)
        self.helpers.add("_T")
        text = self.ref(i, names)
        return f"_T({text})"


def _rhs(schedule: Schedule, node: int, names: dict[int, str]):
    """The statement's right-hand side as a SymPy expression, built only when explain asks (from
    the names as they are at the end: a statement only refers to earlier ones)."""
    return lambda: schedule.sympy_rhs(node, names)


def _math(printer: IRPrinter, node: int, names: dict[int, str]):
    """The statement's right-hand side in the lecture's notation, printed only when asked for."""
    return lambda: printer.print(node, names)


def _symbol(name: str):
    return lambda: sp.Symbol(name)


def _as_float_text(m: ModuleBuilder, node: int, text: str) -> str:
    """A constant loss as a float literal (3.0, not 3): broadcast over a batch, it is an array
    of floats, not of integers."""
    return text if m.graph.number(node) is None else float_literal(text)


# ---- the builders ---------------------------------------------------------------------------------
def forward_output(m: ModuleBuilder) -> None:
    """forward(): the per-example loss, with the same names as value_and_grad for the same values."""
    program, graph = m.program, m.graph
    names = {node: name for node, name in m.leaf_names.items() if graph[node].op == SYMBOL}
    schedule = Schedule(graph, [program.loss], m.step_names, m.namer, program.n_forward)
    statements = m.lines(schedule, names)
    loss = m.ref(program.loss, names)
    returns = loss if m.every_arg_reaches_loss else \
        f"np.broadcast_to({_as_float_text(m, program.loss, loss)}, _batch_shape({m.batch_args()}))"
    if "_batch_shape" in returns:
        m.helpers.add("_batch_shape")
    m.ops["forward"] = schedule.ops
    m.forward_statements = statements
    scalar = m.scalar_body(statements, names, loss)
    m.functions.append(Function("forward", "The per-example loss (the broadcast shape of the arguments).",
                                m.arg_names, blocked(m, [("", statements)]) or [("", statements)], returns,
                                '"example"', scalar))


def _reverse_function(m: ModuleBuilder, second_order: bool) -> tuple:
    """The statements of value_and_grad (and, with `second_order`, of the Hessian-vector product
    on top of it): (sections, value code, gradient statements, tangent statements, schedule,
    names, scalar body)."""
    program, graph, namer = m.program, m.graph, m.namer
    seed, backward = m.seed, m.backward
    wanted, aliases, signal_of = m.signal_naming
    tangents_ = m.second_order if second_order else {}
    names = dict(m.leaf_names)
    results = list(backward.grads)
    tangent_of, hv = {}, {}
    if second_order:
        tangent_of = {t: v for v, t in sorted(tangents_.items())}
        hv = {g: tangents_.get(g, graph.const(0)) for g in backward.grads}
        results += list(hv.values())
    schedule = Schedule(graph, [program.loss] + [a[2] for a in aliases], wanted, namer, program.n_forward,
                        results, signal_of, tangent_of)
    statements = m.lines(schedule, names, aliases, signal_of, backward.senders,
                         n_backward=m.n_backward if second_order else None)
    loss = m.ref(program.loss, names)
    shape = namer.name(("shape",), "shape")
    shape_code = f"np.shape({loss})" if m.every_arg_reaches_loss else f"_batch_shape({m.batch_args()})"
    if "_batch_shape" in shape_code:
        m.helpers.add("_batch_shape")
    first = [Statement(shape, -1, "backward", code=shape_code, _rhs=_symbol(shape))]
    if m.reduction == "mean":
        m.helpers.add("_batch_size")
        first.append(Statement(names[seed], seed, "backward", code=f"1/_batch_size({shape})",
                               _rhs=_symbol("1/N")))
    grads, hvps = [], []
    for w, g in zip(program.wrt, backward.grads):
        w_name = namer.names[("symbol", w)]
        matrix = isinstance(w, sp.MatrixSymbol)
        # an entry of a lane vector's signal is printed with its neighbours (_lane_runs)
        code = "" if graph[g].op is lane_item else \
            m.gradient_code(g, w_name, shape, matrix, names, isinstance(w, sp.IndexedBase))
        grads.append(Statement(namer.name(("gradient", w), f"{w_name}_bar"), g, "gradient", code=code,
                               arg=w_name, _rhs=_rhs(schedule, g, names) if g not in names else _symbol(names[g]),
                               comment="" if not code else
                               m.provenance(backward.senders.get(m.arg_nodes[w], []), m._owner,
                                            m._forward_by_node)))
        if second_order:
            hvps.append(Statement(namer.name(("hvp", w), f"{w_name}_bar_dot"), hv[g], "tangent",
                                  code="" if graph[hv[g]].op is lane_item else
                                  m.gradient_code(hv[g], w_name, shape, matrix, names,
                                                  isinstance(w, sp.IndexedBase)), arg=w_name,
                                  _rhs=_rhs(schedule, hv[g], names) if hv[g] not in names
                                  else _symbol(names[hv[g]])))
    if m.indexed and not m.has_data:
        value = loss  # an indexed model without data: its loss is one number
        if not any(re.search(rf"\b{shape}\b", g.code) for g in grads + hvps + first[1:]):
            first = first[1:]  # and nothing to sum over it
    elif m.reduction == "mean":
        m.helpers.add("_objective")
        value = f"_objective({loss}, mean=True)"
    elif m.every_arg_reaches_loss:
        m.helpers.add("_objective")
        value = f"_objective({loss})"
    else:
        value = f"np.sum(np.broadcast_to({_as_float_text(m, program.loss, loss)}, {shape}))"
    sections = [("forward pass", [s for s in statements if s.section == "forward"]),
                (BACKWARD_HEADER, first + [s for s in statements if s.section == "backward"]
                 + _lane_runs(m, grads, shape, names))]
    if second_order:
        sections.append((TANGENT_HEADER, [s for s in statements if s.section == "tangent"]
                         + _lane_runs(m, hvps, shape, names)))
    scalar = m.scalar_body([s for s in statements], names, loss, grads=list(zip(grads, backward.grads)),
                           hvps=[(h, hv[g]) for h, g in zip(hvps, backward.grads)] if second_order else None)
    return sections, value, grads, hvps, schedule, statements, scalar


def _lane_run(graph, nodes: list[int], k: int) -> tuple[int | None, int, int]:
    """(lane vector, first lane, length) of the run of consecutive entries of one lane vector
    that starts at nodes[k] (the gradients of the symbols it holds); (None, 0, 1) when nodes[k]
    is not an entry of one."""
    node = graph[nodes[k]]
    if node.op is not lane_item:
        return None, 0, 1
    vector, first, run = node.args[0], int(graph.number(node.args[1])), 1
    while k + run < len(nodes) and graph[nodes[k + run]].op is lane_item and \
            graph[nodes[k + run]].args[0] == vector and graph.number(graph[nodes[k + run]].args[1]) == first + run:
        run += 1
    return vector, first, run


def _lane_runs(m: ModuleBuilder, statements: list[Statement], shape: str, names) -> list[Statement]:
    """Gradients that are consecutive entries of one lane vector's signal (a re-rolled model)
    become one statement, `x0_bar, ..., x9_bar = _unlanes(c0_bar, (x0, ..., x9), shape)`."""
    graph, result, k = m.graph, [], 0
    nodes = [s.node for s in statements]
    while k < len(statements):
        vector, first, length = _lane_run(graph, nodes, k)
        run = statements[k:k + length]
        k += length
        if len(run) == 1:
            if not run[0].code:
                run[0].code = m.gradient_code(run[0].node, run[0].arg, shape, False, names)
            result.append(run[0])
            continue
        m.helpers.add("_unlanes")
        signal, stop = m.ref(vector, names), first + len(run)
        if (first, stop) != (0, graph.shapes[vector].count):
            signal = f"{signal}[..., {first}:{stop}]"
        code = f"_unlanes({signal}, {tuple_source(s.arg for s in run)}, {shape})"
        result.append(Statement(", ".join(s.name for s in run), vector, run[0].section, code=code))
        m.lane_signals[vector] = signal
    return result


def value_and_grad_output(m: ModuleBuilder) -> None:
    """value_and_grad(): the forward pass, then the backward pass (the lecture's slide 10)."""
    sections, value, grads, _, schedule, statements, scalar = _reverse_function(m, second_order=False)
    m.objective = value
    m.ops["value_and_grad"] = schedule.ops + len(grads) + 1 + (m.reduction == "mean")
    m.listing = Listing(m.forward_statements, statements, grads,
                        (m.leaf_names[m.seed], "1/N") if m.reduction == "mean" else None)
    combine = '("total", WRT)'  # the gradients are named like WRT
    m.functions.append(Function(
        "value_and_grad", "(objective, (gradient of each of WRT)): the forward pass, then the backward pass.",
        m.arg_names, blocked(m, sections) or sections, f"{value}, {tuple_source(g.name for g in grads)}",
        combine, scalar))


def grad_output(m: ModuleBuilder) -> None:
    args = ", ".join(m.arg_names)
    m.functions.append(Function("grad", "The gradient of the objective with respect to each of WRT, in that order.",
                                m.arg_names, [], f"_value_and_grad({args})[1]", None))


def hvp_output(m: ModuleBuilder) -> None:
    """hvp(*args, *directions): the objective, its gradient and the Hessian times the directions,
    by forward-over-reverse: the tangent of every node of the backward pass along the direction
    (v_dot), so the product shares the value and gradient's work."""
    sections, value, grads, hvps, schedule, statements, scalar = _reverse_function(m, second_order=True)
    # the tangent pass, after the temporaries it uses that value_and_grad does not name
    known = {s.name for s in m.listing.lines}
    m.listing.tangent = [s for s in statements if s.section != "tangent" and s.name not in known] + \
        [s for s in statements if s.section == "tangent"] + hvps
    m.ops["hvp"] = schedule.ops + 2 * len(grads) + 1 + (m.reduction == "mean")
    directions = [m.leaf_names[m.directions[w]] for w in m.program.wrt]
    m.functions.append(Function(
        "hvp", "(objective, (gradient of each of WRT), (Hessian times the direction, for each of WRT)): "
        "the directions are one array per WRT, shaped like it.",
        m.arg_names + directions, blocked(m, sections) or sections,
        f"{value}, {tuple_source(g.name for g in grads)}, {tuple_source(h.name for h in hvps)}",
        '("total", WRT, WRT)', scalar))


def _lane_flat(m: ModuleBuilder, name: str, doc: str, params: list[str], reads: dict, results) -> Function | None:
    """A flat form of a re-rolled model without data whose lane vectors hold exactly the WRT
    symbols (or their directions), in order: such a vector is the flat argument itself, and its
    signal a flat result, so a call goes from the vector to the result without a float per
    parameter in between. `reads` maps the nodes of a vector to the argument that holds it;
    `results(signal of each lane vector)` is the returned code, or None when a signal is missing.
    The passes the result needs are written once, in a private function over the lane vectors
    that the flat form and its source both call (_shared_passes)."""
    graph, program = m.graph, m.program
    if program.inputs or any(isinstance(w, (sp.MatrixSymbol, sp.IndexedBase)) for w in program.wrt):
        return None
    source = next(f for f in m.functions if f.name == name.removesuffix("_flat"))
    vectors = {id(s): reads[graph[s.node].args] for _, block in source.sections for s in block
               if s.node >= 0 and graph[s.node].op is lanes and graph[s.node].args in reads}
    returns = results({s.name: m.lane_signals[s.node] for _, block in source.sections for s in block
                       if s.node in m.lane_signals})
    if len(vectors) != len(reads) or returns is None:
        return None
    m.helpers.add("_flat_theta")
    size = len(program.wrt)
    needed, sections, kept_ids, readers = set(_names(returns)), [], set(), []
    for header, block in reversed(source.sections):  # the statements the result needs, last first
        kept = []
        for s in reversed(block):
            if needed.isdisjoint(s.name.split(", ")):
                continue
            needed.update(_names(s.code))
            kept_ids.add(id(s))
            if id(s) in vectors:
                s = Statement(s.name, s.node, s.section, s.origins, f"_flat_theta({vectors[id(s)]}, {size}"
                              f"{'' if vectors[id(s)] == m.theta else ', ' + python_string(vectors[id(s)])})",
                              s.comment)
                readers.append(s)
            kept.append(s)
        sections.append((header, kept[::-1]))
    flat = Function(name, doc, params, [(h, b) for h, b in sections[::-1] if b], returns, None)
    _shared_passes(m, source, flat, kept_ids, set(vectors), readers[::-1])
    return flat


def _names(code: str) -> list[str]:
    return re.findall(r"[A-Za-z_]\w*", code)


def _shared_passes(m: ModuleBuilder, source: Function, flat: Function, kept: set[int], vectors: set[int],
                   readers: list[Statement]) -> None:
    """Move the passes that `flat` (a _lane_flat form) shares with `source` into one private
    function of the lane vectors, _<source>_lanes(c0, ...), which both call: they are written
    once, and a module carries them once. The private function returns the names of the passes
    that `flat` or the rest of `source` (the gradients from the signals) use. Nothing changes when the passes read
    an argument of `source` beside its lane vectors. `readers` are the flat form's statements
    that read its vectors from the flat arguments (_flat_theta)."""
    statements = [s for _, block in source.sections for s in block]
    sections = [(h, [s for s in b if id(s) in kept and id(s) not in vectors]) for h, b in source.sections]
    passes = [s for _, block in sections for s in block]
    rest = [s for s in statements if id(s) not in kept]
    read = {n for s in passes for n in _names(s.code)}
    if not passes or read & set(source.params):
        return
    used_after = set(_names(flat.returns)) | {n for s in rest for n in _names(s.code)} | set(_names(source.returns))
    results = [n for s in passes for n in s.name.split(", ") if n in used_after]
    lane_vectors = [s for s in statements if id(s) in vectors]
    params = [s.name for s in lane_vectors]
    private = Function(f"_{source.name}_lanes", f"{source.name}'s passes over the lane vector"
                       f"{'s' if len(params) > 1 else ''} {', '.join(params)}, shared with {flat.name}.", params,
                       [(h, b) for h, b in sections if b], ", ".join(results), None)
    call = f"{private.name}({', '.join(private.params)})"
    wanted = set(_names(flat.returns))
    flat.sections = [("", readers + [
        Statement(", ".join(n if n in wanted else "_" for n in results), -1, "forward", code=call)])]
    source.sections = [("", lane_vectors + [Statement(", ".join(results), -1, "forward", code=call)] + rest)]
    m.functions.insert(next(i for i, f in enumerate(m.functions) if f is source), private)


def _lane_vector_flat(m: ModuleBuilder) -> Function | None:
    """value_and_grad_flat of a re-rolled model (_lane_flat): the objective and the signal of
    the parameters' lane vector."""
    wrt = tuple(m.arg_nodes[w] for w in m.program.wrt)
    every_gradient = ", ".join(g.name for g in m.listing.gradients)
    return _lane_flat(m, "value_and_grad_flat", "(objective as a float, gradient as one flat vector) at "
                      "theta = pack(*WRT), as scipy.optimize.minimize(fun, theta0, jac=True) calls it.",
                      [m.theta], {wrt: m.theta},
                      lambda signals: every_gradient in signals and
                      f"float({_one_number(m.objective)}), {signals[every_gradient]}" or None)


def _one_number(objective: str) -> str:
    """The objective of a call without a batch: the loss itself."""
    found = re.fullmatch(r"_objective\((\w+)(?:, mean=True)?\)", objective)
    return found.group(1) if found else objective


def flat_output(m: ModuleBuilder) -> None:
    """pack, unpack and value_and_grad_flat: what scipy.optimize.minimize(jac=True) calls."""
    wrt = ", ".join(m.wrt_names)
    data = m.data_names
    m.helpers.add("_pack")
    m.functions.append(Function("pack", "theta: the WRT values in one flat vector, each flattened in C order.",
                                m.wrt_names, [], f"_pack(({wrt},))" if len(m.wrt_names) == 1 else f"_pack(({wrt}))",
                                None))
    named = {d for w in m.program.wrt if isinstance(w, (sp.MatrixSymbol, sp.IndexedBase)) for d in w.shape
             if not d.is_Integer}
    if len(named) > 1 and data:  # theta's length gives one named size: the data give the others
        unpack = Function("unpack", "The WRT values from theta, each in its own shape (pack's inverse), "
                          "their sizes read off the data as the flat forms read them.",
                          [m.theta] + data, [], f"_unpack({m.theta}, {_flat_shapes(m, m.theta)})", None)
    else:
        unpack = Function("unpack", "The WRT values from theta, each in its own shape (pack's inverse).",
                          [m.theta], [], f"_unpack({m.theta}, {_flat_shapes(m, m.theta, data=False)})", None)
    m.functions.append(unpack)
    direct = _lane_vector_flat(m)
    if direct is not None:  # theta is the parameters' lane vector: its entries are the WRT values
        unpack.returns = f"_flat_theta({m.theta}, {len(m.program.wrt)}).tolist()"
        m.functions.append(direct)
        return
    m.helpers.add("_unpack")
    call = ", ".join([_unpacked(m, m.theta)] + data)
    m.helpers.add("_flat_value_and_grad")
    m.functions.append(Function(
        "value_and_grad_flat", "(objective as a float, gradient as one flat vector) at theta = pack(*WRT), "
        "as scipy.optimize.minimize(fun, theta0, jac=True, args=DATA) calls it.",
        [m.theta] + data, [], f"_flat_value_and_grad(_value_and_grad({call}))", None))


def hvp_flat_output(m: ModuleBuilder) -> None:
    doc = "The Hessian of the objective at theta times the flat vector p, as a flat vector " \
          "(scipy.optimize.minimize's hessp(theta, p, *DATA))."
    wrt = tuple(m.arg_nodes[w] for w in m.program.wrt)
    directions = tuple(m.directions[w] for w in m.program.wrt)
    every_product = ", ".join(m.namer.names[("hvp", w)] for w in m.program.wrt)
    direct = _lane_flat(m, "hvp_flat", doc, [m.theta, m.p], {wrt: m.theta, directions: m.p},
                        lambda signals: signals.get(every_product))
    if direct is not None:
        m.functions.append(direct)
        return
    data = m.data_names
    m.helpers.add("_unpack")
    call = ", ".join([_unpacked(m, m.theta)] + data +
                     [f'*_unpack({m.p}, {_flat_shapes(m, m.theta)}, {python_string(m.p)})'])  # theta's sizes
    m.functions.append(Function("hvp_flat", doc, [m.theta, m.p] + data, [], f"_pack(_hvp({call})[2])", None))


# structural non-zeros of the largest Hessian a module is given (its index arrays are built at import)
HESSIAN_MAX_ENTRIES = 5 * 10 ** 7
# a Hessian of scalar parameters with at most this many colours, in at most this many
# statements (and, re-rolled, this many entries), is written out as straight-line code
# (_direct_hessian)
DIRECT_HESSIAN_COLOURS, DIRECT_HESSIAN_STATEMENTS, DIRECT_HESSIAN_LANE_ENTRIES = 16, 2000, 128
# a Jacobian of at most this many entries (residuals x parameters) is written out entry by entry;
# a larger one is read off its structure, one residuals_jvp per colour of columns
DIRECT_JACOBIAN_ENTRIES = 4096


def hessian_output(m: ModuleBuilder) -> None:
    """hessian, hessian_coo and hessian_flat: the Hessian of the objective (summed over the batch)
    from as few Hessian-vector products as its structure allows (backpropc.sparsity), or over
    named sizes, from families of entries (backpropc.stencil) or a product per column."""
    program = m.program
    m.add(hvp_output)
    m.add(hvp_flat_output)
    sizes = _numeric_sizes(m)
    if sizes is None:
        if not _stencil_hessian(m):
            _dense_hessian_by_products(m)
        return
    # a re-rolled model's terms are read one by one: over its lanes every entry would look
    # coupled to every other
    rerolled = m.term_by_term is not None and all(size == 1 for size in sizes)
    side = ModuleBuilder(m.term_by_term(), m.reduction) if rerolled else m
    hv = side.second_order
    rows = [hv.get(g) for g in side.backward.grads]
    n = sum(sizes)
    try:
        pattern = hessian_pattern(side.graph, rows, [side.directions[w] for w in program.wrt], sizes,
                                  HESSIAN_MAX_ENTRIES)
    except HessianTooLarge as too_many:
        raise ModelError(f"the Hessian of these {n:,} parameters has {too_many.args[0]:.1e} structural non-zeros, "
                         f"more than a module indexes ({HESSIAN_MAX_ENTRIES:.0e}); ask for derivatives=('hvp',) "
                         f"and minimise with hvp_flat (Newton-CG, trust-krylov)") from None
    if pattern is None:  # dense: a product per column, and the entries as ranges, not listed
        colours = range(n)
        m.constants["HESSIAN_ROWS"] = f"np.repeat(np.arange({n}), {n})"
        m.constants["HESSIAN_COLS"] = f"np.tile(np.arange({n}), {n})"
        m.constants["HESSIAN_COLOURS"] = f"np.arange({n})"
    else:  # written as runs of rows, so that a band is a line whatever n is
        colours = colour_columns(pattern)
        offsets = [tuple(j - i for j in cols) for i, cols in enumerate(pattern)]
        m.constants["HESSIAN_ROW_RUNS"] = f"{runs(offsets)!r}  # (repeats, rows): a row's columns less its index"
        m.constants["HESSIAN_COLOUR_RUNS"] = f"{runs(colours)!r}  # (repeats, colours of columns)"
        # integer arrays, as _hessian_coo indexes with them (not tuples to convert on every call)
        m.tables["HESSIAN_ROWS, HESSIAN_COLS, HESSIAN_COLOURS"] = \
            "_pattern(HESSIAN_ROW_RUNS, HESSIAN_COLOUR_RUNS)"
        m.helpers.add("_pattern")
    m.ops["hessian_products"] = max(colours, default=-1) + 1
    data = m.data_names
    args = ", ".join(m.arg_names)
    # (a re-rolled model reads each entry out of a lane vector on its own: only a few of them)
    nonzeros = n * n if pattern is None else sum(map(len, pattern))
    if not any(isinstance(w, sp.IndexedBase) for w in program.wrt) and \
            m.ops["hessian_products"] <= DIRECT_HESSIAN_COLOURS and \
            (not rerolled or nonzeros <= DIRECT_HESSIAN_LANE_ENTRIES) and \
            _direct_hessian(m, [list(range(n))] * n if pattern is None else pattern, list(colours), sizes):
        first = []
        coo = f"HESSIAN_ROWS, HESSIAN_COLS, _hessian_values({args})"
        flat = f"(HESSIAN_ROWS, HESSIAN_COLS, _hessian_values({', '.join([_unpacked(m, m.theta)] + data)}))"
    else:  # one flat Hessian-vector product per colour: hvp_flat, which a re-rolled model
        # computes straight from the flat vectors
        first, product = _hvp_products(m)
        coo = flat = f"_hessian_coo({product}, {m.theta}, (HESSIAN_ROWS, HESSIAN_COLS, HESSIAN_COLOURS))"
    _hessian_functions(m, "of its structural non-zeros (HESSIAN_ROWS, HESSIAN_COLS)", first, coo, flat, str(n), str(n))


def _hessian_functions(m: ModuleBuilder, what: str, sections: list, coo: str, flat: str, size: str,
                       flat_size: str) -> None:
    """hessian_coo(*args) (its `sections`, then `coo`), hessian(*args) and hessian_flat(theta, *data)
    (`flat`, the coo form at theta), the dense ones `size` and `flat_size` square."""
    m.helpers.add("_dense")
    m.functions.append(Function(
        "hessian_coo", f"The Hessian of the objective over pack's flat vector, as (rows, columns, values) {what}.",
        m.arg_names, sections, coo, None))
    m.functions.append(Function(
        "hessian", "The Hessian of the objective over pack's flat vector, as a dense symmetric matrix.",
        m.arg_names, [], f"_dense(hessian_coo({', '.join(m.arg_names)}), {size})", None))
    m.functions.append(Function(
        "hessian_flat", "The dense Hessian at theta = pack(*WRT) (scipy.optimize.minimize's hess(theta, *DATA)).",
        [m.theta] + m.data_names, [], f"_dense({flat}, {flat_size})", None))


def _hvp_products(m: ModuleBuilder) -> tuple[list, str]:
    """(the statement packing theta from the arguments, a function p -> the Hessian at theta times p)."""
    m.helpers |= {"_hessian_coo", "_pack"}
    first = [("", [Statement(m.theta, -1, "forward", code=f"_pack({tuple_source(m.wrt_names)})")])]
    return first, f"lambda {m.p}: hvp_flat({', '.join([m.theta, m.p] + m.data_names)})"


def _named_size(m: ModuleBuilder) -> str:
    """The length of the flat vector, as code reading it off the WRT arguments."""
    return " + ".join(f"np.size({a})" if isinstance(w, (sp.MatrixSymbol, sp.IndexedBase)) else "1"
                      for a, w in zip(m.wrt_names, m.program.wrt))


def _dense_hessian_by_products(m: ModuleBuilder) -> None:
    """hessian_coo, hessian and hessian_flat of a model of named size whose Hessian is not made of
    families: every entry, one Hessian-vector product per column, for the size of the call (the
    structure of the log of a Sum or of a cluster's pairs; for a sparse one of another kind, a
    numeric shape has its structure read entry by entry)."""
    first, product = _hvp_products(m)
    _hessian_functions(m, "(dense: one Hessian-vector product per column, for the sizes of the call)", first,
                       f"_hessian_coo({product}, {m.theta})", f"_hessian_coo({product}, {m.theta})", _named_size(m),
                       f"np.size({m.theta})")


def _stencil_hessian(m: ModuleBuilder) -> bool:
    """hessian_coo, hessian and hessian_flat of an indexed model of named size, from the families
    of entries backpropc.stencil finds: their values as straight-line code over the range, their
    indices built at run time from n. False when the model is not of that kind."""
    program, graph = m.program, m.graph
    found = families(m)
    if found is None:
        return False
    names, wanted = dict(m.leaf_names), dict(m.step_names)
    order = {a: k for k, a in enumerate(dict.fromkeys(a for f in found for a in (f.row, f.col)))}
    for f in found:  # h_k_j: the second derivative of accesses k and j
        if not graph[f.value].is_leaf and f.value not in wanted:
            wanted[f.value] = f"h_{order[f.row]}_{order[f.col]}"
    values = list(dict.fromkeys(f.value for f in found))
    schedule = Schedule(graph, [], wanted, m.namer, program.n_forward, values)
    statements = m.lines(schedule, names)
    batch = f"_batch_shape({m.batch_args()})"
    _mean_seed(m, statements, names, batch)
    rows = [f"({f.row.wrt}, {index_code(m, f.row, names)}, {f.col.wrt}, {index_code(m, f.col, names)}, "
            f"{m.ref(f.value, names)}, {f.lane}, {f.mirrored})" for f in found]
    m.helpers |= {"_stencil_coo", "_batch_shape"}
    m.ops["hessian"] = schedule.ops
    _hessian_functions(
        m, "of its structural non-zeros: families of entries over each Sum's range, their indices built for this n",
        [("", statements)], f"_stencil_coo({tuple_source(m.wrt_names)}, {tuple_source(rows)}, {batch})",
        f"hessian_coo({m.flat_call()})", _named_size(m), f"np.size({m.theta})")
    return True


def _mean_seed(m: ModuleBuilder, statements: list, names: dict, batch: str) -> None:
    """With the mean, the loss's signal 1/N first, as value_and_grad sets it (`batch`: its shape, as code)."""
    if m.reduction == "mean":
        m.helpers.add("_batch_size")
        statements.insert(0, Statement(names[m.seed], m.seed, "backward", code=f"1/_batch_size({batch})",
                                       _rhs=_symbol("1/N")))


def _direct_hessian(m: ModuleBuilder, pattern: list[list[int]], colours: list[int], sizes: list[int]) -> bool:
    """hessian_values(*args) for scalar and matrix parameters, as straight-line code: one tangent
    sweep per colour with the directions set to 0 and 1 (so that they fold away; a matrix's
    direction is a matrix of them), the forward and backward passes shared, and each entry
    computed once for both triangles. False when that code would be long (then hessian_coo
    calls hvp_flat once per colour)."""
    program, graph = m.program, m.graph
    wrt_nodes = [m.arg_nodes[w] for w in program.wrt]
    grads, zero = m.backward.grads, graph.const(0)
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    owner = [(k, e) for k, size in enumerate(sizes) for e in range(size)]  # flat index -> (wrt, entry)
    products = []
    for c in range(max(colours, default=-1) + 1):
        seeds = {}
        for w, node, start, size in zip(program.wrt, wrt_nodes, starts, sizes):
            picked = [int(colours[j] == c) for j in range(start, start + size)]
            if node is None or not any(picked):
                continue
            seeds[node] = graph.const(1) if not isinstance(w, sp.MatrixSymbol) else \
                graph.apply(entries_op, *[graph.const(v) for v in picked + [int(d) for d in w.shape]])
        along = tangents(graph, grads, seeds)
        products.append([zero if along.get(g) is None else along[g] for g in grads])  # (node 0 is a node)
    graph.current_origin = None

    def row(c: int, i: int) -> int:
        """Entry i of the flat product of colour c."""
        k, e = owner[i]
        w, t = program.wrt[k], products[c][k]
        if not isinstance(w, sp.MatrixSymbol) or t == zero:
            return t
        cols = int(w.shape[1])
        return graph.apply(entry, t, graph.const(e // cols), graph.const(e % cols))

    # entry (i, j) is row i of column j's product: for i <= j and for its mirror image alike
    entries = [row(colours[max(i, j)], min(i, j)) for i, cols in enumerate(pattern) for j in cols]
    names, wanted = dict(m.leaf_names), dict(m.step_names)
    for (i, j), e in zip([(i, j) for i, cols in enumerate(pattern) for j in cols], entries):
        if i < j and not graph[e].is_leaf and e not in wanted:  # read twice: named once, h_i_j
            wanted[e] = f"h_{i}_{j}"
    schedule = Schedule(graph, [], wanted, m.namer, program.n_forward, list(dict.fromkeys(entries)))
    statements = m.lines(schedule, names)
    if len(statements) > DIRECT_HESSIAN_STATEMENTS:
        return False
    scalar = m.scalar_body(statements, names, None, hvps=[(None, e) for e in entries])
    batch = f"_batch_shape({m.batch_args()})"
    _mean_seed(m, statements, names, batch)
    values = tuple_source(m.ref(e, names) for e in entries) if entries else "()"
    m.helpers |= {"_summed_entries", "_batch_shape"}
    m.ops["hessian"] = schedule.ops
    m.functions.append(Function(
        "hessian_values", "The Hessian's structural non-zeros in the order of HESSIAN_ROWS and "
        "HESSIAN_COLS, summed over the batch: the passes, then a tangent pass per colour of columns.",
        m.arg_names, [("", statements)], f"_summed_entries({values}, {batch}, {tuple_source(m.arg_names)})",
        '"total"', scalar and (scalar[0], f"np.array({scalar[1]})")))
    return True


def residuals_output(m: ModuleBuilder) -> None:
    """residuals(*args), shape batch + (m,), and residuals_flat(theta, *data): every example's
    residuals stacked into one vector, as scipy.optimize.least_squares calls it. A residual over a
    range gives a row per index."""
    program, graph = m.program, m.graph
    if not program.residuals:
        return
    names, wanted = _residual_names(m)
    schedule = Schedule(graph, program.residuals, wanted, m.namer, program.n_forward)
    statements = m.lines(schedule, names)
    values = [m.ref(r, names) for r in program.residuals]
    shape = f"_batch_shape({m.batch_args()})"
    m.helpers.add("_batch_shape")
    m.functions.append(Function(
        "residuals", "The residuals of each example, shape batch + (number of residuals,).",
        m.arg_names, [("", statements)], _rows(m, values, _residual_kinds(m), shape), '"example"'))
    data, call = m.data_names, m.flat_call()
    doc = "Every example's residuals in one flat vector, at theta = pack(*WRT) " \
          "(scipy.optimize.least_squares(fun, theta0, jac=jacobian_flat, args=DATA))."
    wrt = tuple(m.arg_nodes[w] for w in program.wrt)
    # re-rolled without data: theta is the lane vector, and there is no batch
    direct = _lane_flat(m, "residuals_flat", doc, [m.theta], {wrt: m.theta},
                        lambda signals: f"np.ravel({_rows(m, values, _residual_kinds(m), '()')})")
    m.functions.append(direct or Function("residuals_flat", doc, [m.theta] + data, [],
                                          f"np.ravel(_residuals({call}))", None))


def _residual_names(m: ModuleBuilder) -> tuple[dict, dict]:
    """(the arguments' names, the names wanted for nodes: the steps, and r1, r2, ... for the
    residuals that are not one of them)."""
    graph = m.graph
    names = {node: name for node, name in m.leaf_names.items() if graph[node].op == SYMBOL}
    wanted = dict(m.step_names)
    for k, r in enumerate(m.program.residuals):
        if r not in wanted and not graph[r].is_leaf:
            wanted[r] = m.namer.name(("node", r), f"r{k + 1}")
    return names, wanted


def _residual_kinds(m: ModuleBuilder) -> list[str]:
    """Each residual's rows: "one", or "range" for a residual per index of a range."""
    return ["range" if isinstance(m.graph.shapes[r], (Domain, Lanes)) else "one" for r in m.program.residuals]


def _tangent_kinds(m: ModuleBuilder, kinds: list[str], tangents_: list[int]) -> list[str]:
    """The rows of the residuals' tangents: a residual over a range whose tangent is the same at
    every index is "spread" over as many rows as the residual has."""
    return [kind if kind == "one" or isinstance(m.graph.shapes[t], (Domain, Lanes)) else "spread"
            for kind, t in zip(kinds, tangents_)]


def _rows(m: ModuleBuilder, values: list[str], kinds: list[str], shape: str, residuals: str = "") -> str:
    """The code that sets per-example residuals (or tangents) side by side along a last axis."""
    if all(kind == "one" for kind in kinds):
        m.helpers.add("_stack")
        return f"_stack({tuple_source(values)}, {shape})"
    m.helpers.add("_residual_rows")
    return f"_residual_rows({tuple_source(values)}, {tuple_source(map(python_string, kinds))}, {shape}{residuals})"


def residuals_jvp_output(m: ModuleBuilder) -> None:
    """residuals_jvp(*args, *directions): the residuals of each example and their derivatives
    along the directions (the Jacobian times them), by one tangent sweep."""
    program, graph = m.program, m.graph
    directions = m.directions
    seeds = {m.arg_nodes[w]: d for w, d in directions.items() if m.arg_nodes[w] is not None}
    found = tangents(graph, program.residuals, seeds)
    zero = graph.const(0)
    names, wanted = _residual_names(m)
    ts = [found.get(r, zero) for r in program.residuals]
    kinds = _residual_kinds(m)
    tangent_kinds = _tangent_kinds(m, kinds, ts)
    tangent_of = {t: v for v, t in sorted(found.items())}
    schedule = Schedule(graph, program.residuals, wanted, m.namer, program.n_forward, ts,
                        tangent_of=tangent_of)
    statements = m.lines(schedule, names)
    values = [m.ref(r, names) for r in program.residuals]
    shape = f"_batch_shape({m.batch_args()})"
    m.helpers.add("_batch_shape")
    rows = _rows(m, values, kinds, shape)
    jvp = _rows(m, [m.ref(t, names) for t in ts], tangent_kinds, shape,
                f", {tuple_source(values)}" if "spread" in tangent_kinds else "")
    m.functions.append(Function(
        "residuals_jvp", "(residuals, their derivative along the directions: the Jacobian times them), "
        "each shape batch + (number of residuals,); the directions are one array per WRT, shaped like it.",
        m.arg_names + [m.leaf_names[directions[w]] for w in program.wrt], [("", statements)],
        f"{rows}, {jvp}", '("example", "example")'))


def jacobian_output(m: ModuleBuilder) -> None:
    """jacobian(*args): per example, d residual_k / d wrt_j, shape batch + (m, n); reverse mode (one
    sweep per residual) when there are fewer residuals than parameters, forward mode (one sweep
    per parameter) otherwise. With a residual over a range: residuals_jvp, and the Jacobian by
    forward mode, straight-line for scalar parameters, else one residuals_jvp per entry of the
    parameters. jacobian_flat stacks the examples' rows."""
    program = m.program
    if not program.residuals:
        raise ModelError("a Jacobian needs residuals: Model(..., residuals=[r1, r2, ...])")
    arrays = [w for w in program.wrt if isinstance(w, (sp.MatrixSymbol, sp.IndexedBase))]
    m.add(residuals_output)
    rows = "range" in _residual_kinds(m)  # a residual over a range, or a re-rolled run of them
    if rows:
        m.add(residuals_jvp_output)
    ranges = any(isinstance(m.graph.shapes[r], Domain) for r in program.residuals)
    # sparse where the structure allows (families over a range, coloured columns), else dense
    sparse = _jacobian_by_families(m) if ranges and arrays else not ranges and _jacobian_by_colours(m)
    if not sparse and rows and not arrays:
        _jacobian_over_ranges(m)
    elif not sparse and rows:
        _jacobian_by_tangents_function(m)
    elif not sparse:
        _jacobian_of_entries(m, arrays)
    data, call = m.data_names, m.flat_call()
    m.functions.append(Function(
        "jacobian_flat", "The Jacobian of residuals_flat at theta = pack(*WRT): one row per residual "
        "of each example, one column per entry of theta.",
        [m.theta] + data, [], f"_flat_jacobian(_jacobian({call}))", None))
    m.helpers.add("_flat_jacobian")
    if not sparse:  # every entry of the dense Jacobian
        m.helpers.add("_coo")
        m.functions.append(Function(
            "jacobian_coo", "jacobian_flat's matrix as (rows, columns, values): every entry, as the dense "
            "Jacobian has them.", m.arg_names, [], f"_coo(_flat_jacobian(_jacobian({', '.join(m.arg_names)})))",
            None))


def _jacobian_by_tangents_function(m: ModuleBuilder) -> None:
    """jacobian(*args) as one residuals_jvp per entry of the parameters, at run time."""
    m.helpers.add("_jacobian_by_tangents")
    m.functions.append(Function(
        "jacobian", "Per example, d residual_k / d WRT_j, shape batch + (residuals, WRT) (forward mode: one "
        "tangent sweep of residuals_jvp per entry of WRT).", m.arg_names, [],
        f"_jacobian_by_tangents(_residuals_jvp, {tuple_source(m.arg_names)}, {_argument_shapes(m)})", '"example"'))


def _jacobian_from_coo(m: ModuleBuilder, size: str) -> None:
    """jacobian(*args) filled from jacobian_coo's entries (`size`: the flat vector's length, as code)."""
    args = ", ".join(m.arg_names)
    m.helpers.add("_dense")
    m.functions.append(Function(
        "jacobian", "Per example, d residual_k / d WRT_j, shape batch + (residuals, WRT), from jacobian_coo's "
        "entries.", m.arg_names, [], f"_dense(jacobian_coo({args}), {size}, np.shape(_residuals({args})))",
        '"example"'))


def _jacobian_by_families(m: ModuleBuilder) -> bool:
    """jacobian_coo(*args) and jacobian(*args) of residuals over ranges whose indexed parameters are
    read through windows, from the families of entries backpropc.stencil finds: their values as
    straight-line code over the range, their indices built for the sizes of the call (a sparse
    Jacobian costs its non-zeros, not a tangent sweep per parameter). False when the model is not
    of that kind."""
    program, graph = m.program, m.graph
    found = jacobian_families(m)
    if found is None:
        return False
    names, wanted = _residual_names(m)
    order = {a: k for k, a in enumerate(dict.fromkeys(c.access for c in found))}
    for c in found:  # j_k_a: residual k's derivative along access a
        if not graph[c.value].is_leaf and c.value not in wanted:
            wanted[c.value] = f"j_{c.residual}_{order[c.access]}"
    # a residual's rows: the length of an entry over its range, else of the residual itself
    kinds = _residual_kinds(m)
    over = {c.residual: c.value for c in reversed(found) if c.lane}
    measured = [over.get(k, r) if kind == "range" else None for k, (r, kind) in enumerate(zip(program.residuals, kinds))]
    roots = [r for k, r in enumerate(measured) if r is not None and k not in over]
    schedule = Schedule(graph, roots, wanted, m.namer, program.n_forward, list(dict.fromkeys(c.value for c in found)))
    statements = m.lines(schedule, names)
    lengths = tuple_source("1" if r is None else f"np.shape({m.ref(r, names)})[-1]" for r in measured)
    columns = [f"({c.residual}, {c.access.wrt}, {index_code(m, c.access, names)}, {m.ref(c.value, names)}, {c.lane})"
               for c in found]
    m.helpers |= {"_jacobian_coo", "_batch_shape"}
    m.ops["jacobian"] = schedule.ops
    m.functions.append(Function(
        "jacobian_coo", "jacobian_flat's matrix as (rows, columns, values) of its structural non-zeros: "
        "families of entries over each residual's range, their indices built for these sizes.", m.arg_names,
        [("", statements)], f"_jacobian_coo({tuple_source(m.wrt_names)}, {lengths}, "
        f"{tuple_source(columns) if columns else '()'}, _batch_shape({m.batch_args()}))", None))
    _jacobian_from_coo(m, _named_size(m))
    return True


def _jacobian_over_ranges(m: ModuleBuilder) -> None:
    """jacobian(*args) of residuals over ranges with scalar parameters, as straight-line code: one
    tangent sweep per parameter after one forward pass, each a column whose rows are laid out as
    residuals lays them out."""
    program, graph = m.program, m.graph
    names, wanted = _residual_names(m)
    zero, kinds = graph.const(0), _residual_kinds(m)
    columns = []
    for w in program.wrt:
        node = m.arg_nodes[w]
        along = tangents(graph, program.residuals, {node: graph.const(1)}) if node is not None else {}
        columns.append([along.get(r, zero) for r in program.residuals])
    graph.current_origin = None
    column_kinds = [_tangent_kinds(m, kinds, column) for column in columns]
    # a derivative that is the same at every index is spread over as many rows as its residual has
    spread = [any(ck[k] == "spread" for ck in column_kinds) for k in range(len(kinds))]
    schedule = Schedule(graph, [r for r, needed in zip(program.residuals, spread) if needed], wanted, m.namer,
                        program.n_forward, [t for column in columns for t in column])
    statements = m.lines(schedule, names)
    batch = m.namer.name(("jacobian", "batch"), "batch")
    statements.insert(0, Statement(batch, -1, "forward", code=f"_batch_shape({m.batch_args()})"))
    values = tuple_source(m.ref(r, names) if needed else "None" for r, needed in zip(program.residuals, spread))
    codes = [_rows(m, [m.ref(t, names) for t in column], ck, batch, f", {values}" if "spread" in ck else "")
             for column, ck in zip(columns, column_kinds)]
    m.helpers.add("_batch_shape")
    m.ops["jacobian"] = schedule.ops
    m.functions.append(Function(
        "jacobian", "Per example, d residual_k / d WRT_j, shape batch + (residuals, WRT) (forward mode: one "
        "tangent sweep per parameter).", m.arg_names, [("", statements)],
        f"np.stack({tuple_source(codes)}, axis=-1)", '"example"'))


def _jacobian_by_colours(m: ModuleBuilder) -> bool:
    """jacobian_coo(*args) and jacobian(*args) of many residuals that each read few parameters
    (a system of equations written in a loop): the structural non-zeros read off the graph
    (backpropc.sparsity; a re-rolled model's term by term, as for its Hessian), their columns
    coloured so that one tangent sweep of residuals_jvp fills a colour. False for a Jacobian of
    at most DIRECT_JACOBIAN_ENTRIES entries (written out) or parameters of named size."""
    program = m.program
    sizes = _numeric_sizes(m)
    if sizes is None:
        return False
    shapes = [m.graph.shapes[r] for r in program.residuals]
    n, count = sum(sizes), sum(s.count if isinstance(s, Lanes) else 1 for s in shapes)  # rows of an example
    if n * count <= DIRECT_JACOBIAN_ENTRIES:
        return False
    side = ModuleBuilder(m.term_by_term(), m.reduction) if m.term_by_term is not None else m
    pattern = jacobian_pattern(side.graph, side.program.residuals, [side.arg_nodes[w] for w in program.wrt], sizes)
    if pattern is None or sum(map(len, pattern)) == n * count:  # dense: a sweep per column
        pattern = [list(range(n))] * count
    colours = colour_columns(pattern, n)
    m.add(residuals_jvp_output)
    offsets = [tuple(j - i for j in cols) for i, cols in enumerate(pattern)]
    m.constants["JACOBIAN_ROW_RUNS"] = f"{runs(offsets)!r}  # (repeats, rows): a row's columns less its index"
    m.constants["JACOBIAN_COLOUR_RUNS"] = f"{runs(colours)!r}  # (repeats, colours of columns)"
    m.tables["JACOBIAN_ROWS, JACOBIAN_COLS, JACOBIAN_COLOURS"] = "_pattern(JACOBIAN_ROW_RUNS, JACOBIAN_COLOUR_RUNS)"
    m.helpers |= {"_pattern", "_jacobian_by_colours"}
    m.ops["jacobian_products"] = max(colours, default=-1) + 1
    m.functions.append(Function(
        "jacobian_coo", "jacobian_flat's matrix as (rows, columns, values) of its structural non-zeros "
        "(JACOBIAN_ROWS, JACOBIAN_COLS for one example): one residuals_jvp per colour of columns "
        "(JACOBIAN_COLOURS).", m.arg_names, [], f"_jacobian_by_colours(_residuals_jvp, {tuple_source(m.arg_names)}, "
        f"{_wrt_shapes(m)}, (JACOBIAN_ROWS, JACOBIAN_COLS, JACOBIAN_COLOURS))", None))
    _jacobian_from_coo(m, str(n))
    return True


def _jacobian_of_entries(m: ModuleBuilder, arrays: list) -> None:
    """jacobian(*args) as straight-line code, each entry a node: per residual by reverse mode or per
    parameter by forward mode, whichever takes fewer sweeps."""
    program, graph = m.program, m.graph
    wrt_nodes = [m.arg_nodes[w] for w in program.wrt]
    zero = graph.const(0)
    # a matrix or indexed parameter's signal gives all its columns at once: reverse mode
    if arrays or len(program.residuals) <= len(wrt_nodes):
        entries = []
        for r in program.residuals:
            back = backprop(program, graph.const(1), root=r)
            entries.append([back.signals.get(w, zero) if w is not None else zero for w in wrt_nodes])
        mode = "reverse mode: one backward sweep per residual"
    else:
        columns = []
        for w in wrt_nodes:
            t = tangents(graph, program.residuals, {w: graph.const(1)}) if w is not None else {}
            columns.append([t.get(r, zero) for r in program.residuals])
        entries = [list(row) for row in zip(*columns)]
        mode = "forward mode: one tangent sweep per parameter"
    graph.current_origin = None
    names = {node: name for node, name in m.leaf_names.items() if graph[node].op == SYMBOL}
    flat = [e for row in entries for e in row]
    schedule = Schedule(graph, [], dict(m.step_names), m.namer, program.n_forward, flat)
    statements = m.lines(schedule, names)
    rows = ", ".join("(" + ", ".join(m.ref(e, names) for e in row) + ",)" for row in entries)
    layout = f", {_argument_shapes(m)}" if arrays else ""  # an array's signal fills a column per entry
    m.helpers |= {"_assemble_jacobian", "_batch_shape"}
    m.ops["jacobian"] = schedule.ops
    m.functions.append(Function(
        "jacobian", f"Per example, d residual_k / d WRT_j, shape batch + (residuals, WRT) ({mode}).",
        m.arg_names, [("", statements)], f"_assemble_jacobian(({rows},), _batch_shape({m.batch_args()}){layout}, like=({', '.join(m.arg_names)},))",
        '"example"'))


def _unpacked(m: ModuleBuilder, vector: str) -> str:
    """The WRT values from a flat vector, as call arguments: Python floats straight from the
    vector when every WRT is a scalar."""
    if not any(isinstance(w, (sp.MatrixSymbol, sp.IndexedBase)) for w in m.program.wrt):
        m.helpers.add("_unpack_floats")
        return f"*_unpack_floats({vector}, {len(m.program.wrt)})"
    return f"*_unpack({vector}, {_flat_shapes(m, vector)})"


def _numeric_sizes(m: ModuleBuilder) -> list[int] | None:
    """Each WRT's number of entries, or None when a matrix or indexed parameter has a named size."""
    arrays = (sp.MatrixSymbol, sp.IndexedBase)
    if any(isinstance(w, arrays) and not all(d.is_Integer for d in w.shape) for w in m.program.wrt):
        return None
    return [int(sp.prod(w.shape)) if isinstance(w, arrays) else 1 for w in m.program.wrt]


def _argument_shapes(m: ModuleBuilder) -> str:
    """The WRT shapes as code: numbers where the model has them, else read off the arguments."""
    if _numeric_sizes(m) is not None:
        return _wrt_shapes(m)
    return tuple_source(f"np.shape({a})" if isinstance(w, (sp.MatrixSymbol, sp.IndexedBase)) else "()"
                        for a, w in zip(m.wrt_names, m.program.wrt))


def _flat_shapes(m: ModuleBuilder, vector: str, data: bool = True) -> str:
    """The WRT shapes for reading the flat `vector`, as code: with named dimensions, their sizes
    read at call time off the data arguments that have them (when the function has the `data`),
    and the one left off the vector's length (_named_shapes)."""
    shapes = _wrt_shapes(m)
    wanted = {d for w in m.program.wrt if isinstance(w, (sp.MatrixSymbol, sp.IndexedBase))
              for d in w.shape if not d.is_Integer}
    if not wanted:
        return shapes
    found = {}
    for name, s in zip(m.arg_names, m.program.args):
        if s in m.program.wrt or not isinstance(s, (sp.MatrixSymbol, sp.IndexedBase)) or not data:
            continue
        for axis, d in enumerate(s.shape):  # counted from the end: a batch of data leads
            if d in wanted and str(d) not in found:
                found[str(d)] = f"np.shape({name})[{axis - len(s.shape)}]"
    m.helpers.add("_named_shapes")
    named = ", {" + ", ".join(f"{python_string(d)}: {code}" for d, code in sorted(found.items())) + "}" if found else ""
    return f"_named_shapes({shapes}, {vector}{named})"


def _wrt_shapes(m: ModuleBuilder) -> str:
    def dim(d):
        return str(int(d)) if d.is_Integer else python_string(str(d))
    shapes = [f"({dim(w.shape[0])}, {dim(w.shape[1])})" if isinstance(w, sp.MatrixSymbol)
              else tuple_source(dim(d) for d in w.shape) if isinstance(w, sp.IndexedBase) else "()"
              for w in m.program.wrt]
    if len(shapes) > 8 and all(shape == "()" for shape in shapes):  # many scalars: one repeat
        return f"((),) * {len(shapes)}"
    return tuple_source(shapes)


def tuple_source(items) -> str:
    items = list(items)
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


DERIVATIVES = {
    "grad": (forward_output, value_and_grad_output, grad_output, flat_output, residuals_output),
    "hvp": (hvp_output, hvp_flat_output),
    "hessian": (hessian_output,),
    "jacobian": (jacobian_output,),
}
