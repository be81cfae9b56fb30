"""Scheduling and printing: graph nodes become numbered, readable straight-line statements.

Input: the graph, the nodes a function returns, and the names the user gave (steps) or the
lecture gives (error signals `v_bar`). Output: `Statement`s in topological order. A node gets a
statement of its own when it has a name, is used more than once, or would nest too deeply;
every other node is inlined into its single user. Each statement's right-hand side is a small
tree, rebuilt as a SymPy expression over names and printed by SymPy's NumPy printer (extended
below), so printing is linear in the program however much it shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.str import StrPrinter

from .errors import UnsupportedFunctionError
from .graph import CONST, SYMBOL, Graph, closure
from .matrices import as_matrix, is_matrix_op, transpose
from .naming import Namer
from .opcount import node_cost

# Deeper single-use chains are split into temporaries: readable, and far from the parser's limit.
MAX_INLINE_DEPTH = 8


@dataclass
class Statement:
    name: str
    node: int
    section: str                  # "forward", "backward" or "gradient"
    rhs: sp.Basic                 # small SymPy expression over names
    origins: tuple[int, ...] = ()  # forward nodes whose derivative rules produced it
    code: str = ""                # the right-hand side as NumPy code
    comment: str = ""             # "from ...": the forward statements a backward line comes from
    arg: str = ""                 # for a gradient: the argument it belongs to


class Schedule:
    """Which nodes of a function get statements, and how each statement reads."""

    def __init__(self, graph: Graph, roots: list[int], wanted: dict[int, str], namer: Namer,
                 n_forward: int, results: list[int] = (), signal_of: dict[int, int] = None) -> None:
        """`roots` get statements of their own; `results` are used once more, by the return.
        `signal_of` maps error-signal nodes to their forward node, to name them `v_bar`."""
        self.graph = graph
        live = closure(graph, list(roots) + list(results))
        uses = dict.fromkeys(live, 0)
        for i in live:
            for a in graph[i].args:
                uses[a] += 1
        for r in list(roots) + list(results):
            uses[r] += 1
        own: set[int] = set()
        depth: dict[int, int] = {}
        for i in live:  # increasing ids: arguments first
            node = graph[i]
            if node.is_leaf:
                depth[i] = 0
                continue
            d = 1 + max((depth[a] for a in node.args), default=0)
            if self._is_view_of_name(i, own) and i not in wanted and i not in roots:
                depth[i] = 0  # `-v` and `_T(v)` are written where they are used: no work of their own
                continue
            if i in wanted or uses[i] > 1 or i in roots or d > MAX_INLINE_DEPTH:
                own.add(i)
                d = 0
            depth[i] = d
        self.live = live
        self.own = sorted(own)
        # A negation written into a sum is a subtraction: no operation of its own.
        users_are_sums = {i: True for i in live}
        for i in live:
            for a in graph[i].args:
                users_are_sums[a] = users_are_sums[a] and graph[i].op is sp.Add
        self.ops = sum(0 if self._is_negation_of_name(i, own) and users_are_sums[i]
                       else node_cost(graph, i) for i in live)
        self.names: dict[int, str] = {}
        signal_of = signal_of or {}
        for i in self.own:
            v = signal_of.get(i)
            if ("node", i) in namer.names:  # named by another function of the module
                self.names[i] = namer.names[("node", i)]
            elif i in wanted:
                self.names[i] = namer.name(("node", i), wanted[i])
            elif v in self.names:
                self.names[i] = namer.name(("node", i), f"{self.names[v]}_bar")
            else:
                self.names[i] = namer.temp()
        self.n_forward = n_forward

    def _is_view_of_name(self, i: int, own: set[int]) -> bool:
        node = self.graph[i]
        if node.op is transpose:
            return node.args[0] in own or self.graph[node.args[0]].is_leaf
        return self._is_negation_of_name(i, own)

    def _is_negation_of_name(self, i: int, own: set[int]) -> bool:
        node = self.graph[i]
        return (node.op is sp.Mul and len(node.args) == 2 and self.graph.number(node.args[0]) == -1
                and (node.args[1] in own or self.graph[node.args[1]].is_leaf))

    def rhs(self, i: int, names: dict[int, str]) -> sp.Basic:
        """Node i's expression, with named nodes (other than i) as symbols."""
        graph = self.graph
        built: dict[int, sp.Basic] = {}
        stack = [(i, False)]
        while stack:
            j, ready = stack.pop()
            if j in built:
                continue
            node = graph[j]
            if j != i and j in names:
                built[j] = sp.Symbol(names[j])
            elif node.op == SYMBOL:
                built[j] = sp.Symbol(names[j])
            elif node.op == CONST:
                built[j] = node.value
            elif not ready:
                stack.append((j, True))
                stack.extend((a, False) for a in node.args if a not in built)
            else:
                args = [built[a] for a in node.args]
                if graph.is_matrix(j) and not is_matrix_op(node.op):
                    # an elementwise op on matrices: a per-example scalar gets trailing axes
                    args = [as_matrix(x, evaluate=False) if not graph.is_matrix(a) and graph[a].op != CONST
                            else x for a, x in zip(node.args, args)]
                if node.op is sp.Piecewise:
                    built[j] = sp.Piecewise(*zip(args[::2], args[1::2]))
                elif node.op is sp.Pow or (isinstance(node.op, type) and issubclass(node.op, sp.Function)):
                    # The graph already folded it; evaluating again could move it (SymPy pushes a
                    # power into a Piecewise, undoing the safe branches).
                    built[j] = node.op(*args, evaluate=False)
                else:
                    built[j] = node.op(*args)
        return built[i]

    def inlined_into(self) -> dict[int, int]:
        """For every live node, the statement whose right-hand side computes it."""
        owner: dict[int, int] = {}
        own = set(self.own)
        for s in self.own:
            stack = [s]
            while stack:
                j = stack.pop()
                owner[j] = s
                stack.extend(a for a in self.graph[j].args
                             if a not in own and a not in owner and not self.graph[a].is_leaf)
        return owner


# ---- printers ------------------------------------------------------------------------------
class CodePrinter(NumPyPrinter):
    """SymPy's NumPy printer with `np.` names, stable forms and readable operators."""

    def __init__(self, settings: dict | None = None) -> None:
        super().__init__({"fully_qualified_modules": True, "strict": False, "human": False,
                          "order": "none", **(settings or {})})

    def _module_format(self, fqn, register=True):
        text = super()._module_format(fqn, register)
        return "np." + text[len("numpy."):] if text.startswith("numpy.") else text

    def _call(self, fn: str, *args) -> str:
        return f"np.{fn}({', '.join(self._print(a) for a in args)})"

    def _nested(self, fn: str, args) -> str:
        text = self._print(args[0])
        for a in args[1:]:
            text = f"np.{fn}({text}, {self._print(a)})"
        return text

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        if exp == -1:
            return f"1/{self.parenthesize(base, sp.printing.precedence.PRECEDENCE['Pow'])}"
        if exp.is_Integer and exp < 0:
            return f"1/{self._print(base ** -exp)}"
        return super()._print_Pow(expr, rational=rational)

    def _print_sigmoid(self, expr):
        return f"_sigmoid({self._print(expr.args[0])})"

    def _print_softplus(self, expr):
        return self._call("logaddexp", 0, expr.args[0])

    def _print_relu(self, expr):
        return self._call("maximum", expr.args[0], 0)

    def _print_logsumexp(self, expr):
        if len(expr.args) == 2:
            return self._call("logaddexp", *expr.args)
        return f"_logsumexp({', '.join(self._print(a) for a in expr.args)})"

    def _print_log1p(self, expr):
        return self._call("log1p", expr.args[0])

    def _print_expm1(self, expr):
        return self._call("expm1", expr.args[0])

    def _print_erf(self, expr):
        return f"_erf({self._print(expr.args[0])})"

    def _print_erfc(self, expr):
        return f"_erfc({self._print(expr.args[0])})"

    def _print_Max(self, expr):
        return self._nested("maximum", expr.args)

    def _print_Min(self, expr):
        return self._nested("minimum", expr.args)

    def _print_Abs(self, expr):
        return self._call("abs", expr.args[0])

    def _print_Heaviside(self, expr):
        return self._call("heaviside", *expr.args)

    def _print_ceiling(self, expr):
        return self._call("ceil", expr.args[0])

    def _print_floor(self, expr):
        return self._call("floor", expr.args[0])

    def _print_sign(self, expr):
        return self._call("sign", expr.args[0])

    def _print_Piecewise(self, expr):
        *pairs, (last, last_cond) = expr.args
        text = self._print(last) if last_cond is sp.true else \
            f"np.where({self._print(last_cond)}, {self._print(last)}, np.nan)"
        for e, c in reversed(pairs):
            text = f"np.where({self._print(c)}, {self._print(e)}, {text})"
        return text

    def _print_Relational(self, expr):
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[expr.rel_op]
        return f"({self._print(expr.lhs)} {op} {self._print(expr.rhs)})"

    def _print_And(self, expr):
        return self._nested("logical_and", expr.args)

    def _print_Or(self, expr):
        return self._nested("logical_or", expr.args)

    def _print_ITE(self, expr):
        return self._call("where", *expr.args)

    def _print_Not(self, expr):
        return self._call("logical_not", expr.args[0])

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"


class MathPrinter(StrPrinter):
    """The lecture's notation for comments, docstrings and `explain`: sigmoid(z), (y - t)**2/2."""


def print_code(expr: sp.Basic, printer: CodePrinter) -> str:
    _, unsupported, text = printer.doprint(expr)
    if unsupported:
        bad = sorted({type(e).__name__ for e in unsupported})
        raise UnsupportedFunctionError(
            f"no NumPy form for {', '.join(bad)}: give the function a _numpycode(self, printer) method")
    return text


def print_math(expr: sp.Basic) -> str:
    return MathPrinter({"order": "none"}).doprint(expr)

