"""Sums with what their terms share taken out: fewer products for the same value.

Two callers: the front end (a sum the user wrote, which SymPy has scattered, `factored_sum`) and
reverse accumulation (an error signal, the sum of its users' contributions, `factored_signal`).
Both look only at the terms' own nodes (a term is a coefficient times a product of factors), so
a sum of k terms costs O(k) whatever the size of the graph.
"""

from __future__ import annotations

import math
from collections import Counter

import sympy as sp

from .graph import Domain
from .ops import constant_value


def factored_sum(graph, args: list[int], whole=frozenset()) -> int:
    """A sum with its numbers taken out where terms share them. SymPy distributes a number over a
    sum as it builds (2*(a + b) becomes 2*a + 2*b), so a sum the user wrote once comes back
    scattered, a new sum in every place it is scaled:
    - terms that share an integer factor have it taken out: 3*x0 + 6*x1 - 1 is 3*(x0 + 2*x1) - 1,
      so s in f_i = i*s - 1 is one shared node again;
    - otherwise terms with the same coefficient (up to sign) are summed before it multiplies:
      a/8 - b/8 + c/4 + d/4 is (a - b)/8 + (c + d)/4, one product per coefficient instead of one
      per term, and c + d is shared by every sum that scales it;
    - numbers that cost nothing stay where they are: 12/a - 24/b is two divisions, not
      12*(1/a - 2/b).
    Terms in `whole` are computed anyway (another value needs them): they are not taken apart."""
    numbers, terms = [], []
    for a in args:
        (terms if graph.number(a) is None else numbers).append(a)
    split = [(sp.S.One, a) if a in whole else graph.split_coeff(a) for a in terms]
    if not any(_priced(graph, c, r) for c, r in split):
        return graph.add(*args)  # the common case (x - y, 4/a - 4/b): no number costs a product
    if len(split) >= 2 and all(c.is_Integer for c, _ in split):
        content = math.gcd(*[int(c) for c, _ in split])
        if content != 1:
            if all(c < 0 for c, _ in split):
                content = -content
            inner = graph.add(*[graph.mul(graph.const(int(c) // content), rest) for c, rest in split])
            return graph.add(graph.mul(graph.const(content), inner), *numbers)
    groups: dict = {}  # |coefficient| -> its terms, in the order of the sum (a fraction taken
    for term, (c, rest) in zip(terms, split):  # out of the whole sum, a/2 + b, would only scatter halves)
        key = None if c is sp.S.One or c is sp.S.NegativeOne or constant_value(graph, rest) is not None else abs(c)
        groups.setdefault(key, []).append((term, c, rest))
    if all(len(group) < 2 for key, group in groups.items() if key is not None):
        return graph.add(*args)
    summed = list(numbers)
    for key, group in groups.items():  # constant terms (log(2*pi)/2) stay as they are, folded
        if key is None or len(group) < 2 or not any(_priced(graph, c, r) for _, c, r in group):  # 4/a + 4/b
            summed += [term for term, _, _ in group]
            continue
        sign = -1 if all(c < 0 for _, c, _ in group) else 1
        inner = graph.add(*[rest if c * sign > 0 else graph.mul(graph.const(-1), rest) for _, c, rest in group])
        summed.append(graph.mul(graph.const(sign * key), inner))
    return graph.add(*summed)


def _priced(graph, c, rest) -> int:
    """Whether the number c costs a multiplication in the term c*rest: not when it is 1 or -1,
    nor an integer over a reciprocal (12*x**-6 is printed 12/x**6)."""
    if c is sp.S.One or c is sp.S.NegativeOne:
        return 0
    node = graph[rest]
    if c.is_Integer and node.op is sp.Pow and (e := graph.number(node.args[1])) is not None and e < 0:
        return 0
    return 1


def factored_signal(graph, parts: list[int], appearances: Counter) -> int:
    """The sum of an error signal's contributions, with the factors they share taken out, then
    their numbers (factored_sum): the contributions a*g and b*g of g's users are g*(a + b),
    -(2*c1) - 2*c0*g is -2*(c1 + c0*g), and a*l*x + b*l*y + c is l*(a*x + b*y) + c. A product
    is a multiplication per entry (a pass over an array), so a factor taken out of k terms saves
    k - 1 of them. A product that something else needs as it is (a node with other users, or one
    also sent to a signal still to come: `appearances` counts those) is not taken apart: that
    would compute it twice. Only for scalars and values over a Sum's range: matrices multiply by
    matmul, lanes accumulate."""
    if len(parts) < 2 or any(graph.shapes[p] is not None and not isinstance(graph.shapes[p], Domain) for p in parts):
        return graph.add(*parts)
    whole = {p for p in parts if graph.users[p] or appearances[p]}  # needed as they are
    terms = [_opened(graph, p, appearances) for p in parts]
    if all(factors == [p] for p, (_, factors) in zip(parts, terms)):
        return factored_sum(graph, parts, whole)  # nothing opened: the numbers alone
    return _grouped(graph, terms, whole)


GROUPS = 8  # shared factors taken out of one sum at most: each round counts every term again


def _grouped(graph, terms: list[tuple], whole: set) -> int:
    """The sum of the terms (number, factors): the factor most of them share taken out of those
    (the earliest node among equals, so that the result does not depend on hashing), then again
    for the terms left, up to GROUPS times, so that a sum of k terms costs O(k)."""
    grouped = []
    for _ in range(GROUPS):
        counts = Counter(f for _, factors in terms for f in set(factors) if not graph.is_matrix(f))
        best = max(counts, key=lambda f: (counts[f], -f), default=None)
        if best is None or counts[best] < 2:
            break
        inside, outside = [], []
        for c, factors in terms:
            if best in factors:
                rest = list(factors)
                rest.remove(best)
                inside.append((c, rest))
            else:
                outside.append((c, factors))
        grouped.append(graph.mul(best, _grouped(graph, inside, whole)))  # as deep as a term has factors
        terms = outside
    if not terms:
        return graph.add(*grouped)
    return graph.add(*grouped, factored_sum(graph, [graph.mul(graph.const(c), *factors) for c, factors in terms], whole))


def _opened(graph, part: int, appearances: Counter) -> tuple:
    """A contribution as (number, factors): its products opened up as far as nothing else needs
    them (the contribution itself counts its sends still to come; a product inside it, its
    users beyond the one product that holds it)."""
    coeff, factors, stack = sp.S.One, [], [part]
    while stack:
        i = stack.pop()
        others = graph.users[i] + appearances[i] - (i != part)
        if graph[i].op is sp.Mul and i not in graph.protected and not others:
            for a in graph[i].args:
                k = graph.number(a)
                if k is None:
                    stack.append(a)
                else:
                    coeff *= k
        else:
            factors.append(i)
    return coeff, factors
