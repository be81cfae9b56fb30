"""Helpers of re-rolled families (backpropc.reroll), copied into modules that use them.

A family's values have one entry per term along their last axis (batch axes lead); the symbols
its terms read are stacked side by side into one such vector, and its signal is split back into
the symbols' gradients.
"""

import numpy as np

from .core import _as_float, _sum_like

NEEDS = {"_unlanes": ("_sum_like",), "_lane_accumulate": ("_lane_lazy",), "_lane_lazy": ("_lane_placed",),
         "_lane_unslice": ("_lane_accumulate",), "_flat_theta": ("_as_float",)}


def _lanes(values):
    """The values side by side along a last axis (arrays, a batch, broadcast to one shape first)."""
    if not set(map(type, values)) <= {float, np.float64, np.float32, np.ndarray}:  # Dask [with data]
        return np.stack(np.broadcast_arrays(*values), axis=-1)
    try:
        stacked = np.array(values)
    except ValueError:  # arrays of different shapes
        return np.stack(np.broadcast_arrays(*values), axis=-1)
    return stacked if stacked.ndim == 1 else np.moveaxis(stacked, 0, -1)


def _flat_theta(theta, size, what="theta"):
    """theta (or a direction p) as the lane vector of a re-rolled model's parameters: `size` floats."""
    if type(theta) is not np.ndarray or theta.dtype.kind != "f":
        theta = np.asarray(_as_float(theta, what), dtype=float)
    if theta.shape != (size,):
        raise ValueError(f"{what} must be a 1-D array of {size} numbers (WRT, in order), got shape {theta.shape}")
    return theta


def _table_like(table, lanes):
    """A table of a family's numbers in the float type of the lane vector they meet: numbers
    are weak beside arrays, as in NumPy's own arithmetic, so float32 stays float32."""
    return table if lanes.dtype == table.dtype else table.astype(lanes.dtype)


def _lane_lift(v):
    """A value the terms share, with a last axis to broadcast over the lanes (numbers need none)."""
    return v[..., None] if getattr(v, "ndim", 0) else v


def _lane_uniform_sum(v, count):
    """The sum over `count` lanes of a value the same in each: its one lane (a last axis of
    length 1, or none), times count."""
    return (v[..., 0] if np.ndim(v) else v) * count


def _lane_dot(a, b):
    """(a*b).sum(-1), in one pass (np.vecdot) when both are NumPy arrays of one number of lanes."""
    if type(a) is np.ndarray and type(b) is np.ndarray and a.ndim and b.ndim and a.shape[-1] == b.shape[-1]:
        if a.shape[-1] > 10_000 and a.ndim == b.ndim == 1:  # past OpenBLAS's threads' threshold, in rows [with long]
            # (its threads cost more than they save on a dot product, far more on a busy machine)
            whole = a.shape[-1] - a.shape[-1] % 8192
            rows = np.vecdot(a[:whole].reshape(-1, 8192), b[:whole].reshape(-1, 8192)).sum()
            return rows + np.vecdot(a[whole:], b[whole:]) if whole < a.shape[-1] else rows
        return a.dot(b) if a.ndim == b.ndim == 1 else np.vecdot(a, b)  # a.dot: 1 us less per call
    return (a * b).sum(-1)


def _lane_unslice(g, x, start, stop, step):
    """Zeros with x's number of lanes, g added into lanes start:stop:step (the adjoint of a slice)."""
    return _lane_accumulate(x, ((g, start, stop, step),), ())


def _lane_placed(g, start, stop, step, size):
    """Zeros of `size` lanes with g in lanes start:stop:step, built from whole arrays with NumPy
    functions (so that a Dask array stays a lazy one): g's lanes interleaved with step - 1 lanes
    of zeros, then zeros before and after."""
    count = len(range(start, stop, step))
    g = np.broadcast_to(g, np.shape(g)[:-1] + (count,))
    lead = g.shape[:-1]
    if step > 1:
        g = np.stack([g] + [np.zeros_like(g)] * (step - 1), axis=-1).reshape(lead + (count * step,))
        g = g[..., :stop - start]
    zeros = np.zeros_like(g[..., :1])
    return np.concatenate([zeros[..., :0]] + [zeros] * start + [g] + [zeros] * (size - start - g.shape[-1]), axis=-1)


def _lane_scatter(g, x, index):
    """Zeros with x's number of lanes, g added at the lanes `index` lists; repeated lanes add up."""
    g = np.asarray(g)
    lead = g.shape[:-1]
    size = np.shape(x)[-1]
    rows = np.broadcast_to(g, lead + (len(index),)).reshape(-1, len(index))
    if len(rows) == 1:
        return np.bincount(index, weights=rows[0], minlength=size).reshape(lead + (size,))
    out = np.zeros((len(rows), size), dtype=np.result_type(g, x, 1.0))
    np.add.at(out, (slice(None), index), rows)
    return out.reshape(lead + (size,))


def _lane_accumulate(x, slices, gathers):
    """Zeros with x's number of lanes, every (g, start, stop, step) slice signal and (g, index)
    gather signal added in: the signal of a lane vector, in one array; repeated lanes add up."""
    signals = [g for g, *_ in slices + gathers]
    if not set(map(type, signals)) <= {float, int, np.float64, np.float32, np.ndarray}:  # Dask arrays [with data]
        return _lane_lazy(x, slices, gathers)
    if type(x) is np.ndarray and x.ndim == 1 and x.dtype.char == "d" and all(
            type(g) is float or type(g) is np.float64 or type(g) is np.ndarray and g.ndim <= 1 for g in signals):
        out = np.zeros(x.shape[0])  # no batch, float64: the common case of a call from an optimiser
    else:
        lead = np.broadcast_shapes(*[np.shape(g)[:-1] for g in signals])
        out = np.zeros(lead + np.shape(x)[-1:], dtype=x.dtype if x.dtype.kind == "f" else float)  # x's, as a gradient
    for g, start, stop, step in slices:  # [with slices]
        if stop - start == 1 and out.ndim == 1 and (type(g) is float or type(g) is np.float64):
            out[start] += g  # one lane (a boundary term's): 0.1 us, where a slice takes 0.8
        else:
            out[..., start:stop:step] += g
    if gathers and out.ndim == 1:  # no batch: every gather's signal in one np.bincount [with gathers]
        index = np.concatenate([index for _, index in gathers])
        # a signal of the index's shape as it is: np.broadcast_to costs 2 us a call
        weights = np.concatenate([g if type(g) is np.ndarray and g.shape == np.shape(index)
                                  else np.broadcast_to(g, np.shape(index)) for g, index in gathers])
        out += np.bincount(index, weights=weights, minlength=out.shape[-1])
    elif gathers:  # a batch: one np.add.at a gather [with gathers]
        for g, index in gathers:
            np.add.at(out, (..., index), g)
    return out


def _lane_lazy(x, slices, gathers):
    """_lane_accumulate of signals that are not NumPy values (Dask arrays), built with
    whole-array functions so that they stay lazy."""
    size = np.shape(x)[-1]
    parts = [_lane_placed(g, start, stop, step, size) for g, start, stop, step in slices]
    for g, index in gathers:  # repeated lanes add up: a product with a 0/1 matrix
        choose = np.zeros((len(index), size))
        choose[np.arange(len(index)), index] = 1.0
        parts.append(np.broadcast_to(g, np.shape(g)[:-1] + (len(index),)) @ choose)
    return sum(parts[1:], parts[0])


def _unlanes(signal, values, shape):
    """The gradients of a lane vector's symbols from its signal, each summed down to its own shape."""
    if np.ndim(signal) == 1 and shape == () and signal.dtype == np.float64:  # no batch, floats
        return tuple(signal.tolist())
    if type(signal) is np.ndarray and all(type(v) is float or type(v) is np.float64 for v in values):  # [with data]
        # numbers (parameters) over a batch of data: every lane summed over it at once
        like = np.zeros(signal.shape[-1], dtype=np.result_type(signal, 1.0))
        return tuple(_sum_like(signal, like, tuple(shape) + like.shape))
    return tuple(_sum_like(signal[..., k], v, shape) for k, v in enumerate(values))
