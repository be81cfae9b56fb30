"""Matrices: the lecture's vectorised form (slide 17), kept at matrix level.

A matrix value is a graph node with a shape (rows, cols), numbers or SymPy symbols; every other
node is a scalar. Per example, a data matrix has its `MatrixSymbol` shape and a batch adds leading
axes, so the generated code works on stacks of matrices (`..., rows, cols`).

Elementwise operations (MatAdd, HadamardProduct, scalar times matrix, f applied to every entry)
become the ordinary graph ops, which broadcast; only what is truly matrix-level gets an op of its
own, below. Each op is a SymPy function used as a placeholder: it prints as NumPy code
(`_numpycode`) and in the lecture's notation (`_sympystr`), and its derivative rule lives in the
one rule table (backpropc.rules).
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.hadamard import HadamardPower, HadamardProduct
from sympy.matrices.expressions.matexpr import MatrixElement

from .errors import ModelError, NonScalarLossError

__all__ = ["sum"]


def _operand(e, text: str, math: bool) -> str:
    """A printed argument, parenthesised unless it is a name or a call (or, in math, a number)."""
    atomic = (sp.Symbol, sp.Function, sp.Number) if math else (sp.Symbol, sp.Function)
    return text if isinstance(e, atomic) and not (math and isinstance(e, matmul)) else f"({text})"


class MatrixOp(sp.Function):
    """A matrix-level op: never evaluated by SymPy. `code` and `math` are its NumPy form and its
    lecture notation, as format strings: {0}, {1}, ... are the printed arguments, {p0}, ... the
    same as operands of a postfix or infix operator (parenthesised when needed)."""

    code = math = ""

    @classmethod
    def eval(cls, *args):
        return None

    def _fill_in(self, printer, template: str, math: bool) -> str:
        texts = [printer._print(a) for a in self.args]
        operands = {f"p{i}": _operand(a, t, math) for i, (a, t) in enumerate(zip(self.args, texts))}
        return template.format(*texts, **operands)

    def _numpycode(self, printer):
        return self._fill_in(printer, self.code, math=False)

    def _sympystr(self, printer):
        return self._fill_in(printer, self.math, math=True)


class matmul(MatrixOp):
    """The matrix product a @ b (per example; one BLAS product for a whole batch)."""

    nargs, code, math = 2, "_matmul({0}, {1})", "{p0} @ {p1}"


class transpose(MatrixOp):
    nargs, code, math = 1, "_T({0})", "{p0}^T"


class trace(MatrixOp):
    nargs, code, math = 1, "np.trace({0}, axis1=-2, axis2=-1)", "tr({0})"


class inverse(MatrixOp):
    nargs, code, math = 1, "np.linalg.inv({0})", "{p0}^-1"


class det(MatrixOp):
    nargs, code, math = 1, "np.linalg.det({0})", "det({0})"


class logdet(MatrixOp):
    """log(det(X)), computed from the LU factors (np.linalg.slogdet): no overflow for large X."""

    nargs, code, math = 1, "_logdet({0})", "log(det({0}))"


class sum_entries(MatrixOp):
    nargs, code, math = 1, "np.sum({0}, axis=(-2, -1))", "sum({0})"


class entry(MatrixOp):
    """X[i, j], a scalar (per example)."""

    nargs, code, math = 3, "{p0}[..., {1}, {2}]", "{p0}[{1}, {2}]"


class place(MatrixOp):
    """A matrix shaped like X, zero but for the scalar s at [i, j]: the signal of X from X[i, j]."""

    nargs, code, math = 4, "_place({0}, {1}, {2}, {3})", "{p0}*unit({1}, {2}, {3})"


class fill(MatrixOp):
    """A scalar repeated into every entry of a matrix shaped like the second argument."""

    nargs, code, math = 2, "_fill({0}, {1})", "{p0}*ones_like({1})"


class dim(MatrixOp):
    """A symbolic dimension, read off the argument that has it: dim(W, -2) is W's rows."""

    nargs, code = 2, "np.shape({0})[{1}]"

    def _sympystr(self, printer):
        name = "rows" if self.args[1] == -2 else "cols"
        return f"{name}({printer._print(self.args[0])})"


class eye(MatrixOp):
    nargs, code, math = 1, "np.eye({0})", "I"


class ones(MatrixOp):
    nargs, code, math = 2, "np.ones(({0}, {1}))", "1"


class as_matrix(MatrixOp):
    """A per-example scalar with two trailing axes, so it broadcasts against matrices (printing only)."""

    nargs, code, math = 1, "_as_matrix({0})", "{0}"


SCALAR_RESULT = (trace, det, logdet, sum_entries, entry, dim)
CONSTANT = (dim, eye, ones)          # no derivative: they only carry shapes


class EntrySum(sp.Expr):
    """bp.sum(X): the sum of all entries of a matrix expression, a scalar."""

    is_commutative = True

    def __new__(cls, arg):
        return sp.Expr.__new__(cls, arg)

    def doit(self, **hints):
        arg = self.args[0].doit(**hints) if hints.get("deep", True) else self.args[0]
        return sp.Add(*arg.as_explicit())

    def _sympystr(self, printer):
        return f"sum({printer._print(self.args[0])})"


def sum(expr):  # noqa: A001 - bp.sum, as the issue tracker and users write it
    """The sum of all entries of a matrix expression (a scalar); a scalar is returned unchanged."""
    if isinstance(expr, sp.MatrixBase):
        return sp.Add(*expr)
    if isinstance(expr, sp.MatrixExpr):
        return EntrySum(expr)
    return sp.sympify(expr)


# ---- shapes ----------------------------------------------------------------------------------
def _fmt(shape) -> str:
    return f"({shape[0]}, {shape[1]})"


def is_matrix_op(op) -> bool:
    return isinstance(op, type) and issubclass(op, MatrixOp)


def infer_shape(graph, node) -> tuple | None:
    """The per-example shape of a new operation node from its arguments' shapes (None = scalar)."""
    op = node.op
    if op in SCALAR_RESULT:
        return None
    shapes = [graph.shapes[a] for a in node.args]
    if op is matmul:
        (r, k), (k2, c) = [s or (1, 1) for s in shapes]
        if k != k2 and (k - k2).is_number:
            raise ModelError(f"cannot multiply a {_fmt(shapes[0])} matrix by a {_fmt(shapes[1])} "
                             f"matrix: the inner dimensions differ")
        return (r, c)
    if op is transpose:
        return (shapes[0][1], shapes[0][0])
    if op is inverse:
        return shapes[0]
    if op in (fill, place):
        return shapes[1]
    if op is eye:
        n = _dimension(graph, node.args[0])
        return (n, n)
    if op is ones:
        return (_dimension(graph, node.args[0]), _dimension(graph, node.args[1]))
    found = None
    for s in shapes:  # elementwise: scalars broadcast, matrices must agree
        if s is None:
            continue
        if found is not None and tuple(found) != tuple(s):
            raise ModelError(f"an elementwise operation combines a {_fmt(found)} and a {_fmt(s)} "
                             f"matrix; their shapes must be equal")
        found = s
    return found


def _dimension(graph, i: int):
    node = graph[i]
    if node.op is dim:
        return graph.shapes[node.args[0]][-2 if graph.number(node.args[1]) == -2 else -1]
    return node.value


# ---- from SymPy ----------------------------------------------------------------------------------
def children(e: sp.Basic) -> tuple:
    """The SymPy subexpressions a matrix expression's node is built from."""
    if isinstance(e, (sp.MatrixSymbol, sp.OneMatrix, sp.ZeroMatrix, sp.Identity)):
        return ()
    if isinstance(e, ElementwiseApplyFunction):
        return (e.expr,)
    if isinstance(e, MatrixElement):
        return (e.parent,)
    return e.args


def is_matrix_expr(e: sp.Basic) -> bool:
    return isinstance(e, (sp.MatrixExpr, EntrySum, sp.Trace, sp.Determinant, MatrixElement))


def convert(graph, e: sp.Basic, args: list[int], env: dict) -> int:
    """The node of one matrix expression whose children are already the nodes `args`."""
    if isinstance(e, sp.MatrixSymbol):
        raise AssertionError("matrix symbols are leaves")  # handled with the other symbols
    if isinstance(e, sp.MatMul):
        scalars = [a for a, x in zip(args, e.args) if not isinstance(x, sp.MatrixExpr)]
        matrices = [a for a, x in zip(args, e.args) if isinstance(x, sp.MatrixExpr)]
        product = matrices[0]
        for m in matrices[1:]:
            product = graph.apply(matmul, product, m)
        return graph.mul(*scalars, product) if scalars else product
    if isinstance(e, (sp.MatAdd,)):
        return graph.add(*args)
    if isinstance(e, HadamardProduct):
        return graph.mul(*args)
    if isinstance(e, HadamardPower):
        return graph.pow(*args)
    if isinstance(e, sp.Transpose):
        return graph.apply(transpose, args[0])
    if isinstance(e, sp.Inverse):
        return graph.apply(inverse, args[0])
    if isinstance(e, sp.MatPow):
        k = graph.number(args[1])
        if k is None or not k.is_integer:
            raise ModelError(f"{e}: a matrix power needs an integer exponent")
        base = args[0] if k > 0 else graph.apply(inverse, args[0])
        product = base
        for _ in range(abs(int(k)) - 1):
            product = graph.apply(matmul, product, base)
        return product if k != 0 else eye_like(graph, args[0])
    if isinstance(e, sp.Trace):
        return graph.apply(trace, args[0])
    if isinstance(e, sp.Determinant):
        return graph.apply(det, args[0])
    if isinstance(e, EntrySum):
        return graph.apply(sum_entries, args[0])
    if isinstance(e, MatrixElement):
        if not (e.i.is_Integer and e.j.is_Integer):
            raise ModelError(f"{e}: a matrix entry needs numeric indices (SymPy writes an entry of a "
                             f"product, such as (A*x)[0, 0], as a sum over a symbolic index); use the "
                             f"1x1 product itself, or bp.sum of it")
        return graph.apply(entry, args[0], graph.const(e.i), graph.const(e.j))
    if isinstance(e, ElementwiseApplyFunction):
        variable, body = e.function.variables[0], e.function.expr
        return graph.from_sympy(body, {**env, variable: args[0]})
    if isinstance(e, sp.ZeroMatrix):
        return graph.const(0)
    if isinstance(e, sp.Identity):
        return graph.apply(eye, dimension_node(graph, e.rows))
    if isinstance(e, sp.OneMatrix):
        return graph.apply(ones, dimension_node(graph, e.rows), dimension_node(graph, e.cols))
    raise ModelError(f"{type(e).__name__} is not supported in matrix expressions; supported: "
                     f"MatMul, MatAdd, Transpose, HadamardProduct, HadamardPower, applyfunc, Trace, "
                     f"Inverse, Determinant, bp.sum, Identity, OneMatrix, ZeroMatrix")


def fold(graph, op, args: list[int]) -> int | None:
    """The matrix identities the graph applies as nodes are built: (X^T)^T = X, 0 @ X = 0, ..."""
    from .graph import CONST

    constant = [graph[a].op == CONST for a in args]
    if op is matmul and any(graph.number(a) == 0 for a in args):
        return graph.const(0)
    if op is transpose and (constant[0] or graph[args[0]].op is transpose):
        return args[0] if constant[0] else graph[args[0]].args[0]
    if op in (sum_entries, fill) and graph.number(args[0]) == 0:
        return graph.const(0)
    return None


def eye_like(graph, i: int) -> int:
    """The identity matrix with as many rows as node i's columns."""
    n = graph.shapes[i][1]
    return graph.apply(eye, graph.const(n) if n.is_Integer else graph.apply(dim, i, graph.const(-1)))


def dimension_node(graph, d) -> int:
    """A node holding dimension d: the number itself, or read off a matrix argument that has it."""
    if isinstance(d, (int, sp.Integer)):
        return graph.const(d)
    source = graph.dimension_sources.get(d)
    if source is None:
        raise ModelError(f"dimension {d} is not the size of any matrix argument; use a number or "
                         f"an argument whose shape has {d}")
    symbol, axis = source
    return graph.apply(dim, graph.symbol(symbol), graph.const(axis))


def loss_scalar(graph, node: int) -> int:
    """A 1x1 matrix loss as a scalar; any other matrix shape is refused."""
    shape = graph.shapes[node]
    if shape is None:
        return node
    if tuple(shape) != (1, 1):
        raise NonScalarLossError(f"the loss has shape {tuple(shape)}, not a scalar; reduce it to one "
                                 f"number (bp.sum sums the entries of a matrix)")
    return graph.apply(entry, node, graph.const(0), graph.const(0))


# ---- the generated module's matrix helpers ----------------------------------------------------
# Plain NumPy, copied into modules that use matrices. A batch of column vectors is a stack
# (..., n, 1); NumPy's `@` on a stack runs one small product per example, so a single matrix
# times a stack is reshaped into one large product (one BLAS call), and a parameter's gradient
# sums over the batch inside one product instead of building a stack of outer products.
HELPER_SOURCE = '''
def _T(x):
    """The transpose of each matrix of a stack (x.mT, for any array that NumPy dispatches to)."""
    return np.swapaxes(x, -1, -2)


def _matmul(a, b):
    """a @ b per example; one matrix times a stack of matrices is one matrix product."""
    if np.ndim(a) == 2 and np.ndim(b) > 2:
        rows, cols = np.shape(b)[-2:]
        flat = np.swapaxes(b, -1, -2).reshape(-1, rows) @ np.swapaxes(a, -1, -2)
        return np.swapaxes(flat.reshape(np.shape(b)[:-2] + (cols, np.shape(a)[0])), -1, -2)
    if np.ndim(b) == 2 and np.ndim(a) > 2:
        flat = np.reshape(a, (-1, np.shape(a)[-1])) @ b
        return flat.reshape(np.shape(a)[:-1] + (np.shape(b)[1],))
    return a @ b


def _sum_matmul(a, b, like, shape):
    """The gradient of matrix `like` from the products a @ b of every example of the batch
    `shape`: the sum over the batch is taken inside one matrix product."""
    batch = len(shape)
    if np.ndim(like) == 2 and np.shape(a)[:-2] == shape and np.shape(b)[:-2] == shape and batch:
        rows, cols = np.shape(a)[-2], np.shape(b)[-1]
        total = np.reshape(np.swapaxes(a, -1, -2), (-1, rows)).T @ np.reshape(b, (-1, cols))
        return _sum_like(total, like, np.shape(like))
    if np.ndim(like) == 2 and np.ndim(b) == 2 and np.shape(a)[:-2] == shape and batch:
        return _sum_like(np.sum(a, axis=tuple(range(batch))) @ b, like, np.shape(like))
    if np.ndim(like) == 2 and np.ndim(a) == 2 and np.shape(b)[:-2] == shape and batch:
        return _sum_like(a @ np.sum(b, axis=tuple(range(batch))), like, np.shape(like))
    return _sum_like(_matmul(a, b), like, shape + np.shape(like)[-2:])


def _as_matrix(s):
    """A per-example scalar with two trailing axes, to broadcast against matrices."""
    return s if np.ndim(s) == 0 else np.expand_dims(s, (-2, -1))


def _fill(s, like):
    """The per-example scalar s in every entry of a matrix shaped like `like`."""
    s = _as_matrix(s)
    shape = np.broadcast_shapes(np.shape(s), np.shape(like))
    return np.broadcast_to(s, shape).astype(np.result_type(s, like, 1.0), copy=False)


def _place(s, like, i, j):
    """Zeros shaped like `like` (and the batch of s), with the per-example scalar s at [i, j]."""
    shape = np.broadcast_shapes(np.shape(s) + (1, 1), np.shape(like))
    result = np.zeros(shape, dtype=np.result_type(s, like, 1.0))
    result[..., i, j] = s
    return result


def _logdet(x):
    """log(det(x)) from the LU factors (no overflow); NaN where det(x) <= 0, as log would give."""
    sign, value = np.linalg.slogdet(x)
    return np.where(sign > 0, value, np.nan)[()]


def _check_matrices(values):
    """Matrix arguments as arrays of their declared shape (per example, after any batch axes)."""
    sizes = {}

    def fits(want, got):
        return want == got if isinstance(want, int) else sizes.setdefault(want, got) == got

    values = list(values)
    for i, (name, v) in enumerate(zip(ARGS, values)):
        want = SHAPES.get(name)
        if want is None:
            continue
        if not hasattr(v, "shape") or not hasattr(v, "dtype"):  # a list: an array (Dask stays Dask)
            v = values[i] = np.asarray(v)
        if v.dtype.kind != "f":
            v = values[i] = v.astype(np.float64)
        got = np.shape(v)[-2:]
        if len(got) < 2 or not all(fits(w, g) for w, g in zip(want, got)):
            rows, cols = (sizes.get(w, w) for w in want)
            raise ValueError(f"{name} must have shape ({rows}, {cols}), or (..., {rows}, {cols}) for a "
                             f"batch; got {np.shape(v)}")
    return values
'''
