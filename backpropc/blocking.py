"""Cache blocking: a Sum's range evaluated BLOCK entries at a time.

Over a long range (n = 10^6), NumPy makes one pass over memory per operation, and every
temporary of a function is an array of the whole range: the passes come from main memory. A
function of an indexed model whose values over a Sum's range (graph shape `Domain`) depend only
on what is known before any Sum is taken can instead run its range in blocks:

    before the loop   the scalars (shapes, bounds), each total set to 0, each gradient to zeros
    per block         the values over the block (windows shifted to it), each total's part of
                      the block added in (`L += ...sum(-1)`), each signal added into its slice
    after the loop    what uses the totals, and the signals sent to fixed entries

so the temporaries of a block stay in cache, and a block's work is done while its data are
there. The statements are the function's own, in their order within each phase; only windows and
ranges over a blocked Sum are printed shifted to the block. With data, the batch axes lead and
the block is the last axis; a parameter's gradient sums each block's signal over the batch as it
adds it; the mean's seed 1/N is computed from the data's shapes before the loop. Where a value
over a range depends on a total (the backward pass of log(Sum(...))), blocking would need a
second pass over the range: the function is left as it is, as it is for nested Sums, gathers and
re-rolled families.
"""

from __future__ import annotations

import re

import sympy as sp

from .emit import ATOM, IRPrinter, Statement
from .graph import CONST, SYMBOL, Domain, closure
from .ops.array import (
    _accumulate_groups,
    _label,
    accumulate,
    span,
    total,
    unwindow,
    window,
)

# Entries of a range per block: a block's temporaries (a few dozen arrays of BLOCK floats, a few
# MB) stay in cache. At n = 10^6, blocks of 32,768 and 65,536 were fastest of 4,096 to 65,536;
# smaller blocks pay Python's per-statement cost too often.
BLOCK = 32768

PRE, POST = "pre", "post"


class _Unblockable(Exception):
    """The function has something blocking does not handle: it is kept as it is."""


class BlockPrinter(IRPrinter):
    """Prints windows and index ranges of the blocked Sums shifted to the block [_lo, _hi)."""

    def __init__(self, graph, loops: set[int], data=frozenset()) -> None:
        super().__init__(graph, data=data)
        self.loops = loops

    def _node(self, i, ids, args):
        graph, node = self.graph, self.graph[i]
        if node.op is window and int(graph.number(ids[1])) in self.loops:
            texts = [t for t, _ in args]
            self.helpers.add("_window")
            return f"_window({texts[0]}, {_label(texts[0])}, {', '.join(shifted_axes(texts[2:]))})", ATOM
        if node.op is span and i in self.loops:
            lo = args[0][0]
            return f"np.arange({_plus(lo, '1', '_lo')}, {_plus(lo, '1', '_hi')})", ATOM
        return super()._node(i, ids, args)


def shifted_axes(axes: list[str]) -> list[str]:
    """(start, stop, step) per axis, each sliced axis narrowed to the block's entries."""
    result = []
    for start, stop, step in zip(axes[::3], axes[1::3], axes[2::3]):
        if step == "0":
            result += [start, stop, step]
        else:
            result += [_plus(start, step, "_lo"), _plus(start, step, "_hi"), step]
    return result


def _plus(start: str, step: str, offset: str) -> str:
    """start + step*offset, as short as the numbers allow."""
    term = offset if step == "1" else f"{step[1:]}*{offset}" if step.startswith("-") else f"{step}*{offset}"
    if start == "0":
        return f"-{term}" if step.startswith("-") else term
    return f"{start} {'-' if step.startswith('-') else '+'} {term}"


def blocked(m, sections: list[tuple[str, list[Statement]]]) -> list[tuple[str, list[Statement]]] | None:
    """The sections of a function of an indexed model with every Sum's range run in blocks;
    None when blocking does not apply (the function is kept as it is)."""
    if not m.indexed:
        return None
    statements = [s for _, block in sections for s in block]
    try:
        phase, loops = _phases(m.graph, statements)
    except _Unblockable:  # computed at once, over whole arrays
        return [(sections[0][0], [_keep_freed_memory()] + sections[0][1])] + sections[1:] if sections else None
    if not loops:
        return None
    return _emit(m, sections, phase, loops)


def _keep_freed_memory() -> Statement:
    """The first statement of a function over whole arrays. Freeing one large array makes glibc's
    malloc keep the memory it frees (its mmap and trim thresholds grow), so the gradient and the
    temporaries reuse pages instead of faulting in new ones after other NumPy code ran (an
    optimiser's, between two calls): a cluster of 1,000 atoms took 34.5 ms a call after its
    hand-written NumPy without it, 29.5 ms with it. A blocked function has it in the zeros of
    its gradients (runtime _zeros_for), where the arrays are large: Broyden at 10^6, 13 and
    5.5 ms."""
    return Statement("_", -1, "forward", code="np.empty(1 << 21)", comment="keep freed memory for reuse",
                     form="call")


def _phases(graph, statements):
    """Each live node's phase: PRE (known before the loops), the loop (a span node) whose blocks
    compute it, or POST (a total, a gradient, or what uses them)."""
    phase: dict[int, object] = {}
    loops: set[int] = set()
    for i in closure(graph, [s.node for s in statements if s.node >= 0]):
        node, shape = graph[i], graph.shapes[i]
        before = [phase[a] for a in node.args]
        if node.op in (SYMBOL, CONST):
            phase[i] = PRE
        elif isinstance(shape, Domain):
            if shape.depth != 0 or any(p not in (PRE, shape.loop) for p in before):
                raise _Unblockable("a nested Sum, or a value over a range that needs a total")
            phase[i] = shape.loop
            loops.add(shape.loop)
        elif node.op is total or node.op in (accumulate, unwindow):
            for g in _signals(graph, i):
                if graph.shapes[g] is not None and not isinstance(graph.shapes[g], Domain):
                    raise _Unblockable("a signal that is neither a scalar nor over a range")
            phase[i] = POST
        elif shape is not None:
            raise _Unblockable("a whole array, a matrix or lanes")
        elif any(p not in (PRE, POST) for p in before):
            raise _Unblockable("a scalar computed from a value over a range")
        else:
            phase[i] = POST if POST in before else PRE
    return phase, loops


def _signals(graph, i: int) -> list[int]:
    """The values a total adds up, or that an accumulation adds into its array's slices."""
    node = graph[i]
    return [node.args[0]] if node.op is total else [g for g, _ in _windows(graph, i)]


def _windows(graph, i: int) -> list[tuple[int, list[int]]]:
    """(signal, axes) of each window an unwindow or an accumulation adds into its array."""
    node = graph[i]
    if node.op is unwindow:
        return [(node.args[0], list(node.args[2:]))]
    rank, windows = int(graph.number(node.args[1])), int(graph.number(node.args[2]))
    slices, gathers = _accumulate_groups(list(node.args[3:]), rank, windows)
    if gathers:
        raise _Unblockable("a gather")
    return [(g, axes) for g, *axes in slices]


def _emit(m, sections, phase, loops):
    """The function's statements in three parts: before the loops, one loop per Sum's range
    (its values, then what each block adds to the totals and gradients), and after them."""
    graph, namer = m.graph, m.namer
    printer = BlockPrinter(graph, loops, m.printer.data)
    statements = [s for _, block in sections for s in block]
    names = dict(m.leaf_names)
    for s in statements:
        if s.node >= 0 and not s.arg:
            names.setdefault(s.node, s.name)
    # totals and accumulations are built up over the blocks, under their statement's name, an
    # indexed parameter's gradient under the gradient's, and the others under names of their own
    accumulators = [i for i in sorted(phase) if phase[i] == POST and graph[i].op in (total, accumulate, unwindow)]
    for s in statements:
        if s.arg and s.node in accumulators and graph[s.node].op is not total:
            names.setdefault(s.node, s.name)
    for i in accumulators:
        if i not in names:
            names[i] = namer.temp(("node", i))
    pre, post = [], []  # the gradients' zeros keep freed memory (runtime _zeros_for)
    body: dict[int, list[Statement]] = {loop: [] for loop in sorted(loops)}
    adds: dict[int, list[Statement]] = {loop: [] for loop in sorted(loops)}
    batch = None
    signals = any(graph[i].op is not total for i in accumulators)
    if signals and m.has_data:  # the batch shape: a signal that does not vary over it counts once per example
        batch = namer.name(("batch",), "batch")
        pre.append(Statement(batch, -1, "forward", code=f"_batch_shape({m.batch_args()})"))
        m.helpers.add("_batch_shape")
    late: list[Statement] = []  # what the accumulators add after the range, placed below
    for i in accumulators:
        _accumulator(m, printer, i, names, pre, adds, late, batch)
    done: set[int] = set()
    for s in statements:
        where = POST if s.node < 0 or s.arg else phase[s.node]  # gradients may read `shape`
        if s.node < 0 or s.alias:  # shape = np.shape(L); v_bar = c5, a name for a value computed before
            code = s.code
        elif m.reduction == "mean" and s.node == m.seed:  # the seed 1/N: N from the data's shapes, before the loop
            m.helpers |= {"_batch_size", "_batch_shape"}
            code = f"1/_batch_size(_batch_shape({m.batch_args()}))"
        elif s.arg:  # a gradient (or a Hessian-vector product's entry): summed over any batch
            if names.get(s.node) == s.name:
                continue  # an indexed parameter's: its accumulator, already summed over the batch
            # an accumulator under another name (a tangent's, c8) is summed over the batch too
            code = names[s.node] if s.node in accumulators and graph[s.node].op is not total \
                else _gradient_code(m, s, names)
        elif s.node in done:
            code = names[s.node]
        elif s.node in accumulators:
            done.add(s.node)
            continue  # the accumulator's lines stand for it
        else:
            code = s.code if where == PRE else printer.print(s.node, names)
        done.add(s.node)
        moved = Statement(s.name, s.node, s.section, s.origins, code, s.comment, s.arg, s.alias,
                          s._rhs, s._math, indent=0 if where in (PRE, POST) else 1)
        (pre if where == PRE else post if where == POST else body[where]).append(moved)
    post = _placed(post, late)
    m.helpers |= printer.helpers | ({"_zeros_for", _adder(m)} if signals else set())
    m.constants["BLOCK"] = f"{BLOCK}  # entries of a Sum's range per block (backpropc.blocking, docs/arrays.md)"
    loop_lines = []
    for loop in sorted(loops):
        lo, stop = (_ref(printer, a, names) for a in graph[loop].args)
        count = stop if lo == "0" else f"{stop} - {lo if lo.isidentifier() or lo.isdigit() else '(' + lo + ')'}"
        # with data, an empty range still runs once: each example gets its (zero) total
        runs = f"max({count}, 1)" if m.has_data else count
        loop_lines.append(Statement("_lo", loop, "forward", code=f"range(0, {runs}, BLOCK)", form="for"))
        loop_lines.append(Statement("_hi", loop, "forward", code=f"min(_lo + BLOCK, {count})", indent=1))
        loop_lines += body[loop] + adds[loop]
    return [(h, b) for h, b in (
        ("before the range: sizes, and each total and gradient set to zero", pre),
        ("the passes over each Sum's range, BLOCK entries at a time (a block's values stay in cache)", loop_lines),
        ("after the range: what uses the totals", post)) if b]


def _placed(post: list[Statement], late: list[Statement]) -> list[Statement]:
    """The statements after the range with the accumulators' additions among them, each right
    after the last statement that defines a name it reads (a signal computed from a total:
    L = exp(total) before x_bar gets L)."""
    defined = {}
    for k, s in enumerate(post):
        for name in s.name.split(", "):
            defined[name] = k
    at: dict[int, list[Statement]] = {}
    for line in late:
        reads = [defined[w] for w in re.findall(r"[A-Za-z_]\w*", line.code) if w in defined]
        at.setdefault(max(reads, default=-1), []).append(line)
    placed = at.get(-1, [])
    for k, s in enumerate(post):
        placed += [s] + at.get(k, [])
    return placed


def _adder(m) -> str:
    """The helper that adds signals into a gradient's slices: with data, a signal's batch axes
    are summed as it is added (a parameter takes no batch)."""
    return "_add_batched_windows" if m.has_data else "_add_windows"


def _gradient_code(m, s: Statement, names: dict[int, str]) -> str:
    """A scalar parameter's gradient (or an entry of a Hessian-vector product) from its signal,
    with the totals over the range as their accumulators' names."""
    w = next(w for w in m.program.wrt if m.namer.names[("symbol", w)] == s.arg)
    shape = m.namer.name(("shape",), "shape")
    return m.gradient_code(s.node, s.arg, shape, isinstance(w, sp.MatrixSymbol), names,
                           isinstance(w, sp.IndexedBase))


def _accumulator(m, printer, i, names, pre, adds, post, batch) -> None:
    """A total or a gradient built up over the blocks: set before the loops, added to per block,
    finished after them (the signals of fixed entries)."""
    graph = m.graph
    node, name = graph[i], names[i]
    if node.op is total:
        loop = graph.shapes[node.args[0]].loop
        pre.append(Statement(name, i, "forward", code="0.0"))
        adds[loop].append(Statement(name, i, "forward", code=printer.print(i, names), form="+=", indent=1))
        return
    x = node.args[1] if node.op is unwindow else node.args[0]
    pre.append(Statement(name, i, "backward", code=f"_zeros_for({_ref(printer, x, names)})"))
    by_loop: dict[object, tuple[list[str], list[str]]] = {}  # windows added, and subtracted
    for g, axes in _windows(graph, i):
        shape = graph.shapes[g]
        where = shape.loop if isinstance(shape, Domain) else POST
        texts = [_ref(printer, a, names) for a in axes]
        # an unnamed -v is subtracted, a pass over the range saved (_add_batched_windows only adds)
        v = None if m.has_data or g in names else graph.negated(g)
        negated = v is not None
        signal = _ref(printer, v if negated else g, names)
        if where != POST:
            texts = shifted_axes(texts)
        elif printer.data and printer.per_example(g) and any(t != "0" for t in texts[2::3]):
            printer.helpers.add("_spread")  # a per-example scalar over a slice: a trailing axis
            signal = f"_spread({signal})"
        by_loop.setdefault(where, ([], []))[negated].append(f"({', '.join([signal] + texts)})")
    for where, (added, subtracted) in by_loop.items():
        windows = f"({', '.join(added)},)" if added else "()"
        if subtracted:
            windows += f", ({', '.join(subtracted)},)"
        code = f"{_adder(m)}({name}, {windows}{', ' + batch if batch else ''})"
        line = Statement("", i, "backward", code=code, form="call", indent=0 if where == POST else 1)
        (post if where == POST else adds[where]).append(line)


def _ref(printer, i: int, names: dict[int, str]) -> str:
    """How code refers to node i: its name, or its expression when it has none."""
    return names[i] if i in names else printer.print(i, names)
