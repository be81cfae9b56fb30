"""Matrix helpers, copied into modules that use matrices.

A batch of column vectors is a stack (..., n, 1); NumPy's `@` on a stack runs one small product
per example, so a single matrix times a stack is reshaped into one large product (one BLAS
call), and a parameter's gradient sums over the batch inside one product instead of building a
stack of outer products.
"""

import numpy as np

from .core import _sum_like

NEEDS = {"_sum_matmul": ("_matmul", "_sum_like"), "_fill": ("_as_matrix",)}

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


def _unblock(g, like, r0, r1, rs, c0, c1, cs):
    """Zeros shaped like `like` (and the batch of g), with g in the block [r0:r1:rs, c0:c1:cs]."""
    shape = np.broadcast_shapes(np.shape(g)[:-2] + np.shape(like)[-2:], np.shape(like))
    result = np.zeros(shape, dtype=np.result_type(g, like, 1.0))
    result[..., r0:r1:rs, c0:c1:cs] = g
    return result


def _entries(rows, cols, *values):
    """A matrix from its entries, row by row; per-example entries give a stack of matrices."""
    stacked = np.stack(np.broadcast_arrays(*values), axis=-1)
    stacked = stacked.astype(np.result_type(stacked, 1.0), copy=False)
    return stacked.reshape(stacked.shape[:-1] + (rows, cols))


def _logdet(x):
    """log(det(x)) from the LU factors (no overflow); NaN where det(x) <= 0, as log would give."""
    sign, value = np.linalg.slogdet(x)
    return np.where(sign > 0, value, np.nan)[()]
