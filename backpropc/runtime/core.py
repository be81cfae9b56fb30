"""The plumbing of every generated module: argument checks, sums over the batch, chunked
evaluation of large batches, and the self-check.

The module-level names below stand for the generated module's own constants, which it defines
before these helpers run.
"""

import numpy as np

ARGS = WRT = ()      # argument names (wrt first, then inputs), and the wrt names
SHAPES = {}          # matrix argument -> its shape per example (numbers, or names of dimensions)
INDEXED = ()         # indexed arguments (shapes in SHAPES): parameters exactly, data after a batch
CHUNK = 0            # examples per chunk of a large batch; 0 = no chunks
REDUCTION = "sum"    # the objective: the sum or the mean of the per-example loss
BROADCAST = False    # whether data may broadcast into a batch larger than each of them
HESSIAN_ROWS = HESSIAN_COLS = HESSIAN_COLOURS = ()  # the Hessian's structure (backpropc.sparsity)

NEEDS = {
    "_unpack_floats": ("_unpack",),
    "_checked": ("_as_float",),
    "_unpack": ("_as_float",),
    "_in_chunks": ("_combine",),
    "_flat_value_and_grad": ("_pack",),
    "_self_check": ("_finite_difference_errors",),
    "_jacobian_by_tangents": ("_unpack",),
    "_jacobian_by_colours": ("_unpack",),
}


def _as_float(v, name="an argument"):
    """An argument as the functions compute with it: integers, booleans and float64 scalars as
    Python floats, lists and np.matrix as arrays (so * and ** stay elementwise), integer arrays
    as float64, floating values (float32 too) unchanged; complex numbers and text are refused."""
    if type(v) is np.ndarray and v.dtype.kind == "f":
        return v
    if isinstance(v, (bool, int, np.float64)):
        return float(v)
    if isinstance(v, (list, tuple, np.matrix)):
        v = np.asarray(v)
    kind = getattr(getattr(v, "dtype", None), "kind", "f" if isinstance(v, float) else None)
    kind = "c" if isinstance(v, complex) else kind
    if kind == "c":
        raise TypeError(f"{name} is complex; the functions are real: pass its real part (np.real)")
    if kind not in ("f", "b", "i", "u"):
        raise TypeError(f"{name} must be a number or an array of numbers, not {type(v).__name__}")
    return v.astype(np.float64) if kind in "biu" else v


def _checked(f, *checks):
    """f with its arguments checked: integers become float64, a wrong call or shapes that do not
    broadcast raise an error that says which, and `checks` (the compiler's choice of
    _check_matrices, _check_batch, _check_float_type, each prepared once for f's parameter
    names) map the values of a call to the values to compute with."""
    names = getattr(f, "params", None) or f.__code__.co_varnames[:f.__code__.co_argcount]  # a wrapper's, or f's
    checks = [prepare(names) for prepare in checks]  # [with checks]

    def checked(*args, **kwargs):
        if kwargs or len(args) != len(names):
            rest = names[len(args):]
            if len(args) > len(names) or set(kwargs) != set(rest):
                raise TypeError(f"{f.__name__}() takes the arguments {', '.join(names)}, by position or "
                                f"keyword; missing: {', '.join(a for a in rest if a not in kwargs) or 'none'}; "
                                f"unexpected: {', '.join(k for k in kwargs if k not in rest) or 'none'}; "
                                f"{len(args)} given by position")
            args = args + tuple(kwargs[a] for a in rest)
        values = [v if type(v) is float else float(v) if type(v) is np.float64 else _as_float(v, n)
                  for v, n in zip(args, names)]
        for check in checks:  # [with checks]
            values = check(values)
        try:
            return f(*values)
        except ValueError as exc:
            if "broadcast" not in str(exc):
                raise
            shapes = ", ".join(f"{a} {np.shape(v)}" for a, v in zip(names, values))
            raise ValueError(f"the arguments' shapes do not broadcast together: {shapes}") from None

    checked.__name__, checked.__doc__, checked.__wrapped__, checked.params = f.__name__, f.__doc__, f, names
    return checked


def _check_batch(names):
    """The check of a call's data among the arguments `names`: data whose shapes broadcast to a
    batch larger than each of them (targets (N, 1) beside inputs (N,) give N x N pairs) is
    almost never meant, so it is refused, naming the shapes."""
    data = [(k, n) for k, n in enumerate(names) if n in ARGS and n not in WRT]

    def check(values):
        shapes = [np.shape(values[k])[:np.ndim(values[k]) - len(SHAPES[n])] if n in SHAPES else np.shape(values[k])
                  for k, n in data]
        if sum(1 for s in shapes if s) < 2:
            return values
        try:
            batch = np.broadcast_shapes(*shapes)
        except ValueError:
            return values  # the call reports the shapes that do not broadcast
        if batch not in shapes:
            listed = ", ".join(f"{n} {s}" for (_, n), s in zip(data, shapes))
            raise ValueError(f"the data broadcast to a batch of shape {batch}, larger than any one of them "
                             f"({listed}); give them one shape (e.g. reshape to 1-D), or compile with "
                             f"broadcast=True if the outer product is meant")
        return values
    return check


def _check_float_type(names):
    """The check of a call's float type among the arguments `names`: numbers given as Python
    floats are weak beside data of a narrower float type, as NumPy's own arithmetic treats
    them, so float32 data gives a float32 result whatever the model does to its parameters
    alone (np.cos(0.3) would be a float64, and so would a vector of the parameters)."""
    data = [k for k, n in enumerate(names) if n in ARGS and n not in WRT]

    def check(values):
        narrow = [v.dtype for v in (values[k] for k in data)
                  if getattr(getattr(v, "dtype", None), "kind", None) == "f" and v.dtype.itemsize < 8]
        if not narrow or any(getattr(values[k], "dtype", None) == np.float64 for k in data):
            return values
        scalar = np.result_type(*narrow).type
        return [scalar(v) if type(v) is float else v for v in values]
    return check


def _batch_size(shape):
    """The number of examples in a batch of `shape`, for a mean; an empty batch has no mean."""
    size = int(np.prod(shape))
    if size == 0:
        raise ValueError("the batch is empty: the mean over no examples is undefined; pass at least "
                         "one example, or compile with reduction='sum' (whose empty sum is 0)")
    return size


def _check_matrices(names):
    """The check of a call's matrix arguments among `names`: each as an array of its declared
    shape (per example, after any batch axes)."""
    # (position, name, declared shape, exact): a parameter of an indexed model has no batch
    checked = [(i, name, SHAPES.get(name), bool(INDEXED and name in WRT)) for i, name in enumerate(names)]
    checked = [c for c in checked if c[2] is not None or c[3]]

    def check(values):
        sizes = {}
        values = list(values)
        for i, name, want, exact in checked:
            v = values[i]
            if want is None:
                if exact and np.ndim(v):
                    raise ValueError(f"{name} must be one number: a parameter of a model over indexed arrays "
                                     f"takes no batch (its data may); got shape {np.shape(v)}")
                continue
            if not hasattr(v, "shape") or not hasattr(v, "dtype"):  # a list: an array (Dask stays Dask)
                v = values[i] = np.asarray(v)
            if v.dtype.kind != "f":
                v = values[i] = v.astype(np.float64)
            shape = v.shape
            fits = len(shape) == len(want) if exact else len(shape) >= len(want)
            for w, got in zip(want, shape[len(shape) - len(want):]):
                fits = fits and (w == got if type(w) is int else sizes.setdefault(w, got) == got)
            if not fits:
                dims = ", ".join(str(sizes.get(w, w)) for w in want) + ("," if len(want) == 1 else "")
                batch = "" if exact else f", or (..., {dims}) for a batch"
                raise ValueError(f"{name} must have shape ({dims}){batch}; got {np.shape(v)}")
        return values
    return check


def _in_chunks(f, combine, scalar=None):
    """f evaluated on chunks of CHUNK examples of a large NumPy batch (along its first axis);
    with only Python floats, `scalar` (the same statements on floats) when there is one.

    `combine` says how each result adds up over the chunks: "example" (per-example values,
    concatenated), "total" (summed; a mean weighs each chunk by its size), the name of an
    argument (its gradient: concatenated when the argument is split, else summed), or a tuple
    of these for a tuple result."""
    names = f.__code__.co_varnames[:f.__code__.co_argcount]

    def chunked(*args):
        if all(type(a) is float for a in args):  # no batch: nothing to split
            if scalar is None:
                return f(*args)
            try:
                return scalar(*args)
            except (ArithmeticError, ValueError):  # an inf or a NaN: NumPy gives them as it does
                return f(*[np.float64(a) for a in args])
        shapes = [np.shape(a)[:-2] if name in SHAPES else np.shape(a) for name, a in zip(names, args)]
        batch = np.broadcast_shapes(*shapes)
        if not CHUNK or not batch or batch[0] < 2 * CHUNK or not all(
                isinstance(a, (np.ndarray, np.generic, float)) for a in args):
            return f(*args)
        n = batch[0]
        split = {name: len(s) == len(batch) and s[0] == n for name, s in zip(names, shapes)}
        # Freeing a large block makes glibc's malloc keep freed memory (its mmap and trim
        # thresholds grow), so each chunk reuses the last one's pages instead of faulting in new ones.
        np.empty(1 << 21)
        starts = range(0, n, CHUNK)
        results = [f(*[a[s:s + CHUNK] if split[name] else a for name, a in zip(names, args)]) for s in starts]
        weights = [min(CHUNK, n - s) / n for s in starts] if REDUCTION == "mean" else None
        return _combine(combine, results, split, weights)

    chunked.__name__, chunked.__doc__, chunked.params = f.__name__, f.__doc__, names
    return chunked


def _combine(how, parts, split, weights):
    """The results of the chunks, added up as `how` says (see _in_chunks)."""
    if isinstance(how, tuple):
        return tuple(_combine(h, [p[k] for p in parts], split, weights) for k, h in enumerate(how))
    if how == "example" or split.get(how, False):
        return np.concatenate(parts)
    if weights is not None:
        parts = [w * p for w, p in zip(weights, parts)]
    return sum(parts[1:], parts[0])


def _pack(values):
    """One flat vector of the values, each flattened in C order."""
    if all(type(v) is float or type(v) is np.float64 for v in values):  # numbers: one array
        return np.array(values, dtype=np.float64)
    parts = [np.ravel(v) for v in values]
    return np.concatenate(parts).astype(np.result_type(*parts, 1.0), copy=False)


def _unpack_floats(theta, size):
    """theta's entries as Python floats, when every WRT is a scalar (the flat forms' fast path);
    float32 ones as NumPy's float32 (float32 stays float32)."""
    if type(theta) is np.ndarray and theta.shape == (size,) and theta.dtype.kind == "f":
        return theta.tolist() if theta.dtype == np.float64 else list(theta)
    return _unpack(theta, ((),) * size)


def _unpack(theta, shapes, what="theta"):
    """The values of the given shapes, in order, from the flat vector theta (_pack's inverse)."""
    if type(theta) is not np.ndarray or theta.dtype.kind != "f":
        theta = np.asarray(_as_float(theta, what), dtype=float)
    if theta.shape == (len(shapes),) and all(shape == () for shape in shapes):  # the fast path:
        return theta.tolist() if theta.dtype == np.float64 else list(theta)  # Python floats, or float32
    if any(type(n) is str for shape in shapes for n in shape):
        raise ValueError(f"flat vectors need numeric shapes; the wrt shapes are {shapes}")
    sizes = [int(np.prod(shape)) for shape in shapes]
    if theta.ndim != 1 or theta.shape[0] != sum(sizes):
        raise ValueError(f"{what} must be a 1-D array of {sum(sizes)} numbers (WRT {', '.join(WRT)}, "
                         f"each flattened), got shape {theta.shape}")
    values, start = [], 0
    for shape, size in zip(shapes, sizes):
        values.append(theta[start] if shape == () else theta[start:start + size].reshape(shape))
        start += size
    return values


def _hessian_coo(product, theta, pattern=None):
    """(rows, columns, values) of the Hessian over the flat vector theta, from one product
    (`product(p)`: the Hessian at theta times p, flat) per colour: the columns of a colour share no
    row (the module's HESSIAN_ROWS, HESSIAN_COLS, HESSIAN_COLOURS, the `pattern`), so each product
    gives every entry of its columns at once. Without a pattern: every entry, a product per column
    (a module whose sizes are known only at call time)."""
    theta = np.asarray(theta)
    if pattern is None:
        n = theta.size
        rows, cols, colours = np.repeat(np.arange(n), n), np.tile(np.arange(n), n), np.arange(n)
    else:  # arrays already in a module: no copy
        rows, cols, colours = (np.asarray(a, dtype=np.intp) for a in pattern)
    products = np.zeros((colours.shape[0], colours.max(initial=-1) + 1), dtype=np.result_type(theta, 1.0))
    for c in range(products.shape[1]):
        products[:, c] = product((colours == c).astype(products.dtype))
    # each entry from its column's product and from its row's, averaged: exactly symmetric
    values = (products[rows, colours[cols]] + products[cols, colours[rows]]) / 2
    return rows, cols, values


def _pattern(row_runs, colour_runs):
    """(rows, columns, colours of columns) of a sparse matrix's structural non-zeros (HESSIAN_ROWS,
    HESSIAN_COLS, HESSIAN_COLOURS or JACOBIAN_...) from their runs, (repeats, block) pairs whose
    block is repeated in turn: a row is given as its columns less its own index."""
    def unrun(runs):
        return [item for repeats, block in runs for _ in range(repeats) for item in block]
    offsets = unrun(row_runs)
    rows = np.repeat(np.arange(len(offsets), dtype=np.intp), [len(o) for o in offsets])
    cols = rows + np.array([j for row in offsets for j in row], dtype=np.intp)
    return rows, cols, np.array(unrun(colour_runs), dtype=np.intp)


def _summed_entries(entries, shape, args):
    """The Hessian's entries from their per-example values: each summed over the batch, in the
    floating type of the arguments `args` (float32 stays float32; Python numbers are weak)."""
    dtype = np.result_type(1.0, *{a.dtype for a in args if hasattr(a, "dtype")})
    if not shape:
        return np.array(entries, dtype=dtype)
    return np.array([np.sum(np.broadcast_to(e, shape)) for e in entries], dtype=dtype)


def _named_shapes(shapes, theta, named=None):
    """The shapes with each named dimension a number: its size in `named` (read off the data), or
    for the one size left, the size for which the shapes hold as many numbers as the flat vector
    theta."""
    sizes = dict(named or {})
    length = np.shape(theta)[0] if np.ndim(theta) == 1 else None
    left = sorted({d for shape in shapes for d in shape if type(d) is str and d not in sizes})

    def count(size):
        return sum(int(np.prod([size if d == left[0] else sizes.get(d, d) for d in shape])) for shape in shapes)

    if len(left) == 1 and length is not None and all(d.isidentifier() for d in left):
        low, high = 0, length  # the count grows with the size: bisect for it
        while low < high:
            middle = (low + high) // 2
            low, high = (middle + 1, high) if count(middle) < length else (low, middle)
        if count(low) == length:
            sizes[left[0]] = low
    missing = [d for d in left if d not in sizes]
    if missing:
        names = ", ".join(missing)
        raise ValueError(f"theta (shape {np.shape(theta)}) does not give the size of {names} in the WRT shapes "
                         f"{shapes}: its length gives at most one named size, and only a length that one size "
                         f"fits; pass a theta of such a length, or the data that have the size")
    return tuple(tuple(sizes[d] if type(d) is str else d for d in shape) for shape in shapes)


def _dense(coo, size, shape=None):
    """A dense matrix of `size` columns from (rows, columns, values): square, or with its rows laid
    out as `shape` (a Jacobian's: batch + (residuals,))."""
    rows, cols, values = coo
    shape = (size,) if shape is None else tuple(shape)
    matrix = np.zeros((int(np.prod(shape, dtype=np.intp)), size), dtype=values.dtype)
    matrix[rows, cols] = values
    return matrix.reshape(shape + (size,))


def _coo(matrix):
    """(rows, columns, values) of every entry of a 2-D matrix, row by row."""
    rows, cols = np.indices(np.shape(matrix))
    return rows.ravel(), cols.ravel(), np.ravel(matrix)


def _stack(values, shape):
    """Per-example values side by side along a last axis, each broadcast to the batch `shape`, in
    their float type (a number beside float32 values is float32: Python numbers are weak)."""
    dtype = np.result_type(*[getattr(v, "dtype", v) for v in values], 1.0)  # (a Dask array stays lazy)
    return np.stack([np.broadcast_to(np.asarray(v, dtype) if isinstance(v, (int, float)) else v, shape)
                     for v in values], axis=-1)


def _residual_rows(values, kinds, shape, residuals=None):
    """Per-example residuals (or their tangents) side by side along a last axis, broadcast to the
    batch `shape`. kinds[k] says what values[k] is: "one", a residual; "range", a residual for each
    index of a range (its last axis); "spread", the tangent of such a residual that is the same for
    every index, spread over as many rows as residuals[k] has. A number takes the float type of
    the others and of the residuals (Python numbers are weak)."""
    dtype = np.result_type(*[getattr(v, "dtype", v) for v in (*values, *(residuals or ()))], 1.0)
    values = [np.asarray(v, dtype) if isinstance(v, (int, float)) else v for v in values]
    parts = []
    for k, (v, kind) in enumerate(zip(values, kinds)):
        if kind == "one":
            parts.append(np.broadcast_to(v, shape)[..., None])
        elif kind == "range":
            parts.append(np.broadcast_to(v, shape + np.shape(v)[-1:]))
        else:
            parts.append(np.broadcast_to(np.asarray(v)[..., None], shape + np.shape(residuals[k])[-1:]))
    return np.concatenate(parts, axis=-1)


def _jacobian_by_colours(residuals_jvp, args, wrt_shapes, pattern):
    """(rows, columns, values) of jacobian_flat's matrix: one tangent sweep of
    residuals_jvp(*args, *directions) per colour of columns, its direction 1 on the columns of
    that colour and 0 elsewhere (Curtis, Powell and Reid). `pattern` is (rows, columns, colours
    of columns) of one example's structural non-zeros; the examples of a batch follow each other."""
    rows, cols, colours = pattern
    values, column = np.zeros(len(rows)), None
    for c in range(int(colours.max()) + 1 if len(rows) else 0):
        seed = (colours == c).astype(float)
        column = residuals_jvp(*args, *_unpack(seed, wrt_shapes, "a seed"))[1]  # batch + (residuals,)
        if c == 0:  # in the arguments' float type (a lane vector of the 0/1 seeds is float64)
            dtype = np.result_type(*[getattr(a, "dtype", a) for a in args], 1.0)
            values = np.zeros(np.shape(column)[:-1] + (len(rows),), dtype=dtype)
        picked = colours[cols] == c
        values[..., picked] = column[..., rows[picked]]
    examples = int(np.prod(np.shape(column)[:-1], dtype=np.intp)) if column is not None else 1
    count = np.shape(column)[-1] if column is not None else 0
    return ((np.arange(examples)[:, None] * count + rows).ravel(), np.tile(cols, examples), values.ravel())


def _jacobian_by_tangents(residuals_jvp, args, wrt_shapes):
    """The per-example Jacobian, batch + (residuals, columns): one tangent sweep of
    residuals_jvp(*args, *directions) per entry of the WRT values, its direction 1 and the others 0."""
    sizes = [int(np.prod(s)) for s in wrt_shapes]
    columns = []
    for j in range(sum(sizes)):
        seed = np.zeros(sum(sizes))
        seed[j] = 1.0
        columns.append(residuals_jvp(*args, *_unpack(seed, wrt_shapes, "a seed"))[1])
    if not columns:  # parameters of no entries (a size 0): no columns
        residuals = residuals_jvp(*args, *_unpack(np.zeros(0), wrt_shapes, "a seed"))[0]
        return np.zeros(np.shape(residuals) + (0,), dtype=np.result_type(residuals, 1.0))
    return np.stack(columns, axis=-1)


def _assemble_jacobian(entries, shape, wrt_shapes=None, like=()):
    """The per-example Jacobian, shape + (rows, columns), from its entries (each broadcast), in
    the float type of the entries and of the call's arguments `like` (a constant entry, or an
    integer np.where of constants, is a weak number: float32 stays float32); with `wrt_shapes`,
    a matrix or indexed parameter's entry is its per-example signal (shape + its own shape),
    which fills one column per element, in C order."""
    shape = tuple(shape)
    wrt_shapes = wrt_shapes or ((),) * len(entries[0])
    sizes = [int(np.prod(s)) for s in wrt_shapes]
    kinds = [getattr(v, "dtype", v) for v in [e for row in entries for e in row] + list(like)]
    dtype = np.result_type(*[k for k in kinds if not isinstance(k, np.dtype) or k.kind == "f"], 1.0)
    result = np.empty(shape + (len(entries), sum(sizes)), dtype=dtype)
    for k, row in enumerate(entries):
        start = 0
        for e, own, size in zip(row, wrt_shapes, sizes):
            if own:
                result[..., k, start:start + size] = np.reshape(np.broadcast_to(e, shape + own), shape + (size,))
            else:
                result[..., k, start] = e
            start += size
    return result


def _flat_jacobian(jacobian):
    """Every example's Jacobian rows stacked: one row per residual of each example."""
    shape = np.shape(jacobian)
    return np.reshape(jacobian, (-1 if shape[-1] else int(np.prod(shape[:-1])), shape[-1]))  # no columns: rows


def _objective(loss, mean=False):
    """The sum (or mean) of the per-example loss; a number as it is (np.sum of one costs 4 µs)."""
    return loss if type(loss) is np.float64 or type(loss) is float else np.mean(loss) if mean else np.sum(loss)


def _flat_value_and_grad(result):
    """(objective, gradients) as (float, one flat vector)."""
    value, grads = result
    if type(value) is float:  # computed on Python floats: so is every gradient, unless an
        try:  # indexed model read fixed entries as floats (its gradients are still arrays)
            flat = np.array(grads, dtype=float)
            if flat.shape == (len(grads),):
                return value, flat
        except ValueError:
            pass
    return float(value), _pack(grads)


def _sum_like(g, like, shape):
    """The gradient of `like` from g, the error signal of its copies broadcast to `shape`."""
    scalar = type(like) is float or type(like) is np.float64
    if scalar and not shape and (type(g) is float or type(g) is np.float64):  # no batch: nothing to sum
        return np.float64(g)
    if scalar and np.shape(g) == shape:  # the common case, a scalar parameter: one sum
        return np.sum(g, dtype=np.result_type(g, 1.0))
    # A float parameter's gradient has its dtype (float32 stays float32); otherwise float64 or g's.
    kind = getattr(getattr(like, "dtype", None), "kind", "")
    dtype = like.dtype if kind == "f" else np.result_type(g, 1.0)
    target = (1,) * (len(shape) - np.ndim(like)) + np.shape(like)
    g = np.reshape(g, (1,) * (len(shape) - np.ndim(g)) + np.shape(g))
    axes = [i for i, (n, t) in enumerate(zip(shape, target)) if t == 1 and n != 1]
    # Axes where g itself has length 1 hold identical copies: a product, not a sum over a view.
    summed = tuple(i for i in axes if g.shape[i] != 1)
    copies = int(np.prod([shape[i] for i in axes if g.shape[i] == 1]))
    if summed:
        g = g.sum(axis=summed, keepdims=True)
    g = np.broadcast_to(g, target).reshape(np.shape(like))
    return (g * copies if copies != 1 else g).astype(dtype, copy=False)[()]


def _batch_shape(*args):
    """The broadcast shape of all arguments: the batch the objective runs over (each shape
    counted once: np.broadcast_shapes of a thousand numbers' () takes a millisecond). A tuple is
    a shape already (a matrix's or indexed array's batch axes)."""
    shapes = {a if type(a) is tuple else np.shape(a) for a in args if type(a) is not float}
    return np.broadcast_shapes(*shapes) if shapes else ()


def _finite_difference_errors(value_and_grad, point, wrt, rng, step=1e-6):
    """For each wrt argument of `point` (every argument's value), along a random direction (1 for
    a scalar): its name, backprop's derivative, the central finite-difference estimate, their
    relative error and the estimate's own error; the self-check's, backpropc.check's and the tests'."""
    _, grads = value_and_grad(**point)
    rows = []
    for name, g in zip(wrt, grads):
        x = point[name]
        direction = rng.standard_normal(np.shape(x)) if np.ndim(x) else 1.0
        h = step * max(1.0, float(np.max(np.abs(x))))

        def central(h, name=name, x=x, direction=direction):
            with np.errstate(all="ignore"):
                up = value_and_grad(**dict(point, **{name: x + h * direction}))[0]
                down = value_and_grad(**dict(point, **{name: x - h * direction}))[0]
            return (up - down) / (2 * h), np.finfo(float).eps * max(abs(up), abs(down)) / h

        estimate, rounding = central(h)
        exact = float(np.sum(g * direction))
        scale = max(abs(exact), abs(estimate), 1.0)
        with np.errstate(invalid="ignore"):
            error = abs(exact - estimate) / scale
            own = max(abs(estimate - central(h / 2)[0]), rounding) / scale  # steps h and h/2 disagree
        rows.append((name, exact, float(estimate), float(error) if np.isfinite(error) else np.inf, float(own)))
    return rows


def _self_check(seed=0, batch=3, tolerance=1e-5, value_and_grad=None):
    """Compare value_and_grad (the module's, or the one given) with central finite differences; 0: they agree."""
    value_and_grad = value_and_grad or globals()["value_and_grad"]
    rng = np.random.default_rng(seed)
    # a parameter has its own shape, data a batch of them; a named dimension is 3
    shape = {a: (() if a in WRT else (batch,)) + tuple(3 if type(n) is str else n for n in SHAPES.get(a, ()))
             for a in ARGS}
    for low, high in ((0.1, 0.9), (1.1, 2.0), (-0.9, -0.1), (-2.0, 2.0)) * 5:
        point = {a: rng.uniform(low, high, shape[a] or None) for a in ARGS}
        value, grads = value_and_grad(**point)
        if np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads):
            break
    else:
        print("self-check: found no point where the loss and gradient are finite")
        return 1
    worst = 0.0
    for name, exact, estimate, error, own in _finite_difference_errors(value_and_grad, point, WRT, rng):
        noise = tolerance <= error <= min(10 * own, 1e-3)  # within the estimate's own (small) error
        print(f"d/d{name}: backprop {exact:.10g}  finite differences {estimate:.10g}  relative error {error:.2e}"
              + ("  (within the estimate's own error)" if noise else ""))
        worst = worst if noise else max(worst, error)
    print(f"max relative error {worst:.2e} ({'ok' if worst < tolerance else 'FAILED'})")
    return 0 if worst < tolerance else 1
