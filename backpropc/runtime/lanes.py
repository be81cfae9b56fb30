"""Helpers of re-rolled families (backpropc.reroll), copied into modules that use them.

A family's values have one entry per term along their last axis (batch axes lead); the symbols
its terms read are stacked side by side into one such vector, and its signal is split back into
the symbols' gradients.
"""

import numpy as np

from .core import _sum_like

NEEDS = {"_unlanes": ("_sum_like",), "_lane_accumulate": ("_lane_scatter",)}


def _lanes(values):
    """The values side by side along a last axis: numbers give a vector; arrays (a batch) are
    broadcast to one shape first."""
    try:
        stacked = np.array(values)
    except ValueError:  # arrays of different shapes
        return np.stack(np.broadcast_arrays(*values), axis=-1)
    return stacked if stacked.ndim == 1 else np.moveaxis(stacked, 0, -1)


def _flat_theta(theta, size):
    """theta as the lane vector of a re-rolled model's parameters: 1-D, `size` floats."""
    if type(theta) is not np.ndarray or theta.dtype.kind != "f":
        theta = np.asarray(theta, dtype=float)
    if theta.shape != (size,):
        raise ValueError(f"theta must be a 1-D array of {size} numbers (WRT, in order), got shape "
                         f"{theta.shape}")
    return theta


def _lane_lift(v):
    """A value the terms share, with a last axis to broadcast over the lanes (numbers need none)."""
    return v[..., None] if isinstance(v, np.ndarray) else v


def _lane_unslice(g, x, start, stop, step):
    """Zeros with x's number of lanes, g added into lanes start:stop:step (the adjoint of a slice)."""
    out = np.zeros(np.shape(g)[:-1] + np.shape(x)[-1:], dtype=np.result_type(g, x, 1.0))
    out[..., start:stop:step] += g
    return out


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
    gather signal added in: the signal of a lane vector, in one array."""
    lead = np.broadcast_shapes(*[np.shape(g)[:-1] for g, *_ in slices + gathers])
    out = np.zeros(lead + np.shape(x)[-1:], dtype=np.result_type(x, 1.0, *[g for g, *_ in slices + gathers]))
    for g, start, stop, step in slices:
        out[..., start:stop:step] += g
    if gathers and out.ndim == 1:  # no batch: every gather's signal in one np.bincount
        index = np.concatenate([index for _, index in gathers])
        weights = np.concatenate([np.broadcast_to(g, np.shape(index)) for g, index in gathers])
        out += np.bincount(index, weights=weights, minlength=out.shape[-1])
    else:
        for g, index in gathers:
            out += _lane_scatter(g, x, index)
    return out


def _unlanes(signal, values, shape):
    """The gradients of the symbols stacked in a lane vector, from its signal: each summed over
    the batch down to its own symbol's shape."""
    if np.ndim(signal) == 1 and shape == ():  # no batch: the entries are the gradients
        return tuple(signal.tolist())
    return tuple(_sum_like(signal[..., k], v, shape) for k, v in enumerate(values))
