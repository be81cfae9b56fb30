"""Scheduling and printing: graph nodes become numbered, readable straight-line statements.

Input: the graph, the nodes a function returns, and the names the user gave (steps) or the
lecture gives (error signals `v_bar`). Output: `Statement`s in topological order. A node gets a
statement of its own when it has a name, is used more than once, or would nest too deeply;
every other node is inlined into its single user. Each right-hand side is printed straight from
the graph through the op records' NumPy forms (`IRPrinter`), in time linear in the statement;
`explain` alone rebuilds small SymPy expressions, one statement at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .graph import CONST, SYMBOL, Domain, Graph, Lanes, closure
from .naming import Namer
from .opcount import node_cost
from .ops import RECORDS, NumPyNamesPrinter, constant_value, record_for
from .ops.array import PerExample, spread_positions, total, window
from .ops.lanes import lane_lift, lane_sum
from .ops.matrix import transpose

# Deeper single-use chains are split into temporaries: readable, and far from the parser's limit.
MAX_INLINE_DEPTH = 8
# Longer sums and products are printed in parenthesised groups: any length parses.
GROUP = 64

# Precedences of printed forms (Python's, coarsened).
CONDITIONAL, ADD, NEGATIVE, MUL, POW, ATOM = 10, 30, 35, 40, 60, 100


@dataclass
class Statement:
    name: str
    node: int
    section: str                  # "forward", "backward" or "gradient"
    origins: tuple[int, ...] = ()  # forward nodes whose derivative rules produced it
    code: str = ""                # the right-hand side as NumPy code
    comment: str = ""             # "from ...": the forward statements a backward line comes from
    arg: str = ""                 # for a gradient: the argument it belongs to
    alias: bool = False           # `v_bar = <the name it already has>`
    _rhs: object = field(default=None, repr=False)  # () -> small SymPy expression, for explain
    _math: object = field(default=None, repr=False)  # () -> the right-hand side in the lecture's notation
    form: str = "="               # "=", "+=", "for" (name in code:), "call" (code alone)
    indent: int = 0               # levels inside a loop (backpropc.blocking)

    @property
    def text(self) -> str:
        """The line of code, without its indentation."""
        if self.form == "for":
            return f"for {self.name} in {self.code}:"
        if self.form == "call":
            return self.code
        return f"{self.name} {self.form} {self.code}"

    @property
    def rhs(self) -> sp.Basic:
        return self._rhs()

    @property
    def math(self) -> str:
        """The right-hand side in the lecture's notation, printed when first asked for (comments
        quote only a few statements)."""
        if callable(self._math):
            self._math = self._math()
        return self._math or ""


class NoScalarForm(Exception):
    """An op has no form for Python floats (the scalar printer cannot print it)."""


class IRPrinter:
    """Prints the expression of a node, with named nodes as their names, as NumPy code (or, with
    `math`, in the lecture's notation; with `scalar`, for a call on Python floats: numbers with
    the math module, and a re-rolled family's values over its lanes, NumPy arrays, as NumPy code).
    The runtime helpers the code calls are collected in `helpers`."""

    def __init__(self, graph: Graph, math: bool = False, scalar: bool = False,
                 data: frozenset = frozenset()) -> None:
        self.graph = graph
        self.math = math
        self.floats = scalar
        self.scalar = scalar  # the form of the node being printed (see _choose_form)
        self.uses_math = False
        self.helpers: set[str] = set()
        # Leaves that may carry a batch (the data of an indexed model), and whether each node does.
        self.data = data
        self._per_example = PerExample(graph, data)

    def print(self, root: int, names: dict[int, str]) -> str:
        graph = self.graph
        done: dict[int, tuple[str, int]] = {}
        stack = [(root, False)]
        while stack:
            i, ready = stack.pop()
            if i in done:
                continue
            node = graph[i]
            if i != root and i in names or node.op == SYMBOL:
                done[i] = (names[i], ATOM)
            elif node.op == CONST:
                done[i] = self._constant(node.value)
            elif not self.math and (value := constant_value(graph, i)) is not None:
                done[i] = self._constant(value)
            elif not ready:
                stack.append((i, True))
                stack.extend((a, False) for a in node.args if a not in done)
            else:
                self._choose_form(i)
                ids = self._flattened(i, root, names)
                dot = self._dot(i, root, names, done) if node.op is lane_sum or node.op is total else None
                done[i] = dot or self._node(i, ids, [done[a] for a in ids])
        return done[root][0]

    def _choose_form(self, i: int) -> None:
        """On floats, a node over lanes (or reading them) is printed as NumPy code, any other with
        the math module."""
        if self.floats:
            shapes = self.graph.shapes
            self.scalar = not isinstance(shapes[i], Lanes) and not any(
                isinstance(shapes[a], Lanes) for a in self.graph[i].args)

    def _dot(self, i: int, root: int, names, done):
        """Sum i over the last axis (a family's lanes, or a Sum's range) of inlined products of
        arrays, each as one pass instead of a product and a sum: (a*b*c).sum(-1) is
        _lane_dot(a*b, c), (100*c**2).sum(-1) is 100*_lane_dot(c, c) (numbers come out of the
        sum), and a sum of terms over arrays is summed term by term, the dot products apart. None
        when there is no dot product."""
        graph = self.graph
        (a,) = graph[i].args
        if self.math or self.scalar or a in names:
            return None
        if graph[a].op is not sp.Add:
            return self._dot_term(a, root, names, done)
        terms = self._flattened(a, root, names)
        if not all(self._is_array(t) for t in terms):
            return None  # a number in the sum counts once per entry: it stays in the one sum
        dots = [self._dot_term(t, root, names, done) for t in terms]
        if not any(dots):
            return None
        rest = [t for t, d in zip(terms, dots) if d is None]
        parts = [d for d in dots if d]
        if rest:
            text, prec = self._add(rest, [done[t] for t in rest]) if len(rest) > 1 else done[rest[0]]
            parts.append(((text if prec >= ATOM else f"({text})") + ".sum(-1)", ATOM))
        parts.sort(key=lambda part: part[1] == NEGATIVE)  # a positive term first: a - b, not -b + a
        signed = [(prec == NEGATIVE, text[1:] if prec == NEGATIVE else text) for text, prec in parts]
        return self._signed(signed), ADD

    def _dot_term(self, a: int, root: int, names, done):
        """The sum over the last axis of the inlined product a, as a dot product (see _dot)."""
        graph = self.graph
        if a in names:
            return None
        factors = self._flattened(a, root, names) if graph[a].op is sp.Mul else [a]
        if self.data and any(graph.shapes[f] is None and self.per_example(f) for f in factors):
            return None  # a per-example number beside a range needs its trailing axis (_spread)
        spread = []  # an inlined square of a named array is two factors (printed twice: a name)
        for f in factors:
            base = graph[f].args[0] if graph[f].op is sp.Pow else None
            squared = base is not None and f not in names and graph.number(graph[f].args[1]) == 2
            named = base in done and _is_name(done[base][0])
            spread += [base, base] if squared and named and self._is_array(base) else [f]
        arrays = [k for k, f in enumerate(spread) if self._is_array(f)]
        if len(arrays) < 2 or any(f not in done for f in spread):
            return None
        numbers = [f for f in spread if constant_value(graph, f) is not None]
        rest = [f for k, f in enumerate(spread) if k != arrays[-1] and f not in numbers]
        dot = f"_lane_dot({self._mul(rest, [done[f] for f in rest])[0]}, {done[spread[arrays[-1]]][0]})"
        self.helpers.add("_lane_dot")
        if not numbers:
            return dot, ATOM
        coeff, prec = self._mul(numbers, [done[f] for f in numbers])
        if coeff in ("1", "-1"):  # -(a*b).sum(-1) is -_lane_dot(a, b)
            return (dot, ATOM) if coeff == "1" else (f"-{dot}", NEGATIVE)
        if coeff.startswith("1/"):  # a dot product over 16, not 1/16*_lane_dot(...): a product
            return f"{dot}/{coeff[2:]}", MUL  # reads a factor 1/x as a division by x (_mul)
        return f"{coeff}*{dot}", NEGATIVE if prec == NEGATIVE else MUL

    def _is_array(self, i: int) -> bool:
        """Whether node i is an array at run time: over a Sum's range or a family's lanes, not a
        number lifted over them."""
        return self.graph.is_array(i) and self.graph[i].op is not lane_lift

    def _flattened(self, i: int, root: int, names) -> list[int]:
        """The arguments of node i, with those of inlined sums in a sum (and products in a
        product) in their place: a + (b + c) is printed a + b + c, 2*x*(y/2) is x*y."""
        graph, op = self.graph, self.graph[i].op
        if op not in (sp.Add, sp.Mul):
            return list(graph[i].args)
        ids: list[int] = []
        for a in graph[i].args:
            inner = graph[a]
            if inner.op is op and a not in names and a != root and constant_value(graph, a) is None:
                ids.extend(self._flattened(a, root, names))
            else:
                ids.append(a)
        return ids

    # ---- leaves ---------------------------------------------------------------------------------
    def _constant(self, value) -> tuple[str, int]:
        if value is sp.true or value is sp.false:
            return str(bool(value)), ATOM
        if value.is_Integer:
            return str(value.p), NEGATIVE if value.p < 0 else ATOM
        if value.is_Rational:
            return f"{value.p}/{value.q}", NEGATIVE if value.p < 0 else MUL
        if value is sp.pi or value is sp.E:
            module = "" if self.math else "math." if self.scalar else "np."
            self.uses_math = self.uses_math or self.scalar
            return module + ("pi" if value is sp.pi else "E" if self.math else "e"), ATOM
        if self.math and not value.is_Float:
            return sp.sstr(value), MUL
        number = float(value)  # sqrt(2), 2/sqrt(pi): computed once, here, to full precision
        return repr(number), NEGATIVE if number < 0 else ATOM

    # ---- operations -----------------------------------------------------------------------------
    def _node(self, i: int, ids: list[int], args: list[tuple[str, int]]) -> tuple[str, int]:
        graph, node = self.graph, self.graph[i]
        op = node.op
        record = record_for(op)
        if not self.math and graph.is_matrix(i) and "matrix" not in record.tags:
            args = self._broadcast(ids, args)
        if self.data and not self.math:
            args = self._spread(i, ids, args)
        if op is lane_lift and self.floats:  # a number broadcasts over lanes as it is
            return args[0]
        if op is sp.Add:
            return self._add(ids, args)
        if op is sp.Mul:
            return self._mul(ids, args)
        if op is sp.Pow:
            return self._pow(ids, args)
        if op is sp.Piecewise:
            return self._piecewise(args)
        if self.math:
            return self._math_call(record, args)
        code = record.code
        if self.scalar:
            if not record.scalar:
                raise NoScalarForm(record.name)
            code = record.scalar
        else:
            self.helpers.update(record.helpers)
        # a conditional expression is parenthesised unless it is a whole argument of a call
        texts = [t if p > CONDITIONAL or isinstance(code, str) and _whole_argument(code, k) else f"({t})"
                 for k, (t, p) in enumerate(args)]
        operands = [t if p >= ATOM else f"({t})" for t, p in args]
        if callable(code):
            text = code(*(operands if "operands" in record.tags else texts))
        else:
            text = code.format(*texts, **{f"p{k}": o for k, o in enumerate(operands)})
        self.uses_math = self.uses_math or self.scalar and "math." in text
        return text, ATOM if _is_call(text) else MUL

    def _broadcast(self, ids, args):
        """A per-example scalar beside matrices gets two trailing axes, so that it broadcasts."""
        graph = self.graph
        wrapped = [(f"_as_matrix({t})", ATOM) if not graph.is_matrix(a) and graph[a].op != CONST else (t, p)
                   for a, (t, p) in zip(ids, args)]
        if wrapped != args:
            self.helpers.add("_as_matrix")
        return wrapped

    def _spread(self, i, ids, args):
        """A per-example scalar of an indexed model beside values over a Sum's range gets a
        trailing axis, so that a batch of them broadcasts (batch axes lead, the range is last)."""
        positions = spread_positions(self.graph, i, len(ids))
        if not positions:
            return args
        shapes = self.graph.shapes
        wrapped = [(f"_spread({t})", ATOM) if k in positions and shapes[a] is None and self.per_example(a)
                   else (t, p)
                   for k, (a, (t, p)) in enumerate(zip(ids, args))]
        if wrapped != args:
            self.helpers.add("_spread")
        return wrapped

    def per_example(self, i: int) -> bool:
        """Whether node i may vary over a batch (backpropc.ops.array.PerExample)."""
        return self._per_example(i)

    def _math_call(self, record, args) -> tuple[str, int]:
        texts = [t for t, _ in args]
        if callable(record.math):
            return record.math(texts), ATOM
        if record.math:
            operands = {f"p{k}": t if p >= ATOM else f"({t})" for k, (t, p) in enumerate(args)}
            return record.math.format(*texts, **operands), MUL
        return f"{record.name}({', '.join(texts)})", ATOM

    def _add(self, ids, args) -> tuple[str, int]:
        terms = []  # (negative, text of the term without its sign)
        for text, prec in args:
            if prec == NEGATIVE:
                terms.append((True, text[1:]))
            else:
                terms.append((False, text if prec > ADD else f"({text})"))
        # the numeric constant last, and a positive term first where there is one: 1 - y, not -y + 1
        constant = [t for t, a in zip(terms, ids) if self.graph[a].op == CONST or constant_value(self.graph, a)]
        terms = [t for t in terms if t not in constant] + constant
        first = next((t for t in terms if not t[0]), None)
        if terms[0][0] and first is not None:
            terms.remove(first)
            terms.insert(0, first)
        groups = [terms[k:k + GROUP] for k in range(0, len(terms), GROUP)]
        texts = [self._signed(g) for g in groups]
        return (texts[0] if len(texts) == 1 else " + ".join(f"({t})" for t in texts)), ADD

    @staticmethod
    def _signed(terms) -> str:
        text = ("-" if terms[0][0] else "") + terms[0][1]
        return text + "".join(f" {'-' if negative else '+'} {t}" for negative, t in terms[1:])

    def _mul(self, ids, args) -> tuple[str, int]:
        coeff = sp.S.One
        numerator, denominator = [], []
        # names first, in alphabetical order, then the compound factors: h*h_bar*(1 - h). In code,
        # numbers before arrays (over a range or lanes; a lifted value is a number): Python
        # multiplies left to right, so the numbers (and a minus sign) meet each other first, not
        # every entry of an array.
        arrays = [not self.math and self._is_array(a) for a in ids]
        order = sorted(range(len(ids)), key=lambda k: (arrays[k], args[k][1] < ATOM or not _is_name(args[k][0]),
                                                        args[k][0] if _is_name(args[k][0]) else "", k))
        ids, args = [ids[k] for k in order], [args[k] for k in order]
        for a, (text, prec) in zip(ids, args):
            k = self.graph.number(a)
            if k is None and constant_value(self.graph, a) is not None and constant_value(self.graph, a).is_Rational:
                k = constant_value(self.graph, a)
            if k is not None:
                coeff *= k
            elif prec == MUL and text.startswith("1/"):
                denominator.append(text[2:])  # x*(1/y) is x/y
            else:
                numerator.append(text if prec >= MUL else f"({text})")
        negative = _negative(coeff)
        coeff = -coeff if negative else coeff
        if coeff.is_Rational and not coeff.is_Integer:
            denominator.insert(0, str(coeff.q))
            coeff = sp.Integer(coeff.p)
        if coeff != 1 or not numerator:
            numerator.insert(0, self._constant(coeff)[0])
        groups = [numerator[k:k + GROUP] for k in range(0, len(numerator), GROUP)]
        text = "*".join(groups[0]) if len(groups) == 1 else "*".join(f"({'*'.join(g)})" for g in groups)
        if denominator:
            below = denominator[0] if len(denominator) == 1 else "*".join(denominator)
            text = f"{text}/{below}" if len(denominator) == 1 else f"{text}/({below})"
        return ("-" + text, NEGATIVE) if negative else (text, MUL)

    def _pow(self, ids, args) -> tuple[str, int]:
        (base, base_prec), (exponent, exponent_prec) = args
        e = self.graph.number(ids[1])
        sqrt = "sqrt" if self.math else "math.sqrt" if self.scalar else "np.sqrt"
        if e is not None and (e == sp.S.Half or e == -sp.S.Half):
            self.uses_math = self.uses_math or self.scalar
            text = f"{sqrt}({base})"
            return (text, ATOM) if e == sp.S.Half else (f"1/{text}", MUL)
        products = self._products(ids[0], base, base_prec, e)
        if products is not None:
            return products
        if e is not None and _negative(e):
            text, prec = (base, base_prec) if e == -1 else self._power(base, base_prec, *self._constant(-e))
            return f"1/{text if prec >= POW else '(' + text + ')'}", MUL
        return self._power(base, base_prec, exponent, exponent_prec)

    def _products(self, base_id, base, base_prec, e):
        """x**6 over a Sum's range or a family's lanes as (x*x*x)**2: NumPy squares fast, but its
        general power is some 20 times slower than a product. None for anything else (scalars,
        names only)."""
        if self.math or e is None or not e.is_Integer or not 3 <= abs(e) <= 8 or base_prec < ATOM \
                or not isinstance(self.graph.shapes[base_id], (Domain, Lanes)):
            return None
        half, odd = divmod(int(abs(e)), 2)
        text = "*".join([base] * half)
        text = (f"({text})**2" if half > 1 else f"{base}**2") + (f"*{base}" if odd else "")
        return (f"1/({text})", MUL) if e < 0 else (text, MUL if odd else POW)

    def _power(self, base, base_prec, exponent, exponent_prec) -> tuple[str, int]:
        if self.scalar and not exponent.isdigit():
            # a float's ** can give a complex number; math.pow raises instead (and NumPy takes over)
            self.uses_math = True
            return f"math.pow({base}, {exponent})", ATOM
        base = base if base_prec > POW else f"({base})"
        exponent = exponent if exponent_prec >= ATOM else f"({exponent})"
        return f"{base}**{exponent}", POW

    def _piecewise(self, args) -> tuple[str, int]:
        pairs = [(args[k][0], args[k + 1][0]) for k in range(0, len(args), 2)]
        if self.math:
            return "Piecewise(" + ", ".join(f"({e}, {c})" for e, c in pairs) + ")", ATOM
        last, last_cond = pairs[-1]
        if self.scalar:  # a conditional expression: only the branch taken is evaluated
            operand = [(float_literal(e) if p > CONDITIONAL else f"({e})", c)
                       for (e, p), (c, _) in zip(args[0::2], args[1::2])]
            text = operand[-1][0] if last_cond == "True" else f"{operand[-1][0]} if {last_cond} else math.nan"
            self.uses_math = self.uses_math or last_cond != "True"
            for e, c in reversed(operand[:-1]):
                text = f"{e} if {c} else {text}"
            return text, CONDITIONAL
        default = last if last_cond == "True" else "np.nan"
        conditional = pairs[:-1] if last_cond == "True" else pairs
        if len(conditional) > 16:  # np.select keeps hundreds of branches one call deep
            conds = ", ".join(c for _, c in conditional)
            values = ", ".join(e for e, _ in conditional)
            return f"np.select([{conds}], [{values}], {default})", ATOM
        text = default
        for e, c in reversed(conditional):
            text = f"np.where({c}, {e}, {text})"
        return text, ATOM


def float_literal(text: str) -> str:
    """An integer literal as a float literal (1 -> 1.0), so that code on floats returns floats."""
    return text + ".0" if text.lstrip("-").isdigit() else text


def _negative(value) -> bool:
    """value < 0 for a SymPy number, without SymPy's comparison machinery."""
    return value.p < 0 if value.is_Rational else float(value) < 0


def _whole_argument(code: str, k: int) -> bool:
    """Whether every {k} of a format string is a whole argument of a call: f({k}) or f(a, {k})."""
    field = "{" + str(k) + "}"
    parts = code.split(field)
    return all(before.endswith(("(", ", ")) for before in parts[:-1]) and \
        all(after.startswith((")", ",")) for after in parts[1:])


def _is_name(text: str) -> bool:
    return text.isidentifier()


def _is_call(text: str) -> bool:
    """Whether text is one call or subscript, name(...) or name[...], or enclosed in brackets:
    an operand as it stands."""
    start = min((text.find(c) for c in "([" if c in text), default=-1)
    if start < 0 or start and not text[:start].replace(".", "").replace("_", "a").isalnum():
        return False
    depth = 0
    for k, c in enumerate(text[start:], start):
        depth += c in "([{"
        depth -= c in ")]}"
        if depth == 0:
            return k == len(text) - 1
    return False


class Schedule:
    """Which nodes of a function get statements, and how each statement reads."""

    def __init__(self, graph: Graph, roots: list[int], wanted: dict[int, str], namer: Namer,
                 n_forward: int, results: list[int] = (), signal_of: dict[int, int] = None,
                 tangent_of: dict[int, int] = None) -> None:
        """`roots` get statements of their own; `results` are used once more, by the return.
        `signal_of` maps error-signal nodes to their forward node, to name them `v_bar`;
        `tangent_of` maps tangent nodes to the node they are the tangent of, to name them `v_dot`."""
        self.graph = graph
        live = closure(graph, list(roots) + list(results))
        uses = dict.fromkeys(live, 0)
        for i in live:
            for a in graph[i].args:
                uses[a] += 1
        for r in list(roots) + list(results):
            uses[r] += 1
        # A negation written into a sum is a subtraction: no operation of its own.
        users_are_sums = {i: True for i in live}
        for i in live:
            for a in graph[i].args:
                users_are_sums[a] = users_are_sums[a] and graph[i].op is sp.Add
        own: set[int] = set()
        depth: dict[int, int] = {}
        for i in live:  # increasing ids: arguments first
            node = graph[i]
            if node.is_leaf or constant_value(graph, i) is not None:  # constants are printed in place
                depth[i] = 0
                continue
            d = 1 + max((depth[a] for a in node.args), default=0)
            if ((self._is_view_of_name(i, own) or users_are_sums[i] and self._is_negated_window(i))
                    and i not in wanted and i not in roots):
                # `-v` and `_T(v)` are written where they are used: no work of their own; so is
                # `-x[lo:hi]` in sums, where it is a subtraction (a pass over the range saved)
                depth[i] = 0
                continue
            if i in wanted or uses[i] > 1 or i in roots or d > MAX_INLINE_DEPTH or i in graph.families:
                own.add(i)
                d = 0
            depth[i] = d
        self.live = live
        self.own = sorted(own)
        self.ops = sum(0 if (self._is_negation_of_name(i, own) or self._is_negated_window(i)) and users_are_sums[i]
                       or constant_value(graph, i) is not None  # computed once, when compiling
                       else node_cost(graph, i) for i in live)
        self.names: dict[int, str] = {}
        signal_of, tangent_of = signal_of or {}, tangent_of or {}
        for i in self.own:
            v, primal = signal_of.get(i), tangent_of.get(i)
            if ("node", i) in namer.names:  # named by another function of the module
                self.names[i] = namer.names[("node", i)]
            elif i in wanted:
                self.names[i] = namer.name(("node", i), wanted[i])
            elif v in self.names:
                self.names[i] = namer.name(("node", i), f"{self.names[v]}_bar")
            elif primal is not None and (primal in self.names or ("node", primal) in namer.names):
                base = self.names.get(primal) or namer.names[("node", primal)]
                self.names[i] = namer.name(("node", i), f"{base}_dot")
            else:
                self.names[i] = namer.temp(("node", i))
        self.n_forward = n_forward

    def _is_view_of_name(self, i: int, own: set[int]) -> bool:
        node = self.graph[i]
        if node.op is transpose:
            return node.args[0] in own or self.graph[node.args[0]].is_leaf
        return self._is_negation_of_name(i, own)

    def _is_negation_of_name(self, i: int, own: set[int]) -> bool:
        v = self.graph.negated(i)
        return v is not None and (v in own or self.graph[v].is_leaf)

    def _is_negated_window(self, i: int) -> bool:
        """-x[lo:hi] of an argument x: its window is a view, printed where it is used."""
        v = self.graph.negated(i)
        return v is not None and self.graph[v].op is window and self.graph[self.graph[v].args[0]].is_leaf

    def sympy_rhs(self, i: int, names: dict[int, str]) -> sp.Basic:
        """Node i's expression as a small SymPy tree, with named nodes (other than i) as symbols:
        for `explain`, which prints equations with SymPy."""
        graph = self.graph
        built: dict[int, sp.Basic] = {}
        stack = [(i, False)]
        while stack:
            j, ready = stack.pop()
            if j in built:
                continue
            node = graph[j]
            if j != i and j in names or node.op == SYMBOL:
                built[j] = sp.Symbol(names[j])
            elif node.op == CONST:
                built[j] = node.value
            elif not ready:
                stack.append((j, True))
                stack.extend((a, False) for a in node.args if a not in built)
            else:
                args = [built[a] for a in node.args]
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


# ---- SymPy's printer, for the oracle side (lambdify of sympy.diff results) -----------------------
class SympyPrinter(NumPyNamesPrinter):
    """SymPy's NumPy printer with every op printed through its record's NumPy form:
    `sympy.lambdify` of the naive expansion evaluates exactly what backpropc would."""

    def _print_Function(self, expr):
        record = RECORDS.get(expr.func)
        if record is None or not record.code:
            return super()._print_Function(expr)
        texts = [self._print(a) for a in expr.args]
        operands = [f"({t})" for t in texts]
        if callable(record.code):
            return record.code(*texts)
        return record.code.format(*texts, **{f"p{k}": o for k, o in enumerate(operands)})


# SymPy's printer looks for _print_<class name> first: every op with a record prints through it.
for _op, _record in RECORDS.items():
    if isinstance(_op, type) and issubclass(_op, sp.Function) and _record.code and _op is not sp.Piecewise:
        setattr(SympyPrinter, f"_print_{_op.__name__}", SympyPrinter._print_Function)
