"""Forward accumulation: the tangent of every node along a direction, by the ops' forward rules.

Input: a graph, the nodes to differentiate (`roots`), and the tangent node of each seed (a
parameter's direction, `w_dot`). Output: the tangent node of each root (None where it is a
symbolic zero). Nodes are visited once, in topological order, and only those between a seed and
a root; the tangents are nodes of the same graph, so they share with everything else.

Applied to the nodes of the reverse pass, this differentiates the backward sweep itself
(forward-over-reverse): the tangents of the gradient nodes are a Hessian-vector product.
"""

from __future__ import annotations

import sympy as sp

from .graph import Domain, Graph, closure
from .ops import Ref, call, record_for
from .ops.matrix import fill


def tangents(graph: Graph, roots: list[int], seeds: dict[int, int]) -> dict[int, int | None]:
    """{node: its tangent node} for every node between the seeds and the roots whose tangent
    is not a symbolic zero (the seeds included: a root may be one)."""
    live = closure(graph, roots)
    ends = set(roots)
    tangent: dict[int, Ref | None] = {s: Ref(graph, t) for s, t in seeds.items()}
    tangent_nodes = set(seeds.values())
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
        if node.op is sp.Add and (graph.shapes[i] is None or isinstance(graph.shapes[i], Domain)):
            t = _tangent_of_sum(graph, node.args, arg_tangents, tangent_nodes, ends)
        else:
            t = record_for(node.op).jvp(Ref(graph, i), [Ref(graph, a) for a in node.args], arg_tangents)
            if t is not None and _is_new_scalar_sum(graph, t.id):  # a product rule's terms
                t = Ref(graph, _factored(graph, list(graph[t.id].args), tangent_nodes))
        graph.current_origin = saved
        if t is not None and graph.is_matrix(i) and not graph.is_matrix(t.id):
            t = call(fill, t, Ref(graph, i))  # a scalar's tangent spread over a matrix
        tangent[i] = t
        if t is not None:
            tangent_nodes.add(t.id)
    return {i: t.id for i, t in tangent.items() if t is not None}


def _tangent_of_sum(graph: Graph, args, arg_tangents: list, tangent_nodes: set, ends: set) -> Ref:
    """The tangent of a sum with the tangents its terms share taken out, as the reverse pass
    sums an error signal: c3 = c0 + c0*w1 has the tangent c0_dot*(1 + w1) + c0*w1_dot (where
    1 + w1 is the node c0's error signal already multiplies by), not c0_dot + c0_dot*w1 +
    c0*w1_dot. The tangent of an argument that only this sum reads (and that is no root) is a
    sum nothing else will read: its terms are taken in as they are."""
    terms = []
    for a, t in zip(args, arg_tangents):
        if t is None:
            continue
        node = graph[t.id]
        only_here = node.op is sp.Add and graph.users[t.id] == 0 and graph.users[a] == 1 and a not in ends
        terms.extend(node.args if only_here else (t.id,))
    return Ref(graph, _factored(graph, terms, tangent_nodes))


def _scaled_tangent(graph: Graph, i: int, tangent_nodes: set) -> tuple[int, tuple]:
    """(v_dot, (k,)) when node i is k*v_dot for a number k (the tangent of 1 - v is -v_dot),
    else (i, ())."""
    node = graph[i]
    if (node.op is sp.Mul and len(node.args) == 2 and graph.number(node.args[0]) is not None
            and node.args[1] in tangent_nodes):
        return node.args[1], (node.args[0],)
    return i, ()


def _is_new_scalar_sum(graph: Graph, i: int) -> bool:
    """Whether node i is a sum of scalars (or of values over a range) that nothing reads yet."""
    return graph[i].op is sp.Add and graph.users[i] == 0 and (graph.shapes[i] is None or
                                                              isinstance(graph.shapes[i], Domain))


def _factored(graph: Graph, terms: list[int], tangent_nodes: set) -> int:
    """The sum of `terms` with the terms that multiply one tangent summed first: a*v_dot +
    b*v_dot is (a + b)*v_dot."""
    groups: dict[int, list] = {}  # a tangent -> the terms it multiplies, each as (term, its other factors)
    for term in terms:
        node = graph[term]
        dots = [f for f in node.args if f in tangent_nodes] if node.op is sp.Mul else []
        if len(dots) == 1 and term not in tangent_nodes:
            rest = list(node.args)
            rest.remove(dots[0])
            dot, number = _scaled_tangent(graph, dots[0], tangent_nodes)
            groups.setdefault(dot, []).append((term, tuple(rest) + number))
        else:  # a tangent, or not a tangent times factors: the same term twice is twice it
            dot, number = _scaled_tangent(graph, term, tangent_nodes)
            groups.setdefault(dot, []).append((term, number))
    summed = []
    for dot, group in groups.items():  # in the order of the sum: the result does not depend on hashing
        if len(group) == 1:
            summed.append(group[0][0])
        else:
            partial = graph.add(*[graph.mul(*rest) if rest else graph.const(1) for _, rest in group])
            summed.append(graph.mul(dot, partial))
    return graph.add(*summed)
