"""Array-level ops: a Sum over an index range as one vectorised reduction (issue 15).

A value over the index tuples of a Sum (graph shape `Domain`) is a 1-D array at run time, one
entry per tuple. A single Sum's tuples are its range, so `x[i + 1]` over i = lo..hi is the view
x[lo + 1:hi + 2] (`window`) and its adjoint adds into that slice (`unwindow`). A nested Sum's
tuples are listed flat (`nest`: for each outer tuple its range of inner indices, as triangular as
the bounds say), so an index there is a gather (`gather`, adjoint `scatter`, one np.bincount);
an outer value is repeated to its inner tuples (`lift`) and the inner Sum adds them back up per
outer tuple (`segment_sum`). The Sum of a single range is `total`. Elementwise ops on these
values are the ordinary ones: NumPy broadcasts a scalar against them.

Axes of a window or gather are flattened into its arguments: for each axis of the array either
(start, stop, step) of a slice, or (index, 0, 0) for a fixed index; a gather's axes are index
arrays (or fixed integers).
"""

from __future__ import annotations

from ..errors import ModelError
from ..graph import Domain, Lanes, Whole
from .base import Op, Ref, call
from .lanes import accumulate_lanes
from .matrix import MatrixOp, linear_jvp


class ArrayOp(MatrixOp):
    """An array-level op: a placeholder SymPy never evaluates."""


class span(ArrayOp):
    """The values lo, lo + 1, ..., stop - 1 of the index of a Sum."""

    nargs, math = 2, "range({0}, {1})"


class nest(ArrayOp):
    """The tuples of a nested Sum: row 0 the position of each one's outer tuple, row 1 its inner
    index (lo..stop - 1, per outer tuple). Arguments: lo, stop, the outer index values."""

    nargs, math = 3, "pairs({0} <= j < {1})"


class outer_of(ArrayOp):
    nargs, math = 1, "outer({0})"


class inner_of(ArrayOp):
    nargs, math = 1, "inner({0})"


class lift(ArrayOp):
    """An outer value repeated to each of its inner tuples: a[parent]."""

    nargs, math = 2, "{p0}"


class segment_sum(ArrayOp):
    """The inner Sum: the values of the inner tuples added up per outer tuple."""

    nargs, math = 3, "sum_inner({0})"


class total(ArrayOp):
    """The Sum of a value over one range: a scalar."""

    nargs, math = 1, "sum({0})"


class window(ArrayOp):
    """x[start:stop:step] (a view) along the sliced axes, fixed indices along the others.
    Arguments: x, the Domain's loop (a marker), then (start, stop, step) per axis."""

    nargs = (5, 8)

    def _sympystr(self, printer):
        texts = [printer._print(a) for a in self.args]
        return f"{texts[0]}[{_axes_code(texts[2:])}]"


class unwindow(ArrayOp):
    """Zeros shaped like x with g in the window: the adjoint of window. Arguments: g, x, axes."""

    nargs = (5, 8)


class gather(ArrayOp):
    """x[idx0, idx1]: entries of x at integer index arrays (an affine index of a nested Sum)."""

    nargs = (2, 3)

    def _sympystr(self, printer):
        texts = [printer._print(a) for a in self.args]
        return f"{texts[0]}[{', '.join(texts[1:])}]"


class scatter(ArrayOp):
    """Zeros shaped like x with g added at the indices (repeated indices add): gather's adjoint."""

    nargs = (3, 4)


class accumulate(ArrayOp):
    """Zeros shaped like x with every adjoint of its windows and gathers added in: one array, not
    one per access. Arguments: x, the number of windows, then (g, axes...) of each window and
    (g, index...) of each gather."""

    nargs = None

    def _sympystr(self, printer):
        """The signal as the lecture would add it up: `g at x[1:n] + h at x[0:n - 1]`."""
        texts = [printer._print(a) for a in self.args]
        x, rank, windows = texts[0], int(self.args[1]), int(self.args[2])
        slices, gathers = _accumulate_groups(texts[3:], rank, windows)
        parts = [f"({g}) at {x}[{_axes_code(axes)}]" for g, *axes in slices]
        parts += [f"({g}) at {x}[{', '.join(index)}]" for g, *index in gathers]
        return " + ".join(parts)


class ones_over(ArrayOp):
    """1 at every entry of a value over a Sum's range: a number spread over the range is the
    number times it (the signal of a term that does not depend on the index counts once per
    entry)."""

    nargs, math = 1, "ones({0})"


class array_dim(ArrayOp):
    """Axis k of an indexed argument: its size, read at run time (a shape symbol n)."""

    nargs, math = 2, "len({0})"


# ---- NumPy forms ---------------------------------------------------------------------------------
def _axes_code(axes) -> str:
    parts = []
    for start, stop, step in zip(axes[::3], axes[1::3], axes[2::3]):
        if step == "0":
            parts.append(start)
        else:
            parts.append(f"{start}:{stop}" + ("" if step == "1" else f":{step}"))
    return ", ".join(parts)


def _label(x: str) -> str:
    """The array's name for error messages (an expression when it has none)."""
    return f'"{x}"' if x.isidentifier() else '"array"'


def _window_code(x, marker, *axes) -> str:
    return f"_window({x}, {_label(x)}, {', '.join(axes)})"


def _unwindow_code(g, x, *axes) -> str:
    return f"_unwindow({g}, {x}, {', '.join(axes)})"


def _gather_code(x, *index) -> str:
    return f"_gather({x}, {_label(x)}, {', '.join(index)})"


def _scatter_code(g, x, *index) -> str:
    return f"_scatter({g}, {x}, {', '.join(index)})"


def _accumulate_groups(args, rank: int, windows: int):
    """The (g, axes...) groups of accumulate's arguments after (x, rank, windows): windows first."""
    sizes = [1 + 3 * rank] * windows
    groups, k = [], 0
    while k < len(args):
        size = sizes[len(groups)] if len(groups) < windows else 1 + rank
        groups.append(args[k:k + size])
        k += size
    return groups[:windows], groups[windows:]


def _accumulate_code(x, rank, windows, *rest) -> str:
    slices, gathers = _accumulate_groups(rest, int(rank), int(windows))
    def listed(groups):
        items = [f"({', '.join(g)})" for g in groups]
        return "()" if not items else f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    return f"_accumulate({x}, {listed(slices)}, {listed(gathers)})"


# ---- rules ---------------------------------------------------------------------------------------
def total_vjp(out_bar, out, args, needed):
    return [out_bar]  # NumPy broadcasts the scalar signal over the range


def segment_sum_vjp(out_bar, out, args, needed):
    return [call(lift, out_bar, args[1]), None, None]


def lift_vjp(out_bar, out, args, needed):
    return [call(segment_sum, out_bar, args[1], args[0]) if needed[0] else None, None]


def window_vjp(out_bar, out, args, needed):
    return [call(unwindow, out_bar, args[0], *args[2:])] + [None] * (len(args) - 1)


def unwindow_vjp(out_bar, out, args, needed):
    graph = out.graph
    shape = graph.shapes[args[0].id]
    marker = graph.const(shape.loop) if isinstance(shape, Domain) else graph.const(0)
    return [call(window, out_bar, Ref(graph, marker), *args[2:])] + [None] * (len(args) - 1)


def gather_vjp(out_bar, out, args, needed):
    return [call(scatter, out_bar, args[0], *args[1:])] + [None] * (len(args) - 1)


def scatter_vjp(out_bar, out, args, needed):
    return [call(gather, out_bar, *args[2:])] + [None] * (len(args) - 1)


def accumulate_vjp(out_bar, out, args, needed):
    graph = out.graph
    rank, windows = int(graph.number(args[1].id)), int(graph.number(args[2].id))
    slices, gathers = _accumulate_groups(args[3:], rank, windows)
    parts = [None, None, None]
    for g, *axes in slices:
        shape = graph.shapes[g.id]
        marker = graph.const(shape.loop) if isinstance(shape, Domain) else graph.const(0)
        parts += [call(window, out_bar, Ref(graph, marker), *axes)] + [None] * len(axes)
    for g, *index in gathers:
        parts += [call(gather, out_bar, *index)] + [None] * len(index)
    return parts


def accumulate_jvp(out, args, tangents):
    """Linear in each added value: the same accumulation of their tangents."""
    graph = out.graph
    rank, windows = int(graph.number(args[1].id)), int(graph.number(args[2].id))
    sizes = [1 + 3 * rank] * windows
    groups, k = [], 3
    while k < len(args):
        size = sizes[len(groups)] if len(groups) < windows else 1 + rank
        groups.append((k, size))
        k += size
    kept = [(k, size) for k, size in groups if tangents[k] is not None]
    if not kept:
        return None
    new = [args[0], Ref(graph, graph.const(rank)),
           Ref(graph, graph.const(sum(1 for k, _ in kept if k < 3 + windows * (1 + 3 * rank))))]
    for k, size in kept:
        new += [tangents[k], *args[k + 1:k + size]]
    return call(accumulate, *new)


def combine_contributions(graph, target: int, parts: list[int]) -> int:
    """The error signal of an indexed argument: the adjoints of its windows and gathers added
    into one array (`accumulate`), the other contributions added to it."""
    if isinstance(graph.shapes[target], Lanes):
        return accumulate_lanes(graph, target, parts)
    if not isinstance(graph.shapes[target], Whole):
        return graph.add(*parts)
    slices = [p for p in parts if graph[p].op is unwindow and graph[p].args[1] == target]
    gathers = [p for p in parts if graph[p].op is scatter and graph[p].args[1] == target]
    if len(slices) + len(gathers) < 2:
        return graph.add(*parts)
    rest = [p for p in parts if p not in slices and p not in gathers]
    args = [target, graph.const(len(graph.shapes[target].dims)), graph.const(len(slices))]
    for p in slices + gathers:
        g, _, *axes = graph[p].args
        args += [g, *axes]
    return graph.add(graph.apply(accumulate, *args), *rest)


def lifted(graph, value: int, target) -> int:
    """A value over an outer range (or a number) repeated to the tuples of `target`, the Domain
    of a range nested in it, one level at a time."""
    shape = graph.shapes[value]
    if not isinstance(shape, Domain) or not isinstance(target, Domain) or shape.depth >= target.depth:
        return value
    tuples = target.loop  # the nest node of the inner range
    outer = graph.shapes[graph[tuples].args[2]]
    return graph.apply(lift, lifted(graph, value, outer), graph.apply(outer_of, tuples))


def spread_over(value: Ref, like: Ref) -> Ref:
    """A number as a value over the range of `like` (each entry the number)."""
    return value * call(ones_over, like)


def reduction_jvp(op):
    """The forward rule of a Sum over a range: the Sum of the summand's tangent, a number spread
    over the range first (it counts once per entry)."""
    def jvp(out, args, tangents):
        t = tangents[0]
        if t is None:
            return None
        if out.graph.shapes[t.id] is None and isinstance(out.graph.shapes[args[0].id], Domain):
            t = spread_over(t, args[0])
        return call(op, t, *args[1:])
    return jvp


def _zero_rule(out_bar, out, args, needed):
    return [None] * len(args)


def _no_tangent(out, args, tangents):
    return None


# ---- shapes --------------------------------------------------------------------------------------
def _domain(graph, node):
    return graph.shapes[node.args[0]]


def _span_shape(graph, node):
    return Domain(len(graph.nodes), 0)  # shapes are computed as the node is appended: its id


def _nest_shape(graph, node):
    return Domain(len(graph.nodes), graph.shapes[node.args[2]].depth + 1)


def _row_shape(graph, node):
    return graph.shapes[node.args[0]]


def _window_shape(graph, node):
    sliced = any(graph.number(s) != 0 for s in node.args[4::3])
    if not sliced:
        return None
    return Domain(int(graph.number(node.args[1])), 0)


def _gather_shape(graph, node):
    found = [graph.shapes[a] for a in node.args[1:] if isinstance(graph.shapes[a], Domain)]
    return found[0] if found else None


def _like_second(graph, node):
    return graph.shapes[node.args[1]]


def _like_third(graph, node):
    return graph.shapes[node.args[2]]


def _scalar(graph, node):
    return None


def _fold_zero_first(graph, args):
    return graph.const(0) if graph.number(args[0]) == 0 else None


def _fold_total(graph, args):
    """The Sum of an inner Sum's results is the Sum over all the tuples: sum(sum_inner(s)) = sum(s)."""
    if graph[args[0]].op is segment_sum:
        return graph.apply(total, graph[args[0]].args[0])
    return _fold_zero_first(graph, args)


def _fold_lift(graph, args):
    """A constant is the same for every inner tuple: NumPy broadcasts it."""
    return args[0] if graph.shapes[args[0]] is None else None


def _record(op, vjp, jvp, code, shape, helpers=(), math="", fold=None, **kw) -> Op:
    return Op(op, vjp, jvp, code, math=math or getattr(op, "math", ""), helpers=helpers, shape=shape,
              fold=fold, tags=frozenset({"array"}), **kw)


RECORDS = [
    _record(span, _zero_rule, _no_tangent, "np.arange({0}, {1})", _span_shape, zero_derivative=True),
    _record(nest, _zero_rule, _no_tangent, "_nest({0}, {1}, {2})", _nest_shape, ("_nest",),
            zero_derivative=True),
    _record(outer_of, _zero_rule, _no_tangent, "{p0}[0]", _row_shape, zero_derivative=True),
    _record(inner_of, _zero_rule, _no_tangent, "{p0}[1]", _row_shape, zero_derivative=True),
    _record(lift, lift_vjp, linear_jvp(lift), "_lift({0}, {1})", lambda g, n: g.shapes[n.args[1]],
            ("_lift",), fold=_fold_lift),
    _record(segment_sum, segment_sum_vjp, reduction_jvp(segment_sum), "_segment_sum({0}, {1}, {2})",
            _like_third, ("_segment_sum",), fold=_fold_zero_first),
    _record(total, total_vjp, reduction_jvp(total), "{p0}.sum(-1)", _scalar, fold=_fold_total),
    _record(window, window_vjp, linear_jvp(window), _window_code, _window_shape, ("_window",),
            math=lambda texts: f"{texts[0]}[{_axes_code(texts[2:])}]"),
    _record(unwindow, unwindow_vjp, linear_jvp(unwindow), _unwindow_code, _like_second, ("_unwindow",),
            math="unwindow", fold=_fold_zero_first),
    _record(gather, gather_vjp, linear_jvp(gather), _gather_code, _gather_shape, ("_gather",),
            math="gather"),
    _record(scatter, scatter_vjp, linear_jvp(scatter), _scatter_code, _like_second, ("_scatter",),
            math="scatter", fold=_fold_zero_first),
    _record(accumulate, accumulate_vjp, accumulate_jvp, _accumulate_code, lambda g, n: g.shapes[n.args[0]],
            ("_accumulate",), math="accumulate"),
    _record(array_dim, _zero_rule, _no_tangent, "{0}.shape[{1}]", _scalar, zero_derivative=True),
    _record(ones_over, _zero_rule, _no_tangent, "np.ones_like({0})", _domain, zero_derivative=True),
]


# Ops whose value is the same for every example of a batch (index ranges, shapes read from data).
BATCH_FREE = frozenset({span, nest, outer_of, inner_of, array_dim})


class PerExample:
    """Whether a node may vary over a batch: it depends on data (the leaves `data`; a shape read
    from data, like n = len(t), does not). Found node by node as asked, in id order."""

    def __init__(self, graph, data: frozenset) -> None:
        self.graph, self.data, self.known = graph, data, []

    def __call__(self, i: int) -> bool:
        graph, known = self.graph, self.known
        while len(known) <= i:
            k = len(known)
            node = graph[k]
            known.append(k in self.data if node.is_leaf else
                         node.op not in BATCH_FREE and any(known[a] for a in node.args))
        return known[i]


def spread_positions(graph, i: int, count: int) -> range | tuple:
    """The arguments of node i that take a per-example scalar with a trailing axis (`_spread`):
    every argument of an elementwise op over a Sum's range, and the signal of a window adjoint
    that is sliced (one whose every axis is fixed takes the scalar as it is) or of a gather's."""
    node = graph[i]
    if node.op in (unwindow, scatter):
        return (0,) if node.op is scatter or _sliced(graph, node.args[2:]) else ()
    if node.op is accumulate:
        rank, windows = int(graph.number(node.args[1])), int(graph.number(node.args[2]))
        positions, k = [], 3
        for _ in range(windows):
            if _sliced(graph, node.args[k + 1:k + 1 + 3 * rank]):
                positions.append(k)
            k += 1 + 3 * rank
        return tuple(positions) + tuple(range(k, len(node.args), 1 + rank))
    if isinstance(graph.shapes[i], Domain) and not (isinstance(node.op, type) and issubclass(node.op, ArrayOp)):
        return range(count)
    return ()


def _sliced(graph, axes) -> bool:
    return any(graph.number(step) != 0 for step in axes[2::3])


def fit_contribution(graph, part: Ref, target: int, user: int) -> Ref:
    """A contribution over a Sum's range sent to a value that has none (a scalar) is summed; so
    is a number that a user over a range sends (the same signal at every entry: a**2 in
    Sum(a**2 + x[i]) gets its signal once per entry)."""
    if graph.shapes[target] is None:
        if graph.shapes[part.id] is None and isinstance(graph.shapes[user], Domain):
            part = spread_over(part, Ref(graph, user))
        if isinstance(graph.shapes[part.id], Domain):
            return call(total, part)
    return part


def is_array_value(graph, i: int) -> bool:
    return isinstance(graph.shapes[i], (Domain, Whole))


def combined_shape(graph, node):
    """The shape of an elementwise op on values over index ranges: the deepest Domain (the
    front end lifts outer values first, so they agree); whole arrays only combine with scalars."""
    shapes = [graph.shapes[a] for a in node.args if graph.shapes[a] is not None]
    lanes = {s for s in shapes if isinstance(s, Lanes)}
    if lanes:  # a re-rolled family: its values share one number of lanes, the others broadcast
        if len(lanes) > 1 or len(lanes) != len(set(shapes)):
            raise ModelError(f"values over {len(lanes)} families of terms meet in one operation; "
                             f"compile with reroll=False")
        return Lanes(lanes.pop().count, uniform=all(s.uniform for s in shapes))
    domains = {s for s in shapes if isinstance(s, Domain)}
    if len(domains) > 1:
        deepest = max(domains, key=lambda d: d.depth)
        if any(d.depth == deepest.depth and d != deepest for d in domains):
            raise ModelError("an expression combines values over two different Sum ranges; "
                             "write each Sum on its own")
        return deepest
    if domains:
        if any(isinstance(s, (Whole, tuple)) for s in shapes):
            raise ModelError("an indexed array or matrix is combined with a value over a Sum's range; "
                             "index the array (x[i]) inside the Sum")
        return domains.pop()
    return shapes[0]

