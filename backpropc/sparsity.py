"""The structure of the Hessian, read off the graph, and a colouring that compresses it.

The Hessian-vector product's output for parameter i is a graph node that is linear in the
directions: the directions it depends on are the non-zero columns of row i of the Hessian
(structurally: an entry that is zero at every point is left out). Columns that never share a
row can be seeded together in one product (Curtis, Powell and Reid): a greedy colouring of the
column-intersection graph gives the groups, so a banded Hessian costs a handful of products
whatever its size, and the work is proportional to the non-zeros.
"""

from __future__ import annotations

from .graph import Graph, closure


def hessian_pattern(graph: Graph, rows: list[int | None], directions: list[int]) -> list[list[int]]:
    """For each row (a Hessian-vector product node, None for a zero row), the sorted columns
    (indices into `directions`) it depends on; made symmetric, as the Hessian is."""
    column = {d: j for j, d in enumerate(directions)}
    roots = [r for r in rows if r is not None]
    depends: dict[int, frozenset] = {}
    empty = frozenset()
    for i in closure(graph, roots):  # arguments first
        if i in column:
            depends[i] = frozenset((column[i],))
            continue
        args = graph[i].args
        if not args:
            depends[i] = empty
        elif len(args) == 1:
            depends[i] = depends[args[0]]
        else:
            found = [depends[a] for a in args if depends[a]]
            depends[i] = empty if not found else found[0] if len(found) == 1 else frozenset().union(*found)
    pattern = [set() if r is None else set(depends[r]) for r in rows]
    for i, cols in enumerate([sorted(c) for c in pattern]):
        for j in cols:
            pattern[j].add(i)
    return [sorted(c) for c in pattern]


def colour_columns(pattern: list[list[int]]) -> list[int]:
    """A colour per column such that no row has two columns of one colour (greedy, in order)."""
    rows_of: list[list[int]] = [[] for _ in pattern]
    for i, cols in enumerate(pattern):
        for j in cols:
            rows_of[j].append(i)
    colour = [-1] * len(pattern)
    for j in range(len(pattern)):
        taken = {colour[k] for i in rows_of[j] for k in pattern[i] if colour[k] >= 0}
        c = 0
        while c in taken:
            c += 1
        colour[j] = c
    return colour
