"""Sparse Jacobians of residuals over a range: jacobian_coo(*args) as families of entries (an
indexed parameter read through windows: x[i - 1], x[i], x[i + 1], x[0]), built for the n of the
call. Checked against sympy.Matrix.jacobian of the residuals written out at small n and central
differences of residuals_flat; models of another kind keep every entry."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backpropc as bp

n = sp.Symbol("n", integer=True, positive=True)
i = sp.Symbol("i", integer=True)
x, y = sp.IndexedBase("x", shape=(n,)), sp.IndexedBase("y", shape=(n,))
lam = sp.Symbol("lam")


def broyden():
    """Broyden tridiagonal (MGH 30) as its residuals: a square system, three bands."""
    inner = ((3 - 2 * x[i]) * x[i] - x[i - 1] - 2 * x[i + 1] + 1, (i, 1, n - 2))
    first = (3 - 2 * x[0]) * x[0] - 2 * x[1] + 1
    last = (3 - 2 * x[n - 1]) * x[n - 1] - x[n - 2] + 1
    return bp.Model("broyden", residuals=[first, inner, last], wrt=[x])


def smoothing():
    """Denoising y: a residual per sample, and lam times each difference (a scalar parameter)."""
    return bp.Model("smoothing", residuals=[(x[i] - y[i], (i, 0, n - 1)), (lam * (x[i + 1] - x[i]), (i, 0, n - 2))],
                    wrt=[x, lam], inputs=[y])


def written_out(model, size, values):
    """The residuals at n = size as rows of SymPy expressions in x_k (and y_k at `values`)."""
    xs = [sp.Symbol(f"x_{k}") for k in range(size)]
    entries = {"x": xs, "y": [sp.Float(v, 30) for v in values.get("y", [])]}

    def explicit(e):
        e = sp.sympify(e).xreplace({n: size}).doit()
        return e.replace(lambda q: isinstance(q, sp.Indexed), lambda q: entries[q.base.name][int(q.indices[0])])

    rows = []
    for r in model.residuals:
        if isinstance(r, tuple):
            expr, (index, lo, hi) = r
            hi = int(sp.sympify(hi).xreplace({n: size}))
            rows += [explicit(sp.sympify(expr).xreplace({index: k})) for k in range(int(lo), hi + 1)]
        else:
            rows.append(explicit(r))
    scalars = [w for w in model.wrt if isinstance(w, sp.Symbol)]
    return sp.Matrix(rows), xs + scalars


def exact_jacobian(model, size, theta, values):
    rows, symbols = written_out(model, size, values)
    J = rows.jacobian(symbols).xreplace(dict(zip(symbols, [sp.Float(float(v), 30) for v in theta])))
    return np.array(J.evalf(30), dtype=float).reshape(len(rows), len(symbols))


def central(f, theta, h=1e-6):
    return np.stack([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(len(theta))], axis=1)


@pytest.mark.parametrize("make", [broyden, smoothing])
@pytest.mark.parametrize("size", [3, 4, 7])
def test_the_families_give_the_jacobian_at_every_size(make, size):
    model = make()
    compiled = bp.compile(model, derivatives=("jacobian",))
    assert "_jacobian_coo(" in compiled.source and "_jacobian_by_tangents" not in compiled.source
    module = compiled.load()
    rng = np.random.default_rng(size)
    data = {"y": rng.uniform(-1, 1, size)} if "y" in module.ARGS else {}
    theta = rng.uniform(-1, 1, size + (1 if "lam" in module.WRT else 0))
    args = [*module.unpack(theta), *data.values()]
    exact = exact_jacobian(model, size, theta, data)
    flat = module.jacobian_flat(theta, *data.values())
    np.testing.assert_allclose(flat, exact, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(flat, central(lambda t: module.residuals_flat(t, *data.values()), theta),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(module.jacobian(*args), flat)
    rows, cols, values = module.jacobian_coo(*args)
    keys = rows * len(theta) + cols
    assert np.all(np.diff(keys) > 0)  # sorted by row, then column, each place once
    structural = exact != 0
    assert len(values) >= structural.sum()  # a structural entry may happen to be 0 here
    dense = np.zeros_like(flat)
    dense[rows, cols] = values
    np.testing.assert_array_equal(dense, flat)


def test_broyden_has_three_bands_whatever_n():
    module = bp.compile(broyden(), derivatives=("jacobian",)).load()
    for size in (5, 50, 5000):
        rows, cols, values = module.jacobian_coo(np.linspace(-1, 1, size))
        assert len(values) == 3 * size - 2
        assert set(np.unique(cols - rows)) == {-1, 0, 1}


def test_a_batch_of_series_has_rows_of_its_own_and_float32_stays():
    module = bp.compile(smoothing(), derivatives=("jacobian",)).load()
    size, rng = 6, np.random.default_rng(3)
    ys = rng.uniform(-1, 1, (2, 3, size))
    theta = rng.uniform(-1, 1, size + 1)
    flat = module.jacobian_flat(theta, ys)
    assert flat.shape == (2 * 3 * (2 * size - 1), size + 1)
    np.testing.assert_allclose(flat, central(lambda t: module.residuals_flat(t, ys), theta), rtol=1e-6, atol=1e-7)
    for k, series in enumerate(ys.reshape(6, size)):
        rows = slice(k * (2 * size - 1), (k + 1) * (2 * size - 1))
        np.testing.assert_allclose(flat[rows], exact_jacobian(smoothing(), size, theta, {"y": series}), atol=1e-14)
    assert module.jacobian(*module.unpack(theta), ys).shape == (2, 3, 2 * size - 1, size + 1)
    x32, y32 = theta[:-1].astype(np.float32), ys.astype(np.float32)
    assert module.jacobian_coo(x32, np.float32(theta[-1]), y32)[2].dtype == np.float32


def test_calls_that_change_size_and_back_reuse_their_pattern():
    module = bp.compile(broyden(), derivatives=("jacobian",)).load()
    first = module.jacobian_coo(np.full(8, 0.5))
    other = module.jacobian_coo(np.full(5, 0.5))
    again = module.jacobian_coo(np.full(8, -0.5))
    assert len(other[0]) == 13 and len(first[0]) == len(again[0]) == 22
    np.testing.assert_array_equal(first[0], again[0])
    with pytest.raises(ValueError):
        first[0][0] = 1  # handed out read-only: the next call gets them intact


def test_least_squares_with_the_sparse_jacobian():
    scipy = pytest.importorskip("scipy")
    from scipy.optimize import least_squares
    from scipy.sparse import coo_matrix

    module = bp.compile(broyden(), derivatives=("jacobian",)).load()
    size = 2000

    def jac(theta):
        rows, cols, values = module.jacobian_coo(theta)
        return coo_matrix((values, (rows, cols)), shape=(size, size)).tocsr()

    fit = least_squares(module.residuals_flat, -np.ones(size), jac=jac, tr_solver="lsmr")
    assert fit.success and fit.cost < 1e-15 and np.abs(module.residuals_flat(fit.x)).max() < 1e-7
    assert scipy.sparse.issparse(fit.jac)


def test_a_residual_that_reads_a_sum_keeps_every_entry():
    k = sp.Symbol("k", integer=True)
    centred = bp.Model("centred", residuals=[(x[i] - sp.Sum(x[k], (k, 0, n - 1)) / n - y[i], (i, 0, n - 1))],
                       wrt=[x], inputs=[y])
    module = bp.compile(centred, derivatives=("jacobian",)).load()
    size, rng = 5, np.random.default_rng(0)
    theta, ys = rng.uniform(-1, 1, size), rng.uniform(-1, 1, size)
    values = module.jacobian_coo(theta, ys)[2]
    assert len(values) == size * size
    np.testing.assert_allclose(values.reshape(size, size), np.eye(size) - 1 / size, atol=1e-15)
    np.testing.assert_allclose(module.jacobian_flat(theta, ys), exact_jacobian(centred, size, theta, {"y": ys}),
                               atol=1e-14)


def test_scalar_parameters_get_a_dense_jacobian_and_its_coo():
    t = sp.IndexedBase("t", shape=(n,))
    a, k = sp.symbols("a k")
    decay = bp.Model("decay", residuals=[(a * sp.exp(-k * t[i]) - y[i], (i, 0, n - 1))], wrt=[a, k], inputs=[t, y])
    module = bp.compile(decay, derivatives=("jacobian",)).load()
    ts, ys = np.linspace(0, 2, 4), np.linspace(1, 0, 4)
    rows, _, values = module.jacobian_coo(1.5, 0.7, ts, ys)
    np.testing.assert_array_equal(values.reshape(4, 2), module.jacobian_flat(np.array([1.5, 0.7]), ts, ys))
    np.testing.assert_array_equal(rows, np.repeat(np.arange(4), 2))


def test_a_window_past_the_array_is_an_index_error():
    short = bp.Model("short", residuals=[(x[i + 2] - x[i], (i, 0, n - 1))], wrt=[x])
    module = bp.compile(short, derivatives=("jacobian",)).load()
    with pytest.raises(IndexError, match="x"):
        module.jacobian_coo(np.ones(4))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shifts=st.lists(st.integers(0, 2), min_size=1, max_size=3), power=st.integers(1, 3),
       fixed=st.booleans(), size=st.integers(4, 6), seed=st.integers(0, 10 ** 6))
def test_random_windows_agree_with_sympy(shifts, power, fixed, size, seed):
    """Products and powers of shifted windows, a fixed entry and a scalar parameter, over a range
    that keeps every window inside the array."""
    reach = max(shifts)
    term = sp.Mul(*[x[i + s] for s in shifts]) ** power + lam * sp.sin(x[i + shifts[0]]) - y[i]
    if fixed:
        term += x[0] * x[i + reach]
    model = bp.Model("random", residuals=[(term, (i, 0, n - 1 - reach)), lam * x[n - 1] - 1], wrt=[x, lam],
                     inputs=[y])
    module = bp.compile(model, derivatives=("jacobian",)).load()
    rng = np.random.default_rng(seed)
    theta, ys = rng.uniform(-1, 1, size + 1), rng.uniform(-1, 1, size)
    np.testing.assert_allclose(module.jacobian_flat(theta, ys), exact_jacobian(model, size, theta, {"y": ys}),
                               rtol=1e-12, atol=1e-13)


# ---- systems written in a loop over scalar symbols ---------------------------------------------------
def broyden_loop(size: int, t=None) -> bp.Model:
    xs = sp.symbols(f"x0:{size}")

    def at(k):
        return xs[k] if 0 <= k < size else 0
    scale = 1 if t is None else t
    residuals = [(3 - 2 * xs[k]) * xs[k] - at(k - 1) - 2 * scale * at(k + 1) + 1 for k in range(size)]
    return bp.Model("broyden_loop", residuals=residuals, wrt=list(xs), inputs=[] if t is None else [t])


def test_a_system_written_in_a_loop_colours_its_columns():
    """70 residuals of 70 unknowns, three per row: three tangent sweeps, not 70, and the module
    lists the pattern as runs (a band is a few of them)."""
    model = broyden_loop(70)
    compiled = bp.compile(model, derivatives=("jacobian",))
    assert "JACOBIAN_ROW_RUNS = ((1, ((0, 1),)), (68, ((-1, 0, 1),)), (1, ((-1, 0),)))" in compiled.source
    module = compiled.load()
    assert module.JACOBIAN_COLOURS.max() + 1 == 3 and len(module.JACOBIAN_ROWS) == 3 * 70 - 2
    theta = np.random.default_rng(1).uniform(-1, 1, 70)
    xs = sp.symbols("x0:70")
    exact = sp.Matrix([sp.sympify(r) for r in model.residuals]).jacobian(xs)
    exact = np.array(exact.xreplace(dict(zip(xs, theta))).evalf(), dtype=float)
    np.testing.assert_allclose(module.jacobian_flat(theta), exact, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(module.jacobian_flat(theta), central(module.residuals_flat, theta), rtol=1e-6,
                               atol=1e-7)
    rows, cols, values = module.jacobian_coo(*theta)
    np.testing.assert_array_equal(rows, module.JACOBIAN_ROWS)
    np.testing.assert_allclose(values, exact[rows, cols], rtol=1e-14)


def test_a_system_with_a_batch_of_data_and_float32():
    t = sp.Symbol("t")
    model = broyden_loop(70, t)
    module = bp.compile(model, derivatives=("jacobian",)).load()
    rng = np.random.default_rng(2)
    theta, ts = rng.uniform(-1, 1, 70), rng.uniform(0.5, 1.5, 3)
    flat = module.jacobian_flat(theta, ts)
    assert flat.shape == (3 * 70, 70)
    np.testing.assert_allclose(flat, central(lambda v: module.residuals_flat(v, ts), theta), rtol=1e-6, atol=1e-7)
    assert module.jacobian(*theta, ts).shape == (3, 70, 70)
    values32 = module.jacobian_coo(*theta.astype(np.float32), ts.astype(np.float32))[2]
    assert values32.dtype == np.float32


def test_a_system_whose_rows_read_everything_takes_a_sweep_per_column():
    xs = sp.symbols("x0:65")
    total = sp.Add(*xs)
    model = bp.Model("coupled", residuals=[x_k * total - 1 for x_k in xs], wrt=list(xs))
    module = bp.compile(model, derivatives=("jacobian",)).load()
    assert module.JACOBIAN_COLOURS.max() + 1 == 65
    theta = np.linspace(0.1, 1.0, 65)
    np.testing.assert_allclose(module.jacobian_flat(theta), central(module.residuals_flat, theta), rtol=1e-6,
                               atol=1e-7)


def test_a_numeric_size_reads_the_same_families():
    size = 7

    def numeric(r):
        if isinstance(r, tuple):
            expr, (index, lo, hi) = r
            return expr.xreplace({n: size}), (index, lo, sp.sympify(hi).xreplace({n: size}))
        return sp.sympify(r).xreplace({n: size})
    model = bp.Model("broyden7", residuals=[numeric(r) for r in broyden().residuals], wrt=[x.xreplace({n: size})])
    compiled = bp.compile(model, derivatives=("jacobian",))
    assert "_jacobian_coo(" in compiled.source
    theta = np.random.default_rng(4).uniform(-1, 1, size)
    np.testing.assert_allclose(compiled.load().jacobian_flat(theta), exact_jacobian(broyden(), size, theta, {}),
                               rtol=1e-13, atol=1e-14)
