"""Helpers of indexed models (Sum over IndexedBase), copied into modules that use them.

A value over a Sum's index range is an array with one entry per index along its last axis (a
batch of data, if any, leads); a slice of an indexed argument is a view, its adjoint a slice
assignment into zeros; a nested Sum lists its index tuples flat, so its indexing is a gather
whose adjoint adds repeated indices (np.bincount). Every access checks its range: Python's slices
would silently wrap a negative index or stop short at the end. A signal sent to an indexed
argument keeps the batch it has (zeros shaped batch + the argument's shape); the gradient sums
it over the batch (`_sum_like`).
"""

import numpy as np

ARGS = WRT = ()  # the generated module's own constants (backpropc.runtime.core)

NEEDS = {"_window": ("_window_checked",), "_window_checked": ("_out_of_range",),
         "_gather": ("_out_of_range", "_extremes"), "_unwindow": ("_lead", "_key", "_sliced"),
         "_scatter": ("_lead",), "_accumulate": ("_zeros_for", "_add_windows", "_scatter", "_accumulate_batched"),
         "_add_windows": ("_key",), "_add_batched_windows": ("_key", "_sliced"),
         "_accumulate_batched": ("_lead", "_key", "_sliced", "_scatter"), "_stencil_coo": ("_stencil_index", "_merged"),
         "_jacobian_coo": ("_stencil_index", "_merged")}


def _out_of_range(name, axis, low, high, size):
    return IndexError(f"{name}[...] reaches index {low if low < 0 else high} along axis {axis}, but "
                      f"{name} has {size} entries there (indices 0 to {size - 1}); make the array "
                      f"larger or the Sum's range smaller")


def _spread(s):
    """A per-example scalar with a trailing axis, to broadcast against values over a Sum's range."""
    return s if type(s) is float or np.ndim(s) == 0 else s[..., None]


def _window(x, name, start, stop, step, *axes):
    """x[..., start:stop:step, ...] per axis, (index, 0, 0) for a fixed index; the range checked
    (the last index of a window is stop - 1)."""
    if not axes and x.ndim == 1:  # the common cases: a 1-D slice, or one entry
        if step and 0 <= start <= stop <= len(x):
            return x[start:stop:step]
        if not step and 0 <= start < len(x):  # a Python float computes faster than np.float64
            return x.item(start) if x.dtype.char == "d" else x[start]
    elif (len(axes) == 3 and x.ndim == 2 and step and not axes[2]  # a column of a 2-D array
          and 0 <= start <= stop <= x.shape[0] and 0 <= axes[0] < x.shape[1]):
        return x[start:stop:step, axes[0]]
    return _window_checked(x, name, start, stop, step, *axes)


def _window_checked(x, name, *axes):
    rank = len(axes) // 3
    if np.ndim(x) < rank:
        raise ValueError(f"{name} must be a {rank}-D array, or (..., {rank}-D) for a batch; got shape "
                         f"{np.shape(x)}")
    key = [...]
    for axis, (start, stop, step) in enumerate(zip(axes[::3], axes[1::3], axes[2::3])):
        size = x.shape[axis - rank]
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


def _key(axes):
    """The index of a window: (..., slice or fixed index per axis)."""
    return (...,) + tuple(start if step == 0 else slice(start, max(stop, start), step)
                          for start, stop, step in zip(axes[::3], axes[1::3], axes[2::3]))


def _sliced(axes):
    """How many axes of a window are slices (the others are fixed indices)."""
    return len(axes) // 3 - axes[2::3].count(0)


def _lead(x, *parts):
    """The shape of zeros that take each (g, k) of `parts`, a signal whose last k axes fall on x's
    entries: the batch axes that any g has before those, then x's shape."""
    lead = [np.shape(g)[:max(np.ndim(g) - k, 0)] for g, k in parts]
    return (np.broadcast_shapes(*lead) if any(lead) else ()) + np.shape(x)


def _unwindow(g, x, *axes):
    """Zeros shaped like x (after g's batch) with g in the window (the adjoint of _window)."""
    out = np.zeros(_lead(x, (g, _sliced(axes))), dtype=np.result_type(g, x, 1.0))
    out[_key(axes)] = g
    return out


def _nest(lo, stop, outer):
    """The index tuples of a nested Sum, flat: row 0 the position of each one's outer tuple, row 1
    its inner index, from lo to stop - 1 (each may differ per outer tuple: triangular ranges).
    They depend only on the sizes, so the last call's tuples are kept (read-only) for the next:
    an optimiser calls with the same sizes every time (1,000 atoms' pairs take 5 ms to list)."""
    size = np.shape(outer)[0]
    key = (size,) + tuple((a.dtype.str, a.shape, a.tobytes()) for a in map(np.asarray, (lo, stop)))
    last = getattr(_nest, "last", None)
    if last is not None and last[0] == key:
        return last[1]
    lo = np.broadcast_to(lo, (size,))
    counts = np.maximum(np.broadcast_to(stop, (size,)) - lo, 0)
    parent = np.repeat(np.arange(size), counts)
    first = np.cumsum(counts) - counts
    tuples = np.stack([parent, np.arange(parent.size) - first[parent] + lo[parent]])
    tuples.flags.writeable = False
    _nest.last = (key, tuples)
    return tuples


def _lift(a, parent):
    """An outer value repeated to each of its inner tuples."""
    rank = np.ndim(a)
    return a[parent] if rank == 1 else a[..., parent] if rank else a


def _segment_sum(w, parent, like):
    """The values of the inner tuples added up per outer tuple (the inner Sum). The tuples are
    listed outer tuple by outer tuple, so each sum is over a contiguous run (np.add.reduceat)."""
    size = np.shape(like)[-1]
    if np.shape(w) != np.shape(parent):
        w = np.broadcast_to(w, np.broadcast_shapes(np.shape(w), np.shape(parent)))
    if type(w) is np.ndarray and w.ndim == 1 and w.dtype.char == "d" and w.size <= 2048:
        # few tuples and no batch: one bincount costs a tenth of finding the runs (13 atoms'
        # 78 pairs: 0.4 against 5.8 us); over some 5,000 tuples the runs' sums are faster
        return np.bincount(parent, w, minlength=size)
    starts = np.searchsorted(parent, np.arange(size + 1))
    dtype = np.result_type(w, 1.0)
    runs = starts[:-1] < starts[1:]  # reduceat would give an empty run the next value
    if runs.all():
        return np.add.reduceat(w, starts[:-1], axis=-1).astype(dtype, copy=False)
    out = np.zeros(w.shape[:-1] + (size,), dtype=dtype)
    if runs.any():
        out[..., runs] = np.add.reduceat(w, starts[:-1][runs], axis=-1)
    return out


def _gather(x, name, *index):
    """x at integer index arrays (one per axis, or a fixed integer), the range checked."""
    if np.ndim(x) < len(index):
        raise ValueError(f"{name} must be a {len(index)}-D array, or (..., {len(index)}-D) for a batch; "
                         f"got shape {np.shape(x)}")
    for axis, k in enumerate(index):
        size = x.shape[axis - len(index)]
        low, high = (k, k) if type(k) is int else _extremes(k)
        if (low < 0 or high >= size) and np.size(k):
            raise _out_of_range(name, axis, int(low), int(high), size)
    return x[index] if x.ndim == len(index) else x[(...,) + index]


def _extremes(k):
    """(min, max) of an index array; the last few are remembered (holding an array keeps its
    identity unique), as the columns of a 2-D array are gathered at the same indices in turn."""
    recent = getattr(_extremes, "recent", ())
    for known, low, high in recent:
        if known is k:
            return low, high
    low, high = (np.min(k), np.max(k)) if np.size(k) else (0, 0)
    _extremes.recent = ((k, low, high),) + recent[:3]
    return low, high


def _scatter(g, x, *index, out=None):
    """Zeros shaped like x (after g's batch) with g added at the indices, repeated ones adding up
    (one bincount); with `out`, added into it."""
    shape = np.shape(x)
    index = np.broadcast_arrays(*index)
    flat = np.ravel_multi_index(index, shape) if len(shape) > 1 else index[0]
    lead = _lead(x, (g, flat.ndim))[:-len(shape)]
    weights = np.broadcast_to(g, lead + flat.shape).reshape(-1)
    size = int(np.prod(shape))
    if lead:  # each example's entries in a block of its own
        flat = (np.arange(int(np.prod(lead)))[:, None] * size + flat.reshape(1, -1)).reshape(-1)
    total = np.bincount(flat.ravel(), weights, minlength=size * int(np.prod(lead))).reshape(lead + shape)
    if out is None:
        return total
    out += total
    return out


def _accumulate(x, windows, gathers):
    """Zeros shaped like x (after any batch of the signals) with each (g, start, stop, step, ...)
    of `windows` added into its slice and each (g, index, ...) of `gathers` added at its indices
    (repeated ones adding up: one bincount per gather)."""
    if len(ARGS) > len(WRT):  # data may carry a batch, and with it the signals
        return _accumulate_batched(x, windows, gathers)
    out = _add_windows(_zeros_for(x), windows)
    flat = out.ndim == 1
    for g, *index in gathers:
        if flat or out.ndim == 2 and type(index[1]) is int:  # entries, or a column at the gathered rows
            if type(g) is not np.ndarray or g.shape != np.shape(index[0]):  # as it is, when it can:
                g = np.broadcast_to(g, np.shape(index[0]))                   # broadcast_to costs 2 us
            added = np.bincount(index[0], g, minlength=out.shape[0])
            if flat:
                out += added
            else:
                out[:, index[1]] += added
        else:
            _scatter(g, x, *index, out=out)
    return out


def _zeros_for(x):
    """Zeros to accumulate x's signal in: x's shape, and its dtype when that is a float's. For a
    large x, one larger array is freed first, so that glibc's malloc keeps the memory it frees
    (see backpropc.blocking._keep_freed_memory): the gradient and the blocks' temporaries reuse
    pages after other NumPy code ran."""
    if x.size > 1 << 15:  # a range longer than a block (blocking.BLOCK)
        np.empty(1 << 21)
    return np.zeros(x.shape, dtype=x.dtype if x.dtype.kind == "f" else float)


def _add_windows(out, windows, subtracted=()):
    """out with each (g, start, stop, step, ...) of `windows` added into its slice and each of
    `subtracted` subtracted from it (-g written as a subtraction: a pass saved), the windows
    already checked by _window."""
    for items, minus in ((windows, False), (subtracted, True)):
        for g, *axes in items:
            if out.ndim == 1 and not axes[2]:  # an entry
                out[axes[0]] = out[axes[0]] - g if minus else out[axes[0]] + g
                continue
            if out.ndim == 1 or len(axes) == 6 and axes[2] and not axes[5]:  # a 1-D window, a column
                if axes[1] <= axes[0]:
                    continue
                view = out[axes[0]:axes[1]:axes[2]] if out.ndim == 1 else out[axes[0]:axes[1]:axes[2], axes[3]]
            else:
                view = out[_key(axes)]
                if type(view) is not np.ndarray:  # an entry of a matrix
                    out[_key(axes)] = view - g if minus else view + g
                    continue
            if minus:
                view -= g
            else:
                view += g
    return out


def _add_batched_windows(out, windows, batch):
    """_add_windows for signals over a batch of data: each is summed over its batch axes as it
    is added (out, a parameter's gradient, has none), and a signal that does not vary over some
    of them counts once per example there."""
    examples = int(np.prod(batch))
    for g, *axes in windows:
        extra = max(np.ndim(g) - _sliced(axes), 0)
        copies = examples // int(np.prod(np.shape(g)[:extra]))
        if extra:
            g = np.sum(g, axis=tuple(range(extra)))
        out[_key(axes)] += g * copies if copies != 1 else g
    return out


def _accumulate_batched(x, windows, gathers):
    """_accumulate when a signal has batch axes: they lead the zeros (the gradient sums them)."""
    parts = [(g, _sliced(axes)) for g, *axes in windows]
    parts += [(g, np.ndim(index[0])) for g, *index in gathers]
    out = np.zeros(_lead(x, *parts), dtype=x.dtype if x.dtype.kind == "f" else float)
    for g, *axes in windows:  # by _key: the batch axes lead (_add_windows's fast paths have none)
        out[_key(axes)] += g
    for g, *index in gathers:
        _scatter(g, x, *index, out=out)
    return out


def _stencil_coo(wrt, families, batch=()):
    """(rows, columns, values) of the Hessian over pack's flat vector, from families of entries:
    (k, row axes, l, column axes, values, over the range, mirrored) enters, for each index of a
    Sum's range, values at the flat index of WRT k's entry at the row axes and WRT l's entry at
    the column axes ((start, stop, step) per axis, (index, 0, 0) for a fixed one; a scalar has
    none), and a mirrored family also with rows and columns swapped. `wrt` are the WRT values:
    their sizes place each in the flat vector. Values are summed over the `batch` (each example
    counts, as in the objective), entries at one place add up, and they come sorted by row, then
    column, in the parameters' float type. The pattern depends on the sizes alone: it is built
    (and sorted) once for them, and reused while the next calls have the same sizes (kept on the
    function itself)."""
    _last = _stencil_coo.__dict__
    pattern = (tuple(np.shape(w) for w in wrt), tuple(f[:4] + f[6:] for f in families))
    if _last.get("pattern") != pattern:
        starts = np.cumsum([0] + [np.size(w) for w in wrt])
        size, rows, cols, counts = int(starts[-1]), [], [], []
        for k, row_axes, col, col_axes, *_, mirrored in families:
            r = _stencil_index(starts, wrt, k, row_axes)
            c = _stencil_index(starts, wrt, col, col_axes)
            lanes = np.broadcast_shapes(np.shape(r), np.shape(c))  # () for two numbers
            counts.append(lanes[0] if lanes else 1)
            r, c = np.broadcast_to(r, counts[-1:]), np.broadcast_to(c, counts[-1:])
            rows += [r, c] if mirrored else [r]
            cols += [c, r] if mirrored else [c]
        where, rows, cols = _merged(rows, cols, size)
        _last.update(pattern=pattern, counts=counts, where=where, rows=rows, cols=cols)
    values = []
    for (*_, value, over_range, mirrored), count in zip(families, _last["counts"]):
        if over_range:  # batch axes lead: summed over them
            value = np.broadcast_to(value, tuple(batch) + (count,)).sum(axis=tuple(range(len(batch))))
        else:
            value = np.full(count, np.sum(np.broadcast_to(value, batch)))
        values += [value, value] if mirrored else [value]
    rows = _last["rows"]
    summed = np.bincount(_last["where"], weights=np.concatenate(values), minlength=len(rows)) if values else \
        np.zeros(0)
    return rows, _last["cols"], summed.astype(np.result_type(*wrt, 1.0), copy=False)  # float32 stays float32


def _stencil_index(starts, wrt, k, axes, what="the Hessian"):
    """The flat index of WRT k's entries at `axes` (an array over a range, or a number)."""
    shape = np.shape(wrt[k])
    strides = np.cumprod((shape + (1,))[:0:-1])[::-1] if shape else ()
    index = int(starts[k])
    for axis, stride in enumerate(strides):
        start, stop, step = axes[3 * axis:3 * axis + 3]
        along = np.arange(start, stop, step) if step else start
        if np.any(np.asarray(along) < 0) or np.any(np.asarray(along) >= shape[axis]):
            raise IndexError(f"{what} reads {WRT[k]}[...] outside its {shape[axis]} entries along axis "
                             f"{axis}; make the array larger or the Sum's range smaller")
        index = index + along * int(stride)
    return index


def _merged(rows, cols, size):
    """(where each entry goes, the rows, the columns) of the places that the entries at `rows` and
    `cols` (lists of index arrays, columns below `size`) reach, sorted by row and then column;
    entries at one place share it."""
    keys = np.concatenate(rows) * size + np.concatenate(cols) if rows else np.zeros(0, dtype=np.intp)
    # each family's keys are sorted already (its indices grow with the lane): a stable sort
    # (timsort) merges those runs, faster than np.unique's own sort
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    first = np.ones(len(keys), dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    places, where = ordered[first], np.empty(len(keys), dtype=np.intp)
    where[order] = np.cumsum(first, dtype=np.intp) - 1
    rows, cols = places // size, places % size
    rows.flags.writeable = cols.flags.writeable = False  # handed out on every call: kept intact
    return where, rows, cols


def _jacobian_coo(wrt, lengths, families, batch=()):
    """(rows, columns, values) of jacobian_flat's matrix, from families of entries: (k, l, axes,
    values, over the range) puts values in residual k's rows (one per index of its range, or its
    one row) at the column of WRT l's entry at `axes` (read as _stencil_coo reads them). `lengths`
    are the residuals' rows in an example, and each example of the `batch` has rows of its own.
    Entries at one place add up, sorted by row and then column; the pattern is kept while the
    sizes stay the same (as _stencil_coo keeps its own)."""
    _last = _jacobian_coo.__dict__
    examples = int(np.prod(batch, dtype=np.intp))
    pattern = (tuple(np.shape(w) for w in wrt), tuple(lengths), tuple(batch), tuple(f[:3] for f in families))
    if _last.get("pattern") != pattern:
        starts = np.cumsum([0] + [np.size(w) for w in wrt])
        offsets = np.cumsum([0] + list(lengths))
        rows, cols = [], []
        for k, l, axes, *_ in families:
            row = offsets[k] + np.arange(lengths[k])
            col = np.broadcast_to(_stencil_index(starts, wrt, l, axes, "the Jacobian"), row.shape)
            rows.append((np.arange(examples)[:, None] * int(offsets[-1]) + row).ravel())
            cols.append(np.tile(col, examples))
        where, rows, cols = _merged(rows, cols, int(starts[-1]))
        _last.update(pattern=pattern, where=where, rows=rows, cols=cols)
    values = [np.broadcast_to(value if over_range else np.asarray(value)[..., None], tuple(batch) + (lengths[k],))
              for k, _, _, value, over_range in families]
    rows = _last["rows"]
    summed = np.bincount(_last["where"], weights=np.concatenate([np.ravel(v) for v in values]),
                         minlength=len(rows)) if values else np.zeros(0)
    dtype = np.result_type(*wrt, *[f[3] for f in families], 1.0)  # numbers as they are: float32 stays
    return rows, _last["cols"], summed.astype(dtype, copy=False)
