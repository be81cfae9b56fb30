"""Re-rolling: the loops of a model written over scalar symbols, found and computed as arrays.

A user who builds extended Rosenbrock in a Python loop over x0 ... x999 writes a sum of 500
terms that differ only in the symbols they read. Terms whose expression trees are the same up to
their leaves form a *family*, and one array computation over the family's lanes (one lane per
term, the last axis at run time) computes all of them. Before differentiation:

1. every node gets a structural signature: its op and its arguments' signatures, where any
   scalar symbol is alike, and so is any number that is a term or a factor;
2. the terms of a sum that share a signature, MIN_LANES of them or more, are a family; families
   are re-rolled when the model's hold MIN_TERMS terms or more together;
3. a family is rebuilt once over its lanes (backpropc.ops.lanes): where its terms read different
   symbols, a slice of one vector holding the symbols side by side (a gather where the positions
   do not step evenly); different numbers, a table; a value all terms share, lifted to broadcast
   over the lanes; and the family's part of the sum, the sum over the lanes. A symbol in the
   vector is read from it elsewhere too, so that its gradient is one entry of the vector's signal.

Backprop, forward mode and printing then see ordinary nodes, so the derivative code is
re-rolled as well, and its size does not grow with the number of terms. Signatures and
rebuilding are memoised by node (and by tuple of nodes): the pass is linear in the graph.
"""

from __future__ import annotations

import sympy as sp

from .graph import CONST, SYMBOL, Graph, closure
from .ops import RECORDS
from .ops.lanes import (
    lane_gather,
    lane_item,
    lane_lift,
    lane_slice,
    lane_sum,
    lane_values,
    lanes,
)

# Fewer terms are faster as straight-line code on Python floats than as NumPy calls on short
# arrays (docs/arrays.md, "Re-rolled scalar models"): a family has MIN_LANES terms or more, and
# the model's families MIN_TERMS together (extended Powell's four kinds of terms, 25 each at
# n = 100, run as fast either way, and its module is a third as long re-rolled).
MIN_LANES = 16
MIN_TERMS = 64
_PLAIN_KINDS = ("arithmetic", "elementwise", "logic")


class _Signatures:
    """Structural signatures, as small integers, with each node's arguments in a canonical order."""

    def __init__(self, graph: Graph, nodes: list[int], rank: dict[int, int]) -> None:
        self.graph = graph
        self.ids: dict[tuple, int] = {}
        self.of: dict[int, int] = {}
        self.opaque: set[int] = set()       # signatures that never match another node's
        self.order: dict[int, tuple] = {}   # node -> its arguments, aligned for matching
        number = self._intern(("number",))
        # the first argument (in the user's order) a node reads: alike arguments of a sum or a
        # product are aligned by it, so that w_j_k*x_k matches w_i_k*x_k for every k
        first: dict[int, int] = {}
        for i in nodes:
            node = graph[i]
            first[i] = rank.get(i, len(rank)) if node.op == SYMBOL else \
                min((first[a] for a in node.args), default=len(rank))
            if node.op == SYMBOL:
                plain = isinstance(node.value, sp.Symbol) and graph.shapes[i] is None
                key = ("symbol",) if plain else ("opaque", i)
            elif node.op == CONST:
                key = ("const", node.value)
            else:
                record = RECORDS.get(node.op)
                keys = [number if node.op in (sp.Add, sp.Mul) and graph.number(a) is not None
                        else self.of[a] for a in node.args]
                if record is None or record.kind not in _PLAIN_KINDS or graph.shapes[i] is not None \
                        or any(k in self.opaque for k in keys):
                    key = ("opaque", i)
                else:
                    args = node.args
                    if record.commutative or node.op in (sp.Add, sp.Mul):
                        pairs = sorted(zip(keys, [first[a] for a in args], args))
                        keys, args = [k for k, _, _ in pairs], tuple(a for _, _, a in pairs)
                    self.order[i] = args
                    key = (node.op, tuple(keys))
            self.of[i] = s = self._intern(key)
            if key[0] == "opaque":
                self.opaque.add(s)

    def runs(self, rows: list[int]) -> list[list[int]]:
        """The runs of consecutive alike rows, MIN_LANES long or longer, in order."""
        found, start = [], 0
        for k in range(1, len(rows) + 1):
            if k == len(rows) or self.of[rows[k]] != self.of[rows[start]]:
                group = rows[start:k]
                if len(group) >= MIN_LANES and self.of[group[0]] not in self.opaque and \
                        self.graph[group[0]].op != CONST and len(set(group)) == len(group):
                    found.append(group)
                start = k
        return found

    def _intern(self, key: tuple) -> int:
        return self.ids.setdefault(key, len(self.ids))

    def families(self, i: int) -> list[list[int]]:
        """The families among the terms of sum node i, in the order of their first term."""
        groups: dict[int, list[int]] = {}
        for a in self.graph[i].args:
            groups.setdefault(self.of[a], []).append(a)
        return [g for s, g in groups.items() if len(g) >= MIN_LANES and s not in self.opaque
                and self.graph[g[0]].op != CONST]


class _Family:
    """Walks the aligned nodes of a family's terms (a tuple per position of the common tree)."""

    def __init__(self, graph: Graph, signatures: _Signatures) -> None:
        self.graph = graph
        self.signatures = signatures

    def children(self, terms: tuple[int, ...]) -> list[tuple[int, ...]]:
        order = self.signatures.order
        rows = [order[t] for t in terms]
        return [tuple(row[p] for row in rows) for p in range(len(rows[0]))]

    def varying_symbols(self, terms: tuple[int, ...], found: set[int], seen: set) -> None:
        stack = [terms]
        while stack:
            terms = stack.pop()
            if terms in seen or len(set(terms)) == 1:
                continue
            seen.add(terms)
            head = self.graph[terms[0]]
            if head.op == SYMBOL:
                found.update(terms)
            elif head.op != CONST:
                stack.extend(self.children(terms))


def reroll(graph: Graph, roots: list[int], order: list[sp.Basic],
           rows: list[int] = ()) -> tuple[dict[int, int], list[int]]:
    """Rebuild what the roots depend on with every family (MIN_LANES terms or more) over lanes.
    `order` lists the arguments (the lane vector follows it); `rows` are values side by side (a
    residual model's residuals, among the roots), whose runs of alike rows are families too, each
    one value over lanes in the rows' order. Returns (old node -> new node for the nodes that
    changed, the rows with each run as one node): nothing changes when no family was found."""
    nodes = closure(graph, roots)
    rank = {graph.find_symbol(s): k for k, s in enumerate(order)}
    signatures = _Signatures(graph, nodes, rank)
    families = {i: f for i in nodes if graph[i].op is sp.Add and len(graph[i].args) >= MIN_LANES
                for f in [signatures.families(i)] if f}
    runs = signatures.runs(list(rows))
    if sum(len(g) for f in [*families.values(), runs] for g in f) < MIN_TERMS:
        return {}, list(rows)
    walker = _Family(graph, signatures)
    varying: set[int] = set()
    seen: set = set()
    for group in [g for groups in families.values() for g in groups] + runs:
        walker.varying_symbols(tuple(group), varying, seen)
    for groups in families.values():  # lanes in the order of the symbols the terms read
        for group in groups:
            group.sort(key=lambda t: _ranks(graph, t, rank))
    packed = sorted(varying, key=lambda s: (rank.get(s, len(rank)), s))
    vector = graph.apply(lanes, *packed) if packed else None
    position = {s: k for k, s in enumerate(packed)}
    depends = _depends_on_symbols(graph, nodes)
    new: dict[int, int] = {}

    def rebuilt(i: int) -> int:
        """Node i over the new graph, built on demand (family terms never are, one by one)."""
        stack = [(i, False)]
        while stack:
            j, ready = stack.pop()
            if j in new:
                continue
            node = graph[j]
            args = node.args
            if j in families:  # its terms in families are rebuilt over lanes, not one by one
                family = {a for group in families[j] for a in group}
                args = [a for a in node.args if a not in family]
            if j in position:  # read from the vector elsewhere too: its gradient is one entry
                new[j] = graph.apply(lane_item, vector, graph.const(position[j]))
            elif node.is_leaf:
                new[j] = j
            elif not ready:
                stack.append((j, True))
                stack.extend((a, False) for a in args if a not in new)
            elif j in families:
                new[j] = graph.add(*[new[a] for a in args], *[over_lanes(g) for g in families[j]])
            elif any(new[a] != a for a in node.args):
                new[j] = graph.apply(node.op, *[new[a] for a in node.args])
            else:
                new[j] = j
        return new[i]

    memo: dict[tuple, int] = {}  # aligned nodes of alike terms -> their value over lanes

    def over_lanes(group: list[int]) -> int:
        total = graph.apply(lane_sum, lane_value(group))
        graph.families.setdefault(total, (len(group), group[0]))  # a statement of its own, named in a comment
        return total

    def lane_value(group: list[int]) -> int:
        count = len(group)
        stack = [(tuple(group), False)]
        while stack:
            terms, ready = stack.pop()
            if terms in memo:
                continue
            head = graph[terms[0]]
            if len(set(terms)) == 1:  # a value all terms share
                shared = rebuilt(terms[0])
                memo[terms] = graph.apply(lane_lift, shared, graph.const(count)) if depends[terms[0]] else shared
            elif head.op == SYMBOL:
                memo[terms] = _read(graph, vector, [position[t] for t in terms])
            elif head.op == CONST:
                values = tuple(float(graph[t].value) for t in terms)
                table = graph.const(graph.table(("values", values)))
                memo[terms] = graph.apply(lane_values, table, *([vector] if vector is not None else []))
            elif not ready:
                stack.append((terms, True))
                stack.extend((c, False) for c in walker.children(terms) if c not in memo)
            else:
                memo[terms] = graph.apply(head.op, *[memo[c] for c in walker.children(terms)])
        return memo[tuple(group)]

    run_of = {group[0]: group for group in runs}
    in_run = {r for group in runs for r in group}
    for root in roots:
        if root not in in_run:  # a run's rows are computed over lanes, not one by one
            rebuilt(root)
    new_rows = [lane_value(run_of[r]) if r in run_of else rebuilt(r) for r in rows if r in run_of or r not in in_run]
    return {i: j for i, j in new.items() if i != j}, new_rows


def _read(graph: Graph, vector: int, positions: list[int]) -> int:
    """The lanes of the vector at these positions: a slice when they step evenly, else a gather."""
    start, step = positions[0], positions[1] - positions[0]
    if step > 0 and all(p == start + k * step for k, p in enumerate(positions)):
        stop = positions[-1] + 1
        return graph.apply(lane_slice, vector, graph.const(start), graph.const(stop), graph.const(step))
    table = graph.table(("index", tuple(positions)))
    return graph.apply(lane_gather, vector, graph.const(table))


def _ranks(graph: Graph, term: int, rank: dict[int, int]) -> tuple[int, ...]:
    """The positions (in the argument order) of the symbols a term reads, sorted: terms sorted by
    them follow the user's loop, so that their lanes read the vector in even steps."""
    found, stack, seen = [], [term], set()
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        if graph[i].op == SYMBOL:
            found.append(rank.get(i, len(rank)))
        stack.extend(graph[i].args)
    return tuple(sorted(found))


def _depends_on_symbols(graph: Graph, nodes: list[int]) -> dict[int, bool]:
    """Whether each node depends on an argument (a value that may be a batch, which must be
    lifted to broadcast over lanes)."""
    depends: dict[int, bool] = {}
    for i in nodes:
        node = graph[i]
        depends[i] = node.op == SYMBOL or any(depends[a] for a in node.args)
    return depends
