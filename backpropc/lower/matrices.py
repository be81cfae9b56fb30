"""Matrix expressions (the lecture's vectorised form, slide 17) to the matrix ops of the graph.

Elementwise operations (MatAdd, HadamardProduct, scalar times matrix, f applied to every entry)
become the ordinary graph ops, which broadcast; products, transposes, traces, inverses,
determinants and entries become backpropc.ops.matrix ops.
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.hadamard import HadamardPower, HadamardProduct
from sympy.matrices.expressions.matexpr import MatrixElement

from ..errors import ModelError, NonScalarLossError
from ..functions import EntrySum
from ..ops import Ref
from ..ops.matrix import (
    block,
    det,
    dim,
    entries,
    entry,
    eye,
    eye_like,
    inverse,
    matmul,
    ones,
    sum_entries,
    trace,
    transpose,
)


def children(e: sp.Basic) -> tuple:
    """The SymPy subexpressions a matrix expression's node is built from."""
    if isinstance(e, (sp.MatrixSymbol, sp.OneMatrix, sp.ZeroMatrix, sp.Identity)):
        return ()
    if isinstance(e, ElementwiseApplyFunction):
        return (e.expr,)
    if isinstance(e, (MatrixElement, sp.MatrixSlice)):
        return (e.parent,)
    if isinstance(e, sp.MatrixBase):  # an explicit matrix: its entries, row by row
        return tuple(e)
    if isinstance(e, sp.BlockMatrix):  # refused below, before its blocks are looked at
        return ()
    return e.args


def is_matrix_expr(e: sp.Basic) -> bool:
    return isinstance(e, (sp.MatrixExpr, EntrySum, sp.Trace, sp.Determinant, MatrixElement))


def convert(converter, e: sp.Basic, args: list[int], env: dict) -> int:
    """The node of one matrix expression whose children are already the nodes `args`."""
    graph = converter.graph
    if isinstance(e, sp.MatrixSymbol):
        raise AssertionError("matrix symbols are leaves")  # handled with the other symbols
    if isinstance(e, sp.MatMul):
        scalars = [a for a, x in zip(args, e.args) if not isinstance(x, sp.MatrixExpr)]
        matrices = [a for a, x in zip(args, e.args) if isinstance(x, sp.MatrixExpr)]
        product = matrices[0]
        for m in matrices[1:]:
            product = graph.apply(matmul, product, m)
        return graph.mul(*scalars, product) if scalars else product
    if isinstance(e, sp.MatAdd):
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
        return product if k != 0 else eye_like(graph, Ref(graph, args[0])).id
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
    if isinstance(e, sp.MatrixSlice):
        bounds = [dimension_expr(converter, b) for part in (e.rowslice, e.colslice) for b in part]
        return graph.apply(block, args[0], *bounds)
    if isinstance(e, ElementwiseApplyFunction):
        variable, body = e.function.variables[0], e.function.expr
        return converter.from_sympy(body, {**env, variable: args[0]})
    if isinstance(e, sp.MatrixBase):
        if any(graph.shapes[a] is not None for a in args):
            raise ModelError(f"an explicit sympy.Matrix inside a matrix expression must hold scalars; "
                             f"got a matrix entry in {sp.sstr(e)[:60]}")
        return graph.apply(entries, *args, graph.const(e.rows), graph.const(e.cols))
    if isinstance(e, sp.ZeroMatrix):
        return graph.const(0)
    if isinstance(e, sp.Identity):
        return graph.apply(eye, dimension_node(graph, e.rows))
    if isinstance(e, sp.OneMatrix):
        return graph.apply(ones, dimension_node(graph, e.rows), dimension_node(graph, e.cols))
    raise ModelError(f"{type(e).__name__} is not supported in matrix expressions; supported: "
                     f"MatMul, MatAdd, Transpose, HadamardProduct, HadamardPower, applyfunc, Trace, "
                     f"Inverse, Determinant, bp.sum, slices, Identity, OneMatrix, ZeroMatrix, explicit "
                     f"sympy.Matrix of scalars")


def dimension_expr(converter, d) -> int:
    """A node holding a dimension expression such as n - 1 (a matrix slice's bound)."""
    d = sp.sympify(d)
    if d.is_Integer or isinstance(d, sp.Symbol):
        return dimension_node(converter.graph, d)
    return converter.from_sympy(d, {s: dimension_node(converter.graph, s) for s in d.free_symbols})


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
