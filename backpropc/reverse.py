"""Activity analysis and reverse accumulation.

Input: a `Program` and the seed node (dObjective/dLoss). Output: a `Backward`: each active node's
error signal `v_bar`, the gradient node of every `wrt` symbol, and which nodes sent each signal
its contributions. Nodes are visited once, in reverse topological order (the lecture's slide 14);
an error signal is the sum of the contributions its users send (the multivariate chain rule).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .factoring import factored_signal
from .graph import SYMBOL, Domain
from .model import Program
from .ops import Ref, call, record_for
from .ops.array import PerExample, combine_contributions, fit_contribution, spread_over
from .ops.matrix import sum_entries


@dataclass
class Backward:
    signals: dict[int, int]            # forward node -> its error signal node
    senders: dict[int, list[int]]      # forward node -> the users whose rules sent contributions
    grads: list[int]                   # gradient node of each wrt symbol, in wrt order
    marks: dict[int, int]              # forward node -> graph size once its signal existed


def active_nodes(program: Program, root: int | None = None) -> list[bool]:
    """Nodes that depend on a wrt symbol AND reach the root (the loss by default): only they
    get error signals."""
    graph, n = program.graph, program.n_forward
    root = program.loss if root is None else root
    wrt = set(program.wrt)
    depends = [False] * n
    for i in range(n):
        node = graph[i]
        depends[i] = (node.op == SYMBOL and node.value in wrt) or any(depends[a] for a in node.args)
    reaches = [False] * n
    reaches[root] = True
    for i in range(root, -1, -1):
        if reaches[i]:
            for a in graph[i].args:
                reaches[a] = True
    return [d and r for d, r in zip(depends, reaches)]


def backprop(program: Program, seed: int, root: int | None = None) -> Backward:
    """Error signals of the root (the loss by default, seeded with `seed`) in every active node."""
    graph = program.graph
    root = program.loss if root is None else root
    active = active_nodes(program, root)
    contributions: dict[int, list[int]] = {root: [seed]} if active[root] else {}
    senders: dict[int, list[int]] = {}
    signals: dict[int, int] = {}
    marks: dict[int, int] = {}
    per_example = PerExample(graph, frozenset(graph.find_symbol(s) for s in program.inputs) - {None})
    appearances: Counter = Counter()  # how often each node is a contribution to a signal to come
    for v in range(root, -1, -1):
        parts = contributions.pop(v, None)
        if not parts:
            continue
        appearances.subtract(parts)  # what is left counts the contributions still to be summed
        graph.current_origin = v
        shape = graph.shapes[v]
        signals[v] = v_bar = factored_signal(graph, parts, appearances) if shape is None or isinstance(shape, Domain) \
            else combine_contributions(graph, v, parts)
        marks[v] = len(graph)
        node = graph[v]
        if node.is_leaf:
            continue
        needed = [active[a] for a in node.args]
        args = [Ref(graph, a) for a in node.args]
        record = record_for(node.op)
        signal = Ref(graph, v_bar)
        if "array" in record.tags and isinstance(graph.shapes[v], Domain) and graph.shapes[v_bar] is None \
                and per_example(v_bar):  # an example's number at every entry: placed entry by entry
            signal = spread_over(signal, Ref(graph, v))
        for a, part in zip(node.args, record.vjp(signal, Ref(graph, v), args, needed)):
            if part is not None and active[a]:
                if graph.is_matrix(part.id) and not graph.is_matrix(a):  # a scalar spread over a matrix
                    part = call(sum_entries, part)
                part = fit_contribution(graph, part, a, v)  # a Sum's range summed into a scalar
                contributions.setdefault(a, []).append(part.id)
                appearances[part.id] += 1
                senders.setdefault(a, []).append(v)
    graph.current_origin = None
    zero = graph.const(0)
    grads = [signals.get(graph.symbol(w), zero) for w in program.wrt]
    return Backward(signals, senders, grads, marks)
