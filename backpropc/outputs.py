"""What a generated module contains: a list of function descriptions, one builder each.

A builder takes the `ModuleBuilder` (the program, its names, the shared derivative passes) and
adds `Function`s: name, parameters, statements in sections, the returned expression, and how its
results combine over the chunks of a large batch (`combine`, see runtime.core._in_chunks). One
template prints any list of them. `DERIVATIVES` maps each choice of `compile(derivatives=...)`
to its builders: adding an output function is one builder and one entry there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import sympy as sp

from .emit import IRPrinter, Schedule, Statement
from .graph import SYMBOL, closure
from .model import Program
from .naming import Namer, comment_text
from .ops.matrix import matmul, transpose
from .reverse import Backward, backprop

# A "from" comment quotes its forward statement when that fits, else names it.
COMMENT_WIDTH = 60
BACKWARD_HEADER = "backward pass: v_bar is the error signal d(objective)/dv"


@dataclass
class Function:
    """One function of a generated module."""

    name: str
    doc: str
    params: list[str]
    sections: list[tuple[str, list[Statement]]]   # (header comment or "", statements)
    returns: str
    combine: str | None                            # chunk combination; None: it delegates
    helpers: set[str] = field(default_factory=set)

    @cached_property
    def width(self) -> int:
        """The column where the statements' comments start."""
        lines = [f"{s.name} = {s.code}" for _, block in self.sections for s in block if s.comment]
        return min(max(map(len, lines), default=0), 56)


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
        self.printer = IRPrinter(graph)
        self.math = IRPrinter(graph, math=True)
        self._statements = 0
        self.added: list = []
        self.forward_statements: list[Statement] = []

    def add(self, output) -> None:
        """Add the functions of one builder (once, however many derivatives ask for it)."""
        if output not in self.added:
            self.added.append(output)
            output(self)

    def live_arrays(self) -> int:
        return self._statements + len(self.program.inputs)

    # ---- the batch and the objective ----------------------------------------------------------
    def batch_args(self) -> str:
        """The arguments whose broadcast shape is the batch (a matrix's trailing axes are its own)."""
        return ", ".join(f"{a}[..., 0, 0]" if isinstance(s, sp.MatrixSymbol) else a
                         for a, s in zip(self.arg_names, self.program.args))

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

    def lines(self, schedule: Schedule, names: dict[int, str], aliases=(), signal_of=None,
              senders=None) -> list[Statement]:
        """Statements in order, printed; `names` is updated as each one names its node."""
        order = [(float(i), None, i, None) for i in schedule.own] + list(aliases)
        order.sort(key=lambda item: item[0])
        statements: list[Statement] = []
        for _, alias_name, node, step in order:
            section = "forward" if node < schedule.n_forward and alias_name is None else "backward"
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
                math = "" if section == "backward" else self.math.print(node, names)
            else:
                name, code, math = alias_name, names[node], names[node]
                origins = tuple(senders.get(step, ()))
                rhs = _symbol(names[node])
            statements.append(Statement(name, node, section, origins, code, math=math, _rhs=rhs))
            if not schedule.graph[node].is_leaf:  # arguments keep their own names
                names[node] = name
        self._statements = max(self._statements, len(statements))
        owner = schedule.inlined_into()
        forward_by_node = {s.node: s for s in statements if s.section == "forward"}
        for statement in statements:  # comments may point at later forward statements
            statement.comment = self.provenance(statement.origins, owner, forward_by_node)
        self._owner, self._forward_by_node = owner, forward_by_node
        return statements

    def provenance(self, origins, owner, forward_by_node) -> str:
        """'from z = w*x + b': the forward statements whose rules produced a backward line. An
        origin written inside another statement (a shared `-lse` in ell1, ell2 and ell3) stands
        for the statements that sent it its own signal."""
        senders = self.backward.senders if "backward" in self.__dict__ else {}
        sources, stack, seen = [], list(reversed(origins)), set()
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            s = forward_by_node.get(owner.get(v, v))
            if v not in forward_by_node and senders.get(v) and s is not None and s.node != v:
                stack.extend(reversed(senders[v]))
            elif s is not None and s not in sources:
                sources.append(s)
        sources.sort(key=lambda s: s.node)
        if len(sources) == 1 and len(sources[0].name) + len(sources[0].math) + 3 <= COMMENT_WIDTH:
            text = comment_text(f"{sources[0].name} = {sources[0].math}")
            if len(text) <= COMMENT_WIDTH:
                return f"from {text}"
        return "from " + ", ".join(s.name for s in sources) if sources else ""

    def step_equations(self) -> list[tuple[str, str]]:
        """(name, expression) of each statement of forward(), for the module docstring."""
        return [(s.name, s.math) for s in self.forward_statements]

    def gradient_code(self, g: int, arg: str, shape: str, matrix: bool, names: dict[int, str]) -> str:
        """The gradient of argument `arg` from its per-example signal g: summed over the batch
        down to the argument's shape. A matrix parameter's sum over the batch happens inside the
        matrix products that form its signal (W1_bar = z_bar x^T, summed over the examples)."""
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


def _symbol(name: str):
    return lambda: sp.Symbol(name)


# ---- the builders ---------------------------------------------------------------------------------
def forward_output(m: ModuleBuilder) -> None:
    """forward(): the per-example loss, with the same names as value_and_grad for the same values."""
    program, graph = m.program, m.graph
    names = {node: name for node, name in m.leaf_names.items() if graph[node].op == SYMBOL}
    schedule = Schedule(graph, [program.loss], m.step_names, m.namer, program.n_forward)
    statements = m.lines(schedule, names)
    loss = m.ref(program.loss, names)
    returns = loss if m.every_arg_reaches_loss else f"np.broadcast_to({loss}, _batch_shape({m.batch_args()}))"
    helpers = set(m.printer.helpers) | ({"_batch_shape"} if "_batch_shape" in returns else set())
    m.ops["forward"] = schedule.ops
    m.forward_statements = statements
    m.functions.append(Function("forward", "The per-example loss (the broadcast shape of the arguments).",
                                m.arg_names, [("", statements)], returns, '"example"', helpers))


def value_and_grad_output(m: ModuleBuilder) -> None:
    """value_and_grad(): the forward pass, then the backward pass (the lecture's slide 10)."""
    program, graph, namer = m.program, m.graph, m.namer
    seed, backward = m.seed, m.backward
    names = dict(m.leaf_names)
    wanted = dict(m.step_names)
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
    statements = m.lines(full, names, aliases, signal_of, backward.senders)
    loss = m.ref(program.loss, names)

    shape = namer.fresh("shape")
    shape_code = f"np.shape({loss})" if m.every_arg_reaches_loss else f"_batch_shape({m.batch_args()})"
    backward_lines = [Statement(shape, -1, "backward", code=shape_code, _rhs=_symbol(shape))]
    if m.reduction == "mean":
        backward_lines.append(Statement(names[seed], seed, "backward", code=f"1/int(np.prod({shape}))",
                                        _rhs=_symbol("1/N")))
    grads = []
    for w, g in zip(program.wrt, backward.grads):
        w_name = namer.names[("symbol", w)]
        code = m.gradient_code(g, w_name, shape, isinstance(w, sp.MatrixSymbol), names)
        grads.append(Statement(namer.fresh(f"{w_name}_bar"), g, "gradient",
                               code=code, arg=w_name, _rhs=_rhs(full, g, names) if g not in names
                               else _symbol(names[g]),
                               comment=m.provenance(backward.senders.get(m.arg_nodes[w], []),
                                                    m._owner, m._forward_by_node)))
    if m.reduction == "mean":
        value = f"np.mean({loss})"
    elif m.every_arg_reaches_loss:
        value = f"np.sum({loss})"
    else:
        value = f"np.sum(np.broadcast_to({loss}, {shape}))"
    forward_part = [s for s in statements if s.section == "forward"]
    backward_part = backward_lines + [s for s in statements if s.section == "backward"] + grads
    m.ops["value_and_grad"] = full.ops + len(grads) + 1 + (m.reduction == "mean")
    m.listing = Listing(m.forward_statements, statements, grads,
                        (names[seed], "1/N") if m.reduction == "mean" else None)
    helpers = set(m.printer.helpers) | set(m.helpers)
    if "_batch_shape" in shape_code:
        helpers.add("_batch_shape")
    grads_tuple = _tuple(g.name for g in grads)
    combine = f'("total", {_tuple(_quoted(a) for a in m.wrt_names)})'
    m.functions.append(Function(
        "value_and_grad", "(objective, (gradient of each of WRT)): the forward pass, then the backward pass.",
        m.arg_names, [("forward pass", forward_part), (BACKWARD_HEADER, backward_part)],
        f"{value}, {grads_tuple}", combine, helpers))


def grad_output(m: ModuleBuilder) -> None:
    args = ", ".join(m.arg_names)
    m.functions.append(Function("grad", "The gradient of the objective with respect to each of WRT, in that order.",
                                m.arg_names, [], f"_value_and_grad({args})[1]", None))


def _quoted(name: str) -> str:
    return f'"{name}"'


def _tuple(items) -> str:
    items = list(items)
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


DERIVATIVES = {
    "grad": (forward_output, value_and_grad_output, grad_output),
}
