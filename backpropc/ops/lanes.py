"""Lane ops: the array code of re-rolled families (backpropc.reroll).

A family is a set of isomorphic terms of one sum; over its lanes (one per term, the last axis at
run time, so that batch axes lead and broadcast as everywhere else) its computation is written
once. The symbols the terms read sit side by side in one vector (`lanes`); a term's symbol is a
slice of it (`lane_slice`, a view) or a gather (`lane_gather`, a table of positions); numbers
that differ between terms are a table (`lane_values`); a value the terms share is lifted over
the lanes (`lane_lift`); the family's sum is `lane_sum`. The adjoint of a slice or gather adds
into the vector's signal, whose entries are the symbols' signals (`lane_item`).
"""

from __future__ import annotations

from ..graph import Lanes
from .base import Op, call, unit_cost
from .matrix import MatrixOp, linear_jvp


class LaneOp(MatrixOp):
    """A lane op: a placeholder SymPy never evaluates."""


class lanes(LaneOp):
    """The arguments side by side along a last axis."""

    nargs = None

    def _sympystr(self, printer):
        return _listed([printer._print(a) for a in self.args])


def _listed(texts) -> str:
    """[x0, x1, ..., x999]: a long list shown by its ends."""
    texts = list(texts)
    shown = texts if len(texts) <= 6 else texts[:3] + ["..."] + texts[-2:]
    return "[" + ", ".join(shown) + "]"


class lane_item(LaneOp):
    """Entry k of a lane vector (along its last axis)."""

    nargs, math = 2, "{0}[{1}]"


class lane_slice(LaneOp):
    """x[..., start:stop:step]: the lanes of a family that read one position of its terms."""

    nargs = 4

    def _sympystr(self, printer):
        return _slice_math([printer._print(a) for a in self.args])


def _slice_math(texts) -> str:
    """x[1:1000], or x[0:999:2] when the lanes step over the vector."""
    x, start, stop, step = texts
    return f"{x}[{start}:{stop}]" if step == "1" else f"{x}[{start}:{stop}:{step}]"


class lane_unslice(LaneOp):
    """Zeros shaped like x with g added into x[..., start:stop:step]: lane_slice's adjoint.
    Arguments: g, x, start, stop, step."""

    nargs, math = 5, "({0} at {1}[{2}:{3}:{4}])"


class lane_gather(LaneOp):
    """x[..., TABLE_k]: lanes at the positions a table lists."""

    nargs, math = 2, "{0}[table {1}]"


class lane_scatter(LaneOp):
    """Zeros shaped like x with g added at the positions of table k (repeats add up)."""

    nargs, math = 3, "({0} at {1}[table {2}])"


class lane_accumulate(LaneOp):
    """Zeros shaped like x with every slice's and gather's signal added in: the signal of a lane
    vector in one array. Arguments: x, the number of slices, (g, start, stop, step) per slice,
    then (g, table) per gather."""

    nargs = None

    def _sympystr(self, printer):
        texts = [printer._print(a) for a in self.args]
        slices, gathers = _accumulated(texts[2:], int(self.args[1]))
        parts = [f"({g} at {_slice_math([texts[0], a, b, c])})" for g, a, b, c in slices]
        return " + ".join(parts + [f"({g} at {texts[0]}[table {k}])" for g, k in gathers])


def _accumulated(args, slices: int):
    """The (g, start, stop, step) groups and the (g, table) groups of lane_accumulate's arguments
    after (x, number of slices)."""
    cut = 4 * slices
    head, tail = list(args[:cut]), list(args[cut:])
    return [head[k:k + 4] for k in range(0, cut, 4)], [tail[k:k + 2] for k in range(0, len(tail), 2)]


class lane_values(LaneOp):
    """Table k: numbers that differ from term to term. Arguments: k, and the lane vector the
    terms read, if any: numbers are weak, so the table takes its float type (float32 stays)."""

    nargs, math = (1, 2), "table {0}"


class lane_lift(LaneOp):
    """A value every term of a family shares, given a last axis to broadcast over its lanes.
    Arguments: the value, the number of lanes."""

    nargs, math = 2, "{0}"


class lane_sum(LaneOp):
    """The family's sum: its lanes added up."""

    nargs, math = 1, "sum({0})"


class lane_uniform_sum(LaneOp):
    """The sum over `count` lanes of a value the same in each (its one lane, times count).
    Arguments: the value, the number of lanes."""

    nargs, math = 2, "{1}*{0}"


def table_name(k) -> str:
    return f"TABLE_{k}"


def _table_code(k, like=None) -> str:
    return table_name(k) if like is None else f"_table_like({table_name(k)}, {like})"


# ---- rules ---------------------------------------------------------------------------------------
def lanes_vjp(out_bar, out, args, needed):
    return [call(lane_item, out_bar, k) if need else None for k, need in enumerate(needed)]


def lanes_jvp(out, args, tangents):
    if all(t is None for t in tangents):
        return None
    return call(lanes, *[t if t is not None else 0 for t in tangents])


def lane_item_vjp(out_bar, out, args, needed):
    graph = out.graph
    k = int(graph.number(args[1].id))
    lifted = call(lane_lift, out_bar, 1)
    return [call(lane_unslice, lifted, args[0], k, k + 1, 1), None]


def lane_slice_vjp(out_bar, out, args, needed):
    return [call(lane_unslice, out_bar, *args), None, None, None]


def lane_unslice_vjp(out_bar, out, args, needed):
    return [call(lane_slice, out_bar, *args[2:]), None, None, None, None]


def lane_gather_vjp(out_bar, out, args, needed):
    return [call(lane_scatter, out_bar, *args), None]


def lane_scatter_vjp(out_bar, out, args, needed):
    return [call(lane_gather, out_bar, args[2]), None, None]


def lane_accumulate_vjp(out_bar, out, args, needed):
    slices, gathers = _accumulated(args[2:], int(out.graph.number(args[1].id)))
    parts = [None, None]
    for g, *bounds in slices:
        parts += [call(lane_slice, out_bar, *bounds), None, None, None]
    for g, table in gathers:
        parts += [call(lane_gather, out_bar, table), None]
    return parts


def lane_accumulate_jvp(out, args, tangents):
    """Linear in the added signals: the same accumulation of their tangents."""
    graph = out.graph
    slices = int(graph.number(args[1].id))
    groups = [(2 + 4 * k, 4) for k in range(slices)]
    groups += [(k, 2) for k in range(2 + 4 * slices, len(args), 2)]
    kept = [(k, size) for k, size in groups if tangents[k] is not None]
    if not kept:
        return None
    new = [args[0], sum(1 for _, size in kept if size == 4)]
    for k, size in kept:
        new += [tangents[k], *args[k + 1:k + size]]
    return call(lane_accumulate, *new)


def accumulate_lanes(graph, target: int, parts: list[int]) -> int:
    """The signal of a lane vector: its slices' and gathers' signals added into one array, once
    (not a vector of zeros per slice), the other contributions added to it."""
    slices = [p for p in parts if graph[p].op is lane_unslice]
    gathers = [p for p in parts if graph[p].op is lane_scatter]
    if len(slices) + len(gathers) < 2:
        return graph.add(*parts)
    rest = [p for p in parts if graph[p].op not in (lane_unslice, lane_scatter)]
    args = [target, graph.const(len(slices))]
    for p in slices + gathers:
        g, _, *bounds = graph[p].args
        args += [g, *bounds]
    return graph.add(graph.apply(lane_accumulate, *args), *rest)


def accumulated_lanes(graph, node) -> int:
    """The additions lane_accumulate makes: the lanes of the signals it adds in, less one per
    entry of the vector (the first signal an entry gets is written, not added)."""
    slices, gathers = _accumulated(node.args[2:], int(graph.number(node.args[1])))
    added = sum(graph.shapes[g].count if isinstance(graph.shapes[g], Lanes) else 1
                for g, *_ in slices + gathers)
    return max(0, added - graph.shapes[node.args[0]].count)


def _summed_over_lanes(value, count):
    """The sum over the lanes of `value`: one that is the same in every lane (a number, once a
    lift of one folds to it) counts once per lane."""
    shape = value.graph.shapes[value.id]
    if isinstance(shape, Lanes):
        return call(lane_uniform_sum, value, count) if shape.uniform else call(lane_sum, value)
    return value * count


def lane_lift_vjp(out_bar, out, args, needed):
    return [_summed_over_lanes(out_bar, args[1]), None]


def lane_sum_jvp(out, args, tangents):
    if tangents[0] is None:
        return None
    return _summed_over_lanes(tangents[0], out.graph.shapes[args[0].id].count)


def lane_sum_vjp(out_bar, out, args, needed):
    count = out.graph.shapes[args[0].id].count
    return [call(lane_lift, out_bar, count)]


def lane_uniform_sum_vjp(out_bar, out, args, needed):
    return [call(lane_lift, out_bar, args[1]), None]


def _no_rule(out_bar, out, args, needed):
    return [None] * len(args)


def _no_tangent(out, args, tangents):
    return None


# ---- shapes and folding ----------------------------------------------------------------------------
def _lanes_shape(graph, node):
    return Lanes(len(node.args))


def _slice_shape(graph, node):
    start, stop, step = (int(graph.number(a)) for a in node.args[1:])
    return Lanes(len(range(start, stop, step)))


def _table_shape(k_arg: int):
    def shape(graph, node):
        return Lanes(len(graph.tables[int(graph.number(node.args[k_arg]))][1]))
    return shape


def _like(k: int):
    def shape(graph, node):
        return graph.shapes[node.args[k]]
    return shape


def _lift_shape(graph, node):
    return Lanes(int(graph.number(node.args[1])), uniform=True)


def _scalar(graph, node):
    return None


def _fold_zero_first(graph, args):
    return graph.const(0) if graph.number(args[0]) == 0 else None


def _fold_lift(graph, args):
    """A number broadcasts over the lanes as it is."""
    return args[0] if graph.number(args[0]) is not None else None


# ---- NumPy forms -------------------------------------------------------------------------------------
def _accumulate_code(x, slices, *rest) -> str:
    groups, gathers = _accumulated(rest, int(slices))
    listed = [f"({g}, {a}, {b}, {c})" for g, a, b, c in groups]
    gathered = [f"({g}, {table_name(k)})" for g, k in gathers]
    return f"_lane_accumulate({x}, {_tuple(listed)}, {_tuple(gathered)})"


def _tuple(items) -> str:
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def _lanes_code(*values) -> str:
    return f"_lanes(({', '.join(values)}{',' if len(values) == 1 else ''}))"


def _slice_code(x, start, stop, step) -> str:
    return f"{x}[..., {start}:{stop}" + ("]" if step == "1" else f":{step}]")


def _free(nargs: int, ends_with_true: bool = False) -> int:
    return 0  # a view, or the arguments as they are: no arithmetic


def _record(op, vjp, jvp, code, shape, helpers=(), fold=None, math=None, cost=_free, indexes=False,
            **kw) -> Op:
    # "operands": a form that indexes its argument gets it parenthesised where needed, (a*b)[..., k]
    tags = {"array", "lanes"} | ({"operands"} if indexes else set())
    return Op(op, vjp, jvp, code, math=math or getattr(op, "math", ""), helpers=helpers, shape=shape, fold=fold,
              cost=cost, tags=frozenset(tags), **kw)


RECORDS = [
    _record(lanes, lanes_vjp, lanes_jvp, _lanes_code, _lanes_shape, ("_lanes",), math=_listed),
    _record(lane_item, lane_item_vjp, linear_jvp(lane_item), "{p0}[..., {1}][()]", _scalar),  # [()]: a number, not a 0-d array (5 x faster arithmetic)
    _record(lane_slice, lane_slice_vjp, linear_jvp(lane_slice), _slice_code, _slice_shape, indexes=True,
            math=_slice_math),
    _record(lane_unslice, lane_unslice_vjp, linear_jvp(lane_unslice),
            "_lane_unslice({0}, {1}, {2}, {3}, {4})", _like(1), ("_lane_unslice",), fold=_fold_zero_first,
            cost=unit_cost),
    _record(lane_gather, lane_gather_vjp, linear_jvp(lane_gather),
            lambda x, k: f"{x}[..., {table_name(k)}]", _table_shape(1), indexes=True),
    _record(lane_scatter, lane_scatter_vjp, linear_jvp(lane_scatter),
            lambda g, x, k: f"_lane_scatter({g}, {x}, {table_name(k)})", _like(1), ("_lane_scatter",),
            fold=_fold_zero_first, cost=unit_cost),
    _record(lane_accumulate, lane_accumulate_vjp, lane_accumulate_jvp, _accumulate_code, _like(0),
            ("_lane_accumulate",), cost=unit_cost),
    _record(lane_values, _no_rule, _no_tangent, _table_code, _table_shape(0), ("_table_like",),
            zero_derivative=True),
    _record(lane_lift, lane_lift_vjp, linear_jvp(lane_lift), "_lane_lift({0})", _lift_shape, ("_lane_lift",),
            fold=_fold_lift),
    _record(lane_sum, lane_sum_vjp, lane_sum_jvp, "{p0}.sum(-1)", _scalar,
            fold=_fold_zero_first, cost=unit_cost),
    _record(lane_uniform_sum, lane_uniform_sum_vjp, linear_jvp(lane_uniform_sum), "_lane_uniform_sum({0}, {1})",
            _scalar, ("_lane_uniform_sum",), fold=_fold_zero_first, cost=unit_cost),
]

