"""The structure of the Hessian, read off the graph, and a colouring that compresses it.

The Hessian-vector product's output for a parameter is a graph node that is linear in the
directions: the direction entries it depends on are the non-zero columns of its rows of the
Hessian (structurally: an entry that is zero at every point is left out). Dependence is carried
node by node as sets of columns (frozensets, or EVERY for all of them): a scalar node has one, a
value over a Sum's range or an indexed array an object array of them, entry by entry, so that a
window x[i + 1] or the add into a slice moves each entry's set to where the runtime moves the
entry's value. An entry's set is as large as its row of the Hessian, so a banded Hessian is
read in time proportional to n. An op this pass does not follow entry by entry makes its value
depend on every column any of its arguments depends on: larger sets, never smaller ones, so the
pattern always holds every non-zero.

Columns that never share a row can be seeded together in one product (Curtis, Powell and Reid):
a greedy colouring of the column-intersection graph gives the groups, so a banded Hessian costs a
handful of products whatever its size, and the work is proportional to the non-zeros.
"""

from __future__ import annotations

from functools import reduce

import numpy as np
import sympy as sp

from .graph import CONST, Domain, Graph, Whole, closure
from .ops.array import (
    _accumulate_groups,
    accumulate,
    array_dim,
    gather,
    inner_of,
    lift,
    nest,
    ones_over,
    outer_of,
    scatter,
    segment_sum,
    span,
    unwindow,
    window,
)
from .ops.matrix import MatrixOp, block, dim, entries, entry, eye, fill, matmul, ones, place, transpose, unblock
from .runtime.array import _key, _lift, _nest


class _NotFollowed(Exception):
    """An index this pass cannot read at compile time (a named size, an index computed by an op)."""


class HessianTooLarge(Exception):
    """More structural non-zeros than a module can index (the count is the argument)."""


class _Every:
    """The set of every column: its union with any set is itself (so a value that depends on
    the whole of the parameters costs one object, not n columns per entry)."""

    def __or__(self, other):
        return NotImplemented if isinstance(other, np.ndarray) else self  # arrays: entry by entry

    __ror__ = __or__

    def __repr__(self):
        return "EVERY"


EMPTY, EVERY = frozenset(), _Every()
# set entries an array value may hold in all before the Hessian is read as dense (memory)
BUDGET = 20_000_000


def hessian_pattern(graph: Graph, rows: list[int | None], directions: list[int],
                    sizes: list[int], max_entries: int) -> list[list[int]] | None:
    """For each flat row (the parameters' entries in order), the sorted columns it depends on,
    made symmetric as the Hessian is; `rows` holds each parameter's Hessian-vector product node
    (None for zero rows), `directions` its direction node, `sizes` its number of entries. None
    when every row is full (a dense Hessian); HessianTooLarge past `max_entries` non-zeros."""
    n, seeds = _column_seeds(graph, directions, sizes)
    try:
        depends = _Dependence(graph, seeds, n).of([r for r in rows if r is not None])
    except (_NotFollowed, ValueError, IndexError):  # read as dense
        return None
    flat = []
    for r, d, size in zip(rows, directions, sizes):
        value = EMPTY if r is None else depends[r]
        if np.ndim(value):  # an entry's set per entry of the parameter, in C order
            flat += np.broadcast_to(value, np.shape(seeds[d])).ravel().tolist()
        else:
            flat += [value] * size
    count = sum(n if c is EVERY else len(c) for c in flat)
    if count > max_entries:
        raise HessianTooLarge(count)
    if count == n * n:
        return None
    pattern = [set(range(n)) if c is EVERY else set(c) for c in flat]
    for i, cols in enumerate([sorted(c) for c in pattern]):
        for j in cols:
            pattern[j].add(i)
    return [sorted(c) for c in pattern]


def jacobian_pattern(graph: Graph, residuals: list[int], params: list[int | None],
                     sizes: list[int]) -> list[list[int]] | None:
    """For each residual (one row of an example), the sorted columns (the parameters' entries in
    order) it depends on; `params` holds each parameter's node (None where no residual reads it)
    and `sizes` its number of entries. None when the dependence cannot be read (every entry)."""
    try:
        n, seeds = _column_seeds(graph, params, sizes)
        depends = _Dependence(graph, seeds, n).of(residuals)
    except (_NotFollowed, ValueError, IndexError):
        return None
    rows = [_union([depends[r]], n) for r in residuals]
    return [list(range(n)) if c is EVERY else sorted(c) for c in rows]


def _column_seeds(graph: Graph, nodes: list[int | None], sizes: list[int]) -> tuple[int, dict]:
    """(the number of columns, each node's set of columns: its entries' places in the flat vector,
    one set per entry of an array node); a None node reads none."""
    offsets = np.cumsum([0] + sizes)
    seeds = {}
    for node, start, size in zip(nodes, offsets, sizes):
        if node is not None:
            sets = np.empty(size, dtype=object)
            sets[:] = [frozenset((j,)) for j in range(start, start + size)]
            seeds[node] = sets[0] if graph.shapes[node] is None else sets.reshape(_dims(graph.shapes[node]))
    return int(offsets[-1]), seeds


def _dims(shape) -> tuple[int, ...]:
    dims = shape.dims if isinstance(shape, Whole) else shape
    if not all(isinstance(d, int) or getattr(d, "is_Integer", False) for d in dims):
        raise _NotFollowed
    return tuple(int(d) for d in dims)


def _union(values, n: int):
    """Every column any of the values depends on, as one set (EVERY when that is all n)."""
    parts = [p for v in values for p in (np.ravel(v).tolist() if np.ndim(v) else [v])]
    if any(p is EVERY for p in parts):
        return EVERY
    union = EMPTY.union(*parts)
    return EVERY if len(union) == n else union


def _rows_of(a: np.ndarray, n: int) -> np.ndarray:
    """The union of each row of a 2-D array of sets."""
    out = np.empty(a.shape[0], dtype=object)
    out[:] = [_union([row], n) for row in a]
    return out


def _elementwise(deps):
    arrays = [d for d in deps if np.ndim(d)]
    scalar = reduce(lambda a, b: a | b, (d for d in deps if not np.ndim(d)), EMPTY)
    if not arrays:
        return scalar
    out = reduce(np.bitwise_or, arrays)
    return out | scalar if scalar else out


# ops that compute indices from indices (the runtime's own helpers evaluate them)
INDEX_OPS = frozenset({sp.Add, sp.Mul, span, nest, outer_of, inner_of, lift})
# ops whose value depends on no direction: index ranges, shapes, constant matrices
NO_DEPENDENCE = frozenset({array_dim, span, nest, outer_of, inner_of, ones_over, dim, eye, ones})


class _Dependence:
    """The columns each node depends on, and the compile-time values of index nodes."""

    def __init__(self, graph: Graph, seeds: dict, n: int) -> None:
        self.graph, self.seeds, self.n, self.indices = graph, seeds, n, {}
        self.rules = {window: self._window, unwindow: self._unwindow, gather: self._gather,
                      scatter: self._scatter, accumulate: self._accumulate, lift: self._lift,
                      segment_sum: self._segment_sum, matmul: self._matmul, transpose: self._transpose,
                      entry: self._entry, place: self._place, fill: lambda node, deps: deps[0],
                      block: self._block, unblock: self._unblock, entries: self._entries}

    def of(self, roots: list[int]) -> dict:
        graph, depends = self.graph, {}
        for i in closure(graph, roots):  # arguments first
            node = graph[i]
            if i in self.seeds:
                depends[i] = self.seeds[i]
                continue
            if not node.args or node.op in NO_DEPENDENCE:
                depends[i] = EMPTY
                continue
            deps = [depends[a] for a in node.args]
            rule = self.rules.get(node.op)
            if rule is not None:
                try:
                    depends[i] = rule(node, deps)
                    continue
                except _NotFollowed:  # an index known only at run time: anywhere in the array
                    pass
            elif not (isinstance(node.op, type) and issubclass(node.op, MatrixOp)):
                depends[i] = _elementwise(deps)
                continue
            # any other array or matrix op: each entry may read every entry of its arguments
            like = node.args[1] if node.op in (unwindow, scatter) else node.args[0]
            whole = rule is not None and isinstance(self.graph.shapes[like], Whole)
            union = _union(deps, self.n)
            depends[i] = np.full(_dims(self.graph.shapes[like]), union, dtype=object) if whole and \
                node.op in (unwindow, scatter, accumulate) else union
            if np.ndim(depends[i]) and sum(0 if c is EVERY else len(c) for c in depends[i].flat) > BUDGET:
                raise _NotFollowed  # too many columns in too many entries: read as dense
        return depends

    def index(self, i: int):
        """The value of an index node (a bound, a size, the index values of a range) at compile time."""
        if i not in self.indices:
            self.indices[i] = self._index(i)
        return self.indices[i]

    def _index(self, i: int):
        node = self.graph[i]
        if node.op == CONST and node.value.is_Integer:
            return int(node.value)
        args = [self.index(a) for a in node.args] if node.op in INDEX_OPS else None
        if node.op is array_dim:
            return _dims(self.graph.shapes[node.args[0]])[self.index(node.args[1])]
        if node.op is sp.Add:
            return reduce(lambda a, b: a + b, args)
        if node.op is sp.Mul:
            return reduce(lambda a, b: a * b, args)
        if node.op is span:
            return np.arange(*args)
        if node.op is nest:
            return _nest(*args)
        if node.op in (outer_of, inner_of):
            return args[0][0 if node.op is outer_of else 1]
        if node.op is lift:
            return _lift(*args)
        raise _NotFollowed

    def _axes(self, args):
        return _key([self.index(a) for a in args])

    def _zeros(self, like: int) -> np.ndarray:
        return np.full(_dims(self.graph.shapes[like]), EMPTY, dtype=object)

    def _window(self, node, deps):
        x = deps[0]
        return x[self._axes(node.args[2:])] if np.ndim(x) else x

    def _unwindow(self, node, deps):
        out = self._zeros(node.args[1])
        out[self._axes(node.args[2:])] |= deps[0]
        return out

    def _gather(self, node, deps):
        x = deps[0]
        if not np.ndim(x):
            return x
        index = tuple(self.index(a) for a in node.args[1:])
        if len(index) != np.ndim(x):
            raise _NotFollowed
        return x[index]

    def _scattered(self, out, g, index_nodes):
        index = np.broadcast_arrays(*[self.index(a) for a in index_nodes])
        np.bitwise_or.at(out, tuple(index), np.broadcast_to(np.asarray(g, dtype=object), index[0].shape))
        return out

    def _scatter(self, node, deps):
        return self._scattered(self._zeros(node.args[1]), deps[0], node.args[2:])

    def _accumulate(self, node, deps):
        rank, windows = self.index(node.args[1]), self.index(node.args[2])
        slices, gathers = _accumulate_groups(list(range(3, len(node.args))), rank, windows)
        out = self._zeros(node.args[0])
        for k, *axes in slices:
            out[self._axes([node.args[a] for a in axes])] |= deps[k]
        for k, *index in gathers:
            self._scattered(out, deps[k], [node.args[a] for a in index])
        return out

    def _lift(self, node, deps):
        a = deps[0]
        return a[self.index(node.args[1])] if np.ndim(a) == 1 else _union([a], self.n)

    def _segment_sum(self, node, deps):
        parent = self.index(node.args[1])
        shape = self.graph.shapes[node.args[2]]
        loop = self.index(shape.loop) if isinstance(shape, Domain) else None
        if loop is None or np.ndim(deps[0]) > 1:
            raise _NotFollowed
        return self._scattered(np.full(np.shape(loop)[-1], EMPTY, dtype=object), deps[0], [node.args[1]]) \
            if np.ndim(parent) == 1 else _union([deps[0]], self.n)

    # matrices (a parameter's matrix has no batch axes: the data's sets are empty)
    def _matmul(self, node, deps):
        a, b = deps
        rows = _rows_of(a, self.n)[:, None] if np.ndim(a) else a
        cols = _rows_of(b.T, self.n)[None, :] if np.ndim(b) else b
        if not (np.ndim(a) or np.ndim(b)):
            return a | b
        shapes = [self.graph.shapes[x] for x in node.args]
        dims = (_dims(shapes[0])[0] if shapes[0] else 1, _dims(shapes[1])[1] if shapes[1] else 1)
        return np.broadcast_to(rows | cols, dims)  # entry (i, j) reads row i of a and column j of b

    def _transpose(self, node, deps):
        return deps[0].T if np.ndim(deps[0]) else deps[0]

    def _entry(self, node, deps):
        x = deps[0]
        return x[self.index(node.args[1]), self.index(node.args[2])] if np.ndim(x) == 2 else x

    def _place(self, node, deps):
        out = self._zeros(node.args[1])
        out[self.index(node.args[2]), self.index(node.args[3])] = deps[0]
        return out

    def _slices(self, args):
        r0, r1, rs, c0, c1, cs = (self.index(a) for a in args)
        return slice(r0, r1, rs), slice(c0, c1, cs)

    def _block(self, node, deps):
        return deps[0][self._slices(node.args[1:])] if np.ndim(deps[0]) else deps[0]

    def _unblock(self, node, deps):
        out = self._zeros(node.args[1])
        out[self._slices(node.args[2:])] |= deps[0]
        return out

    def _entries(self, node, deps):
        rows, cols = self.index(node.args[-2]), self.index(node.args[-1])
        return np.array(deps[:-2], dtype=object).reshape(rows, cols)


def colour_columns(pattern: list[list[int]], columns: int | None = None) -> list[int]:
    """A colour per column such that no row has two columns of one colour (greedy, in order);
    `pattern` lists each row's columns, of `columns` in all (as many as rows: a square matrix)."""
    columns = len(pattern) if columns is None else columns
    rows_of: list[list[int]] = [[] for _ in range(columns)]
    for i, cols in enumerate(pattern):
        for j in cols:
            rows_of[j].append(i)
    colour = [-1] * columns
    for j in range(columns):
        taken = {colour[k] for i in rows_of[j] for k in pattern[i] if colour[k] >= 0}
        c = 0
        while c in taken:
            c += 1
        colour[j] = c
    return colour


def runs(items: list, longest: int = 8) -> tuple:
    """`items` as (repeats, block) pairs, each block of up to `longest` items repeated in turn:
    at each point the period that covers the most items; items that repeat nothing share one
    block. A banded pattern is then a few runs whatever its size."""
    out, loose, k = [], [], 0
    while k < len(items):
        period, repeats = 1, 1
        for p in range(1, longest + 1):
            block = items[k:k + p]
            r = 1
            while items[k + r * p:k + (r + 1) * p] == block:
                r += 1
            if r > 1 and r * p > repeats * period:
                period, repeats = p, r
        if repeats == 1:
            loose.append(items[k])
            k += 1
            continue
        if loose:
            out.append((1, tuple(loose)))
            loose = []
        out.append((repeats, tuple(items[k:k + period])))
        k += repeats * period
    if loose:
        out.append((1, tuple(loose)))
    return tuple(out)
