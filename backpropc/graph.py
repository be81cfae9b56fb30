"""The graph IR: a hash-consed DAG with one node per distinct (op, args) pair.

Node ids are a topological order (arguments always have smaller ids than their users). Nodes are
built through smart constructors that fold constants, 0 and 1, negations and repeated terms, so
the forward pass, the backward pass and every rewrite share one value numbering: a quantity
needed twice is one node. What is particular to an op (its shape, its folding identities,
whether it commutes) the graph asks the registry it is given (backpropc.ops.REGISTRY); this
module imports nothing else from the package. The SymPy front end is backpropc.lower.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy.logic.boolalg import BooleanAtom


SYMBOL = "symbol"
CONST = "const"


@dataclass(frozen=True, slots=True)
class Node:
    """One value of the program: an op applied to earlier nodes, or a leaf.

    `op` is a SymPy class (`sp.Add`, `sp.sin`, `sigmoid`, ...) or SYMBOL / CONST for leaves;
    `value` holds the leaf's SymPy symbol or number.
    """

    op: object
    args: tuple[int, ...] = ()
    value: sp.Basic | None = None

    @property
    def is_leaf(self) -> bool:
        return self.op in (SYMBOL, CONST)


@dataclass(frozen=True, slots=True)
class Domain:
    """The shape of a value over the index tuples of a Sum (backpropc.ops.array): one entry per
    tuple of the loop nest whose innermost loop is node `loop`, a 1-D array at run time."""

    loop: int
    depth: int


@dataclass(frozen=True, slots=True)
class Lanes:
    """The shape of a re-rolled family's value (backpropc.reroll): one entry per term of the
    family, along the last axis at run time (batch axes, if any, lead). A `uniform` value is the
    same in every lane (built from values the terms share): at run time its last axis is one
    lane, or it has none. Shapes compare by their count alone."""

    count: int
    uniform: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Whole:
    """The shape of a whole indexed array (an IndexedBase argument or its gradient): `dims`."""

    dims: tuple


def _is_number(value) -> bool:
    """A constant that arithmetic can fold: an integer, rational or float (not pi, not True)."""
    return isinstance(value, sp.Number)


class _NoFacts:
    """The registry of a graph built without one: scalars only, nothing folds, nothing commutes."""

    def shape(self, graph, node):
        return None

    def fold(self, graph, op, args):
        return None

    def commutative(self, op) -> bool:
        return op in (sp.Add, sp.Mul)

    def is_fill(self, op) -> bool:
        return False


class Graph:
    """Nodes in topological order plus the table that makes them unique."""

    def __init__(self, registry=None) -> None:
        self.registry = registry if registry is not None else _NoFacts()
        self.nodes: list[Node] = []
        self._index: dict[tuple, int] = {}
        self._small: dict[int, int] = {}
        # The forward node whose derivative rule is running; new nodes remember it ("from").
        self.origin_of: dict[int, int] = {}
        self.current_origin: int | None = None
        # User steps keep their own node: folding never splits a named value into pieces.
        self.protected: set[int] = set()
        # What the front end rewrote into stable forms, for `explain`.
        self.rewrites: list[str] = []
        # Per-example shape of each node: (rows, cols) for a matrix, None for a scalar.
        self.shapes: list[tuple | None] = []
        # How many times nodes use each node as an argument (dead ones included: an upper bound).
        self.users: list[int] = []
        # Symbolic matrix dimension -> (a matrix symbol that has it, axis), to read it at run time.
        self.dimension_sources: dict[sp.Symbol, tuple[sp.MatrixSymbol, int]] = {}
        # Shape symbol of an IndexedBase -> (that IndexedBase, axis); the front end's named array
        # values (dimensions and Sum indices) as (symbol, node), for readable statements.
        self.array_dimensions: dict[sp.Symbol, tuple[sp.IndexedBase, int]] = {}
        self.array_names: list[tuple[sp.Symbol, int]] = []
        # Re-rolled families: the node of each one's sum -> (number of terms, its first term).
        self.families: dict[int, tuple[int, int]] = {}
        # Numeric tables of re-rolled families (lane indices, per-term numbers), module constants.
        self.tables: list[tuple] = []
        self._tables: dict[tuple, int] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, i: int) -> Node:
        return self.nodes[i]

    # ---- raw construction ------------------------------------------------------------------
    def _intern(self, node: Node) -> int:
        key = (node.op, node.args, node.value)
        found = self._index.get(key)
        if found is not None:
            return found
        if node.op == SYMBOL:
            shape = tuple(node.value.shape) if isinstance(node.value, sp.MatrixSymbol) else None
            if isinstance(node.value, sp.IndexedBase):
                shape = Whole(tuple(node.value.shape or ()))
        else:
            shape = None if node.op == CONST else self.registry.shape(self, node)
        i = len(self.nodes)
        self.nodes.append(node)
        self.shapes.append(shape)
        self.users.append(0)
        users = self.users
        for a in node.args:  # x*x counts x twice: an upper bound is what its readers need
            users[a] += 1
        self._index[key] = i
        if self.current_origin is not None:
            self.origin_of[i] = self.current_origin
        return i

    def symbol(self, sym: sp.Symbol | sp.MatrixSymbol) -> int:
        self.register_dimensions(sym)
        return self._intern(Node(SYMBOL, (), sym))

    def register_dimensions(self, sym: sp.Basic) -> None:
        """The sizes an argument's shape names, read off it at call time (lower.indexed.register_shape
        refuses an entry that is neither a number nor one symbol)."""
        axes = (enumerate(sym.shape or ()) if isinstance(sym, sp.IndexedBase)
                else ((-2, sym.shape[0]), (-1, sym.shape[1])) if isinstance(sym, sp.MatrixSymbol) else ())
        for axis, d in axes:
            if isinstance(d, sp.Symbol):
                sources = self.array_dimensions if isinstance(sym, sp.IndexedBase) else self.dimension_sources
                sources.setdefault(d, (sym, axis))

    def is_matrix(self, i: int) -> bool:
        return type(self.shapes[i]) is tuple

    def is_array(self, i: int) -> bool:
        """Whether node i is an indexed array, a value over a Sum's index range or over lanes."""
        return isinstance(self.shapes[i], (Domain, Whole, Lanes))

    def table(self, values: tuple) -> int:
        """The number of a table of numbers (each distinct table kept once)."""
        found = self._tables.get(values)
        if found is None:
            found = self._tables[values] = len(self.tables)
            self.tables.append(values)
        return found

    def const(self, value) -> int:
        if type(value) is int:  # rules ask for small integers all the time
            found = self._small.get(value)
            if found is None:
                found = self._small[value] = self._intern(Node(CONST, (), sp.Integer(value)))
            return found
        return self._intern(Node(CONST, (), value if isinstance(value, sp.Basic) else sp.sympify(value)))

    def find_symbol(self, sym: sp.Symbol) -> int | None:
        """The node of a symbol, or None when the graph does not use it."""
        return self._index.get((SYMBOL, (), sym))

    def coefficient(self, i: int):
        """The value of node i when it is a real numeric constant (2, 1/2, sqrt(2)/2, 2/sqrt(pi)),
        which products fold into one coefficient; else None."""
        node = self.nodes[i]
        if node.op == CONST and (_is_number(node.value) or node.value.is_number and node.value.is_real):
            return node.value
        return None

    def number(self, i: int):
        """The folded numeric value of node i, or None when it is not a plain number."""
        node = self.nodes[i]
        if node.op == CONST and _is_number(node.value):
            return node.value
        return None

    def negated(self, i: int) -> int | None:
        """v when node i is -v (the product of -1 and v), else None."""
        node = self.nodes[i]
        if node.op is sp.Mul and len(node.args) == 2 and self.number(node.args[0]) == -1:
            return node.args[1]
        return None

    # ---- smart constructors -----------------------------------------------------------------
    def add(self, *args: int) -> int:
        total = sp.S.Zero
        counts: dict[int, int] = {}
        for a in args:
            k = self.number(a)
            if k is not None:
                total += k
            else:
                counts[a] = counts.get(a, 0) + 1
        terms = [a if n == 1 else self.mul(self.const(n), a) for a, n in counts.items()]
        if total != 0:
            terms.append(self.const(total))
        if not terms:
            return self.const(0)
        if len(terms) == 1:
            return terms[0]
        return self._intern(Node(sp.Add, tuple(sorted(terms))))

    def mul(self, *args: int) -> int:
        coeff = sp.S.One
        factors: list[int] = []
        for a in args:
            k = self.coefficient(a)
            if k is not None:
                coeff *= k
                continue
            factors.append(a)
        # fill(s, X) times a matrix of X's shape is s times it: the filled matrix is not needed
        if len(factors) > 1:
            factors = [self._unfilled(a, factors) for a in factors]
            coeff *= sp.Mul(*[self.coefficient(a) for a in factors if self.coefficient(a) is not None])
            factors = [a for a in factors if self.coefficient(a) is None]
        # A factor's own coefficient is pulled out only when that cancels it (-(-x) = x, 2*(x/2) = x);
        # otherwise the factor stays whole, so a shared product like 2*c0 is computed once.
        for i, a in enumerate(factors):
            inner_coeff, rest = self.split_coeff(a)
            if inner_coeff != 1 and coeff * inner_coeff == 1:
                coeff, factors[i] = sp.S.One, rest
        if coeff == 0:
            return self.const(0)
        factors.sort()
        if coeff != 1 and len(factors) > 1:
            # k*(a*b): the product itself is one node, shared by a*b, a*b/8 and -a*b
            factors = [self._intern(Node(sp.Mul, tuple(factors)))]
        if coeff != 1:
            factors.insert(0, self.const(coeff))
        if not factors:
            return self.const(coeff)
        if len(factors) == 1:
            return factors[0]
        return self._intern(Node(sp.Mul, tuple(factors)))

    def _unfilled(self, a: int, factors: list[int]) -> int:
        node = self.nodes[a]
        if self.registry.is_fill(node.op) and any(
                b != a and self.is_matrix(b) and self.shapes[b] == self.shapes[a] for b in factors):
            return node.args[0]
        return a

    def split_coeff(self, i: int) -> tuple[sp.Number, int]:
        """Node i as (numeric coefficient, the rest): -2*x*y gives (-2, x*y)."""
        node = self.nodes[i]
        if node.op is sp.Mul and i not in self.protected:
            k = self.number(node.args[0])
            if k is not None:
                rest = node.args[1:]
                return k, rest[0] if len(rest) == 1 else self._intern(Node(sp.Mul, rest))
        return sp.S.One, i

    def pow(self, base: int, exp: int) -> int:
        e = self.number(exp)
        b = self.number(base)
        if e is not None:
            if e == 0:
                return self.const(1)
            if e == 1:
                return base
            if b is not None:
                folded = b ** e
                if _is_number(folded):
                    return self.const(folded)
        if b == 1:
            return base
        if e is not None and e.is_Integer and abs(e) > 2 and e % 2 == 0 and isinstance(self.shapes[base], (Domain, Lanes)):
            # an array's x**4 as (x**2)**2 and x**-6 as (x**-3)**2: one pass over it fewer, and the
            # inner power is shared with the derivative (4*x**3 = 4*x*x**2) and with the other
            # powers of x (a Lennard-Jones r**-12 - r**-6); a number's x**4 is one operation as it is
            return self.pow(self.pow(base, self.const(e // 2)), self.const(2))
        return self._intern(Node(sp.Pow, (base, exp)))

    def apply(self, op, *args: int) -> int:
        """Any other op. With only constant arguments SymPy evaluates it (sin(0) -> 0)."""
        if op is sp.Add:
            return self.add(*args)
        if op is sp.Mul:
            return self.mul(*args)
        if op is sp.Pow:
            return self.pow(*args)
        if op is sp.Piecewise:
            return self.piecewise(*zip(args[::2], args[1::2]))
        folded = self.registry.fold(self, op, list(args))
        if folded is not None:
            return folded
        if all(self.nodes[a].op == CONST for a in args):
            value = op(*[self.nodes[a].value for a in args])
            if _is_number(value) or isinstance(value, BooleanAtom):
                return self.const(value)
        if self.registry.commutative(op):
            args = tuple(sorted(set(args)))
            if len(args) == 1:
                return args[0]
        return self._intern(Node(op, tuple(args)))

    def piecewise(self, *pairs: tuple[int, int]) -> int:
        """Piecewise((expr, cond), ...): branches after an always-true condition are dropped."""
        kept: list[int] = []
        for expr, cond in pairs:
            value = self.nodes[cond].value if self.nodes[cond].op == CONST else None
            if value is sp.false:
                continue
            kept += [expr, cond]
            if value is sp.true:
                break
        if len(kept) == 2 and self.nodes[kept[1]].value is sp.true:
            return kept[0]
        if not kept:
            raise ValueError("Piecewise has no branch that can be taken")  # the front end checks first
        return self._intern(Node(sp.Piecewise, tuple(kept)))


def closure(graph: Graph, roots: list[int]) -> list[int]:
    """Ids of the roots and every node they depend on, in increasing (topological) order."""
    seen = set(roots)
    stack = list(roots)
    while stack:
        for a in graph[stack.pop()].args:
            if a not in seen:
                seen.add(a)
                stack.append(a)
    return sorted(seen)

