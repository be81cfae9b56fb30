"""Helpers of indexed models (Sum over IndexedBase), copied into modules that use them.

A value over a Sum's index range is a 1-D array; a slice of an indexed argument is a view, its
adjoint a slice assignment into zeros; a nested Sum lists its index tuples flat, so its indexing
is a gather whose adjoint adds repeated indices (np.bincount). Every access checks its range:
Python's slices would silently wrap a negative index or stop short at the end.
"""

import numpy as np

NEEDS = {"_window": ("_window_checked",), "_window_checked": ("_out_of_range",),
         "_gather": ("_out_of_range",)}


def _out_of_range(name, axis, low, high, size):
    return IndexError(f"{name}[...] reaches index {low if low < 0 else high} along axis {axis}, but "
                      f"{name} has {size} entries there (indices 0 to {size - 1}); make the array "
                      f"larger or the Sum's range smaller")


def _window(x, name, start, stop, step, *axes):
    """x[start:stop:step, ...] per axis, (index, 0, 0) for a fixed index; the range checked (the
    last index of a window is stop - 1)."""
    if not axes and step and 0 <= start and stop <= len(x) and x.ndim == 1:  # the common case
        return x[start:stop:step]
    return _window_checked(x, name, start, stop, step, *axes)


def _window_checked(x, name, *axes):
    if np.ndim(x) != len(axes) // 3:
        raise ValueError(f"{name} must be a {len(axes) // 3}-D array (an indexed model takes no batch "
                         f"axes); got shape {np.shape(x)}")
    key = []
    for axis, (start, stop, step) in enumerate(zip(axes[::3], axes[1::3], axes[2::3])):
        size = x.shape[axis]
        if step == 0:
            if not 0 <= start < size:
                raise _out_of_range(name, axis, start, start, size)
            key.append(start)
            continue
        last = stop - 1 - (stop - 1 - start) % step
        if stop > start and (start < 0 or last >= size):
            raise _out_of_range(name, axis, start, last, size)
        key.append(slice(start, max(stop, start), step))
    return x[tuple(key)]


def _unwindow(g, x, *axes):
    """Zeros shaped like x with g in the window (the adjoint of _window)."""
    out = np.zeros(np.shape(x), dtype=np.result_type(g, x, 1.0))
    out[tuple(start if step == 0 else slice(start, max(stop, start), step)
              for start, stop, step in zip(axes[::3], axes[1::3], axes[2::3]))] = g
    return out


def _nest(lo, stop, outer):
    """The index tuples of a nested Sum, flat: row 0 the position of each one's outer tuple, row 1
    its inner index, from lo to stop - 1 (each may differ per outer tuple: triangular ranges)."""
    size = np.shape(outer)[0]
    lo = np.broadcast_to(lo, (size,))
    counts = np.maximum(np.broadcast_to(stop, (size,)) - lo, 0)
    parent = np.repeat(np.arange(size), counts)
    first = np.cumsum(counts) - counts
    return np.stack([parent, np.arange(parent.size) - first[parent] + lo[parent]])


def _lift(a, parent):
    """An outer value repeated to each of its inner tuples."""
    return a[parent] if np.ndim(a) else a


def _segment_sum(w, parent, like):
    """The values of the inner tuples added up per outer tuple (the inner Sum)."""
    return np.bincount(parent, np.broadcast_to(w, np.shape(parent)), minlength=np.shape(like)[0])


def _gather(x, name, *index):
    """x at integer index arrays (one per axis, or a fixed integer), the range checked."""
    if np.ndim(x) != len(index):
        raise ValueError(f"{name} must be a {len(index)}-D array (an indexed model takes no batch "
                         f"axes); got shape {np.shape(x)}")
    for axis, k in enumerate(index):
        if np.size(k):
            low, high = np.min(k), np.max(k)
            if low < 0 or high >= x.shape[axis]:
                raise _out_of_range(name, axis, int(low), int(high), x.shape[axis])
    return x[index]


def _scatter(g, x, *index):
    """Zeros shaped like x with g added at the indices, repeated ones adding up (one bincount)."""
    shape = np.shape(x)
    index = np.broadcast_arrays(*index)
    flat = np.ravel_multi_index(index, shape) if len(shape) > 1 else index[0]
    weights = np.broadcast_to(g, flat.shape).ravel()
    return np.bincount(flat.ravel(), weights, minlength=int(np.prod(shape))).reshape(shape)


def _accumulate(x, windows, gathers):
    """Zeros shaped like x with each (g, start, stop, step, ...) of `windows` added into its
    slice and each (g, index, ...) of `gathers` added at its indices (one bincount for all)."""
    out = np.zeros(x.shape, dtype=x.dtype if x.dtype.kind == "f" else float)
    for g, *axes in windows:
        if len(axes) == 3 and axes[2]:  # a 1-D window (already checked by _window)
            out[axes[0]:max(axes[0], axes[1]):axes[2]] += g
        else:
            out[tuple(start if step == 0 else slice(start, max(stop, start), step)
                      for start, stop, step in zip(axes[::3], axes[1::3], axes[2::3]))] += g
    if gathers:
        flat, weights = [], []
        for g, *index in gathers:
            index = np.broadcast_arrays(*index)
            flat.append((np.ravel_multi_index(index, out.shape) if out.ndim > 1 else index[0]).ravel())
            weights.append(np.broadcast_to(g, index[0].shape).ravel())
        out += np.bincount(np.concatenate(flat), np.concatenate(weights),
                           minlength=out.size).reshape(out.shape)
    return out
