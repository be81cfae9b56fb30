"""Forward accumulation: the tangent of every node along a direction, by the ops' forward rules.

Input: a graph, the nodes to differentiate (`roots`), and the tangent node of each seed (a
parameter's direction, `w_dot`). Output: the tangent node of each root (None where it is a
symbolic zero). Nodes are visited once, in topological order, and only those between a seed and
a root; the tangents are nodes of the same graph, so they share with everything else.

Applied to the nodes of the reverse pass, this differentiates the backward sweep itself
(forward-over-reverse): the tangents of the gradient nodes are a Hessian-vector product.
"""

from __future__ import annotations

from .graph import Graph, closure
from .ops import Ref, call, record_for
from .ops.matrix import fill


def tangents(graph: Graph, roots: list[int], seeds: dict[int, int]) -> dict[int, int | None]:
    """{node: its tangent node} for every node between the seeds and the roots whose tangent
    is not a symbolic zero (the seeds included: a root may be one)."""
    live = closure(graph, roots)
    tangent: dict[int, Ref | None] = {s: Ref(graph, t) for s, t in seeds.items()}
    for i in live:  # increasing ids: arguments first
        if i in tangent:
            continue
        node = graph[i]
        if node.is_leaf:
            tangent[i] = None
            continue
        arg_tangents = [tangent.get(a) for a in node.args]
        if all(t is None for t in arg_tangents):
            tangent[i] = None
            continue
        saved, graph.current_origin = graph.current_origin, i
        t = record_for(node.op).jvp(Ref(graph, i), [Ref(graph, a) for a in node.args], arg_tangents)
        graph.current_origin = saved
        if t is not None and graph.is_matrix(i) and not graph.is_matrix(t.id):
            t = call(fill, t, Ref(graph, i))  # a scalar's tangent spread over a matrix
        tangent[i] = t
    return {i: t.id for i, t in tangent.items() if t is not None}
