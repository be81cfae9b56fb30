"""Matrix-level ops (the lecture's slide 17: W_bar = z_bar x^T, h_bar = W^T z_bar).

A matrix value is a graph node with a shape (rows, cols); per example, a batch adds leading axes,
so the NumPy forms work on stacks of matrices (`..., rows, cols`). Elementwise operations on
matrices are the ordinary ops, which broadcast; only what is truly matrix-level is here. Each op
is a SymPy function used as a placeholder (never evaluated by SymPy), then its record.
"""

from __future__ import annotations

import sympy as sp

from ..errors import ModelError
from .base import CONST, Op, Ref, call, zero_jvp, zero_vjp


class MatrixOp(sp.Function):
    """A matrix-level op: SymPy never evaluates it; it prints in the lecture's notation."""

    math = ""

    @classmethod
    def eval(cls, *args):
        return None

    def _sympystr(self, printer):
        texts = [printer._print(a) for a in self.args]
        operands = {f"p{i}": t if isinstance(a, (sp.Symbol, sp.Function, sp.Number)) and not isinstance(a, matmul)
                    else f"({t})" for i, (a, t) in enumerate(zip(self.args, texts))}
        return self.math.format(*texts, **operands)


class matmul(MatrixOp):
    """The matrix product a @ b (per example; one BLAS product for a whole batch)."""

    nargs, math = 2, "{p0} @ {p1}"


class transpose(MatrixOp):
    nargs, math = 1, "{p0}^T"


class trace(MatrixOp):
    nargs, math = 1, "tr({0})"


class inverse(MatrixOp):
    nargs, math = 1, "{p0}^-1"


class det(MatrixOp):
    nargs, math = 1, "det({0})"


class logdet(MatrixOp):
    """log(det(X)), computed from the LU factors (np.linalg.slogdet): no overflow for large X."""

    nargs, math = 1, "log(det({0}))"


class sum_entries(MatrixOp):
    nargs, math = 1, "sum({0})"


class entry(MatrixOp):
    """X[i, j], a scalar (per example)."""

    nargs, math = 3, "{p0}[{1}, {2}]"


class place(MatrixOp):
    """A matrix shaped like X, zero but for the scalar s at [i, j]: the signal of X from X[i, j]."""

    nargs, math = 4, "{p0}*unit({1}, {2}, {3})"


class fill(MatrixOp):
    """A scalar repeated into every entry of a matrix shaped like the second argument."""

    nargs, math = 2, "{p0}*ones_like({1})"


class block(MatrixOp):
    """X[r0:r1:rs, c0:c1:cs], a slice of a matrix (rows and columns of a MatrixSlice)."""

    nargs, math = 7, "{p0}[{1}:{2}, {4}:{5}]"


class unblock(MatrixOp):
    """Zeros shaped like X with G in the block: the signal of X from its slice."""

    nargs, math = 8, "unblock({0})"


class dim(MatrixOp):
    """A symbolic dimension, read off the argument that has it: dim(W, -2) is W's rows."""

    nargs = 2

    def _sympystr(self, printer):
        name = "rows" if self.args[1] == -2 else "cols"
        return f"{name}({printer._print(self.args[0])})"


class eye(MatrixOp):
    nargs, math = 1, "I"


class ones(MatrixOp):
    nargs, math = 2, "1"


def _grid(texts) -> str:
    """[a, b; c, d]: the notation of an explicit matrix from its entries, rows and columns."""
    values, cols = texts[:-2], int(texts[-1])
    return "[" + "; ".join(", ".join(values[r:r + cols]) for r in range(0, len(values), cols)) + "]"


class entries(MatrixOp):
    """A matrix written out entry by entry (an explicit sympy.Matrix): its scalars row by row,
    then its rows and columns."""

    math = staticmethod(_grid)

    def _sympystr(self, printer):
        return _grid([printer._print(a) for a in self.args])


# ---- rules: (out_bar, out, args, needed) -> contributions; (out, args, tangents) -> tangent ----
def T(x):
    return call(transpose, x)


def matmul_vjp(out_bar, out, args, needed):
    a, b = args
    return [call(matmul, out_bar, T(b)) if needed[0] else None,
            call(matmul, T(a), out_bar) if needed[1] else None]


def matmul_jvp(out, args, tangents):
    (a, b), (a_dot, b_dot) = args, tangents
    parts = [call(matmul, a_dot, b) if a_dot is not None else None,
             call(matmul, a, b_dot) if b_dot is not None else None]
    parts = [p for p in parts if p is not None]
    return None if not parts else sum(parts[1:], parts[0])


def linear_jvp(op):
    """The forward rule of an op that is linear in its first argument: op(x_dot, rest...)."""
    def jvp(out, args, tangents):
        return None if tangents[0] is None else call(op, tangents[0], *args[1:])
    return jvp


def entries_vjp(out_bar, out, args, needed):
    """Each entry gets its own entry of the signal."""
    c = int(args[-1].number)
    return [call(entry, out_bar, k // c, k % c) if n else None
            for k, n in enumerate(needed[:-2])] + [None, None]


def entries_jvp(out, args, tangents):
    """The matrix of the entries' tangents (linear in every entry)."""
    if all(t is None for t in tangents[:-2]):
        return None
    return call(entries, *[0 if t is None else t for t in tangents[:-2]], *args[-2:])


def transpose_vjp(out_bar, out, args, needed):
    return [T(out_bar)]


def trace_vjp(out_bar, out, args, needed):
    return [out_bar * eye_like(out.graph, args[0])]


def inverse_vjp(out_bar, out, args, needed):
    """Y = X^-1: X_bar = -Y^T Y_bar Y^T."""
    return [-call(matmul, call(matmul, T(out), out_bar), T(out))]


def inverse_jvp(out, args, tangents):
    """Y = X^-1: Y_dot = -Y X_dot Y."""
    return None if tangents[0] is None else -call(matmul, call(matmul, out, tangents[0]), out)


def det_vjp(out_bar, out, args, needed):
    """d = det(X): X_bar = d_bar d X^-T (Jacobi's formula)."""
    return [out_bar * out * T(call(inverse, args[0]))]


def det_jvp(out, args, tangents):
    """d_dot = d tr(X^-1 X_dot)."""
    return None if tangents[0] is None else out * call(trace, call(matmul, call(inverse, args[0]), tangents[0]))


def logdet_vjp(out_bar, out, args, needed):
    return [out_bar * T(call(inverse, args[0]))]


def logdet_jvp(out, args, tangents):
    return None if tangents[0] is None else call(trace, call(matmul, call(inverse, args[0]), tangents[0]))


def sum_entries_vjp(out_bar, out, args, needed):
    """sum(X): every entry of X gets the scalar signal."""
    return [call(fill, out_bar, args[0])]


def entry_vjp(out_bar, out, args, needed):
    """X[i, j]: that entry of X gets the signal (a 1x1 X gets it everywhere)."""
    x, i, j = args
    if out.graph.shapes[x.id] == (1, 1):
        return [call(fill, out_bar, x), None, None]
    return [call(place, out_bar, x, i, j), None, None]


def fill_vjp(out_bar, out, args, needed):
    return [call(sum_entries, out_bar) if needed[0] else None, None]


def place_vjp(out_bar, out, args, needed):
    return [call(entry, out_bar, args[2], args[3]) if needed[0] else None, None, None, None]


def block_vjp(out_bar, out, args, needed):
    return [call(unblock, out_bar, args[0], *args[1:])] + [None] * 6


def unblock_vjp(out_bar, out, args, needed):
    return [call(block, out_bar, *args[2:])] + [None] * 7


# ---- shapes and folding ------------------------------------------------------------------------
def _fmt(shape) -> str:
    return f"({shape[0]}, {shape[1]})"


def _shapes(graph, node):
    return [graph.shapes[a] for a in node.args]


def scalar_shape(graph, node):
    return None


def matmul_shape(graph, node):
    shapes = _shapes(graph, node)
    (r, k), (k2, c) = [s or (1, 1) for s in shapes]
    if k != k2 and (k - k2).is_number:
        raise ModelError(f"cannot multiply a {_fmt(shapes[0])} matrix by a {_fmt(shapes[1])} "
                         f"matrix: the inner dimensions differ")
    return (r, c)


def _dimension(graph, i: int):
    node = graph[i]
    if node.op is dim:
        return graph.shapes[node.args[0]][-2 if graph.number(node.args[1]) == -2 else -1]
    return node.value


def _symbolic(graph, i: int):
    """A dimension expression (numbers, named dimensions, + and *) as SymPy, from its node."""
    node = graph[i]
    if node.op == CONST or node.op is dim:
        return _dimension(graph, i)
    if node.op in (sp.Add, sp.Mul):
        return node.op(*[_symbolic(graph, a) for a in node.args])
    raise ModelError("a matrix slice's bounds must be numbers or matrix dimensions")


def block_shape(graph, node):
    r0, r1, rs, c0, c1, cs = [_symbolic(graph, a) for a in node.args[1:]]
    return (sp.ceiling((r1 - r0) / rs), sp.ceiling((c1 - c0) / cs))


def elementwise_shape(graph, node):
    """Scalars broadcast against matrices; matrices must agree."""
    found = None
    for s in _shapes(graph, node):
        if s is None:
            continue
        if found is not None and tuple(found) != tuple(s):
            raise ModelError(f"an elementwise operation combines a {_fmt(found)} and a {_fmt(s)} "
                             f"matrix; their shapes must be equal")
        found = s
    return found


def _fold_matmul(graph, args):
    if any(graph.number(a) == 0 for a in args):
        return graph.const(0)
    a, b = args
    return b if graph[a].op is eye else a if graph[b].op is eye else None  # I @ X = X @ I = X


def _fold_transpose(graph, args):
    if graph[args[0]].op == CONST:
        return args[0]
    return graph[args[0]].args[0] if graph[args[0]].op is transpose else None


def _fold_zero(graph, args):
    return graph.const(0) if graph.number(args[0]) == 0 else None


def _fold_entry(graph, args):
    """X[i, j] at numeric i, j read through what built X: an explicit matrix gives its entry, a
    placed scalar itself or 0, a sum (or a scalar times a matrix) the same of the entries."""
    x, i, j = args
    if graph.number(x) == 0:
        return graph.const(0)
    at = graph.number(i), graph.number(j)
    node = graph[x]
    if None in at or not graph.is_matrix(x):
        return None
    if node.op is entries:
        return node.args[int(at[0]) * int(graph.number(node.args[-1])) + int(at[1])]
    if node.op is place and None not in (graph.number(node.args[2]), graph.number(node.args[3])):
        return node.args[0] if (graph.number(node.args[2]), graph.number(node.args[3])) == at else graph.const(0)
    matrices = [a for a in node.args if graph.is_matrix(a)]
    if node.op is sp.Add or node.op is sp.Mul and len(matrices) == 1:
        parts = [graph.apply(entry, a, i, j) if graph.is_matrix(a) else a for a in node.args]
        return graph.add(*parts) if node.op is sp.Add else graph.mul(*parts)
    return None


def eye_like(graph, x):
    """The identity matrix with as many rows as x's columns."""
    n = graph.shapes[x.id][1]
    return call(eye, Ref(graph, graph.const(n)) if n.is_Integer else call(dim, x, -1))


def _record(op, vjp, jvp, code, shape, fold=None, helpers=(), **kw) -> Op:
    return Op(op, vjp, jvp, code, math=op.math, helpers=helpers, shape=shape, fold=fold,
              tags=frozenset({"matrix"}), **kw)


RECORDS = [
    _record(matmul, matmul_vjp, matmul_jvp, "_matmul({0}, {1})", matmul_shape, _fold_matmul, ("_matmul",)),
    _record(transpose, transpose_vjp, linear_jvp(transpose), "_T({0})",
            lambda g, n: (g.shapes[n.args[0]][1], g.shapes[n.args[0]][0]), _fold_transpose, ("_T",)),
    _record(trace, trace_vjp, linear_jvp(trace), "np.trace({0}, axis1=-2, axis2=-1)", scalar_shape),
    _record(inverse, inverse_vjp, inverse_jvp, "np.linalg.inv({0})", lambda g, n: g.shapes[n.args[0]]),
    _record(det, det_vjp, det_jvp, "np.linalg.det({0})", scalar_shape),
    _record(logdet, logdet_vjp, logdet_jvp, "_logdet({0})", scalar_shape, helpers=("_logdet",)),
    _record(sum_entries, sum_entries_vjp, linear_jvp(sum_entries), "np.sum({0}, axis=(-2, -1))",
            scalar_shape, _fold_zero),
    _record(entry, entry_vjp, linear_jvp(entry), "{p0}[..., {1}, {2}]", scalar_shape, _fold_entry),
    _record(place, place_vjp, linear_jvp(place), "_place({0}, {1}, {2}, {3})",
            lambda g, n: g.shapes[n.args[1]], helpers=("_place",)),
    _record(fill, fill_vjp, linear_jvp(fill), "_fill({0}, {1})", lambda g, n: g.shapes[n.args[1]],
            _fold_zero, ("_fill",)),
    _record(block, block_vjp, linear_jvp(block), "{p0}[..., {1}:{2}:{3}, {4}:{5}:{6}]", block_shape),
    _record(unblock, unblock_vjp, linear_jvp(unblock), "_unblock({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7})",
            lambda g, n: g.shapes[n.args[1]], _fold_zero, ("_unblock",)),
    _record(dim, zero_vjp, zero_jvp, "np.shape({0})[{1}]", scalar_shape, zero_derivative=True),
    _record(eye, zero_vjp, zero_jvp, "np.eye({0})", lambda g, n: (_dimension(g, n.args[0]),) * 2,
            zero_derivative=True),
    _record(entries, entries_vjp, entries_jvp, lambda *texts: f"_entries({texts[-2]}, {texts[-1]}, {', '.join(texts[:-2])})",
            lambda g, n: (_dimension(g, n.args[-2]), _dimension(g, n.args[-1])), helpers=("_entries",)),
    _record(ones, zero_vjp, zero_jvp, "np.ones(({0}, {1}))",
            lambda g, n: (_dimension(g, n.args[0]), _dimension(g, n.args[1])), zero_derivative=True),
]
