"""Residuals over a range: a residual for each index i of per-index data (a curve fit over t[i],
y[i]), written as (expr, (i, lo, hi)) or with a bounded sympy.Idx. Checked against
sympy.Matrix.jacobian and sympy.hessian of the residuals written out at a small n, and central
differences of the module's own residuals."""

import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backpropc as bp
from backpropc.errors import ModelError

n = sp.Symbol("n", integer=True, positive=True)
j = sp.Symbol("j", integer=True)
t, y = sp.IndexedBase("t", shape=(n,)), sp.IndexedBase("y", shape=(n,))
a, b, c = sp.symbols("a b c")


def written_out(residuals, size):
    """Each residual at n = size, one per index of its range, with t[k], y[k] as symbols t_k, y_k."""
    entries = {base: [sp.Symbol(f"{base}_{k}") for k in range(size)] for base in ("t", "y")}

    def explicit(e):
        e = sp.sympify(e).xreplace({n: size}).doit()
        return e.replace(lambda q: isinstance(q, sp.Indexed), lambda q: entries[q.base.name][int(q.indices[0])])

    rows = []
    for r in residuals:
        if isinstance(r, tuple):
            expr, (index, lo, hi) = r
        else:
            index = next((q for q in sp.sympify(r).atoms(sp.Idx)), None)
            expr, lo, hi = r, *(((index.lower, index.upper)) if index is not None else (None, None))
        if index is None:
            rows.append(explicit(expr))
        else:
            hi = int(sp.sympify(hi).xreplace({n: size}))
            rows += [explicit(sp.sympify(expr).xreplace({index: k})) for k in range(int(lo), hi + 1)]
    return rows, entries["t"] + entries["y"]


def evaluator(values):
    """expressions -> their values at `values`, as a float array (30 digits, then rounded)."""
    return lambda e: np.array(sp.Matrix(e).xreplace(values).evalf(30), dtype=float)


MODELS = {
    # exponential decay over an Idx with bounds: one residual per sample
    "decay": [a * sp.exp(-b * t[sp.Idx("i", n)]) - y[sp.Idx("i", n)]],
    # a residual the same for every index's parameter part (its tangent spreads over the range),
    # a scalar residual, and a shifted index over a shorter range
    "mixed": [(y[j] - a, (j, 0, n - 1)), b - 1, (a * (t[j + 1] - t[j]) - b * y[j] ** 2 + c * t[j], (j, 0, n - 2))],
    # a Michaelis-Menten rate, with a Sum over all the samples inside each residual
    "michaelis": [(a * t[j] / (b + t[j]) - y[j] + c * sp.Sum(t[sp.Idx("k")], (sp.Idx("k"), 0, n - 1)) / 100,
                   (j, 0, n - 1))],
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_residuals_over_a_range_match_sympy(name):
    residuals = MODELS[name]
    params = [s for s in (a, b, c) if any(sp.sympify(r[0] if isinstance(r, tuple) else r).has(s) for r in residuals)]
    model = bp.Model(name, residuals=residuals, wrt=params, inputs=[t, y])
    module = bp.compile(model, derivatives=("jacobian", "hessian", "hvp")).load()
    size = 6
    rng = np.random.default_rng(len(name))
    ts, ys = rng.uniform(0.5, 2.0, size), rng.uniform(-1.0, 1.0, size)
    theta = rng.uniform(0.5, 1.5, len(params))
    rows, data = written_out(residuals, size)
    values = dict(zip(params, theta)) | dict(zip(data, [*ts, *ys]))
    numbers = evaluator(values)

    residual = module.residuals(*theta, ts, ys)
    np.testing.assert_allclose(residual, numbers(rows).ravel(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(module.residuals_flat(theta, ts, ys), residual)
    jacobian = module.jacobian(*theta, ts, ys)
    assert jacobian.shape == (len(rows), len(params))
    np.testing.assert_allclose(jacobian, numbers(sp.Matrix(rows).jacobian(params)), rtol=1e-12, atol=1e-14)
    h = 1e-6
    differences = np.stack([(module.residuals_flat(theta + h * e, ts, ys) - module.residuals_flat(theta - h * e, ts, ys))
                            / (2 * h) for e in np.eye(len(params))], axis=-1)
    np.testing.assert_allclose(module.jacobian_flat(theta, ts, ys), differences, rtol=1e-6, atol=1e-8)
    direction = rng.standard_normal(len(params))
    values_again, jvp = module.residuals_jvp(*theta, ts, ys, *direction)
    np.testing.assert_allclose(values_again, residual)
    np.testing.assert_allclose(jvp, jacobian @ direction, rtol=1e-12, atol=1e-14)
    # the objective: half the sum of the squares of every row, its gradient J^T r, its Hessian exact
    objective = sum(r ** 2 for r in rows) / 2
    value, gradient = module.value_and_grad_flat(theta, ts, ys)
    assert value == pytest.approx(float(objective.xreplace(values)), rel=1e-13)
    np.testing.assert_allclose(gradient, jacobian.T @ residual, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(module.hessian_flat(theta, ts, ys), numbers(sp.hessian(objective, params)),
                               rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(module.hvp_flat(theta, direction, ts, ys),
                               numbers(sp.hessian(objective, params)) @ direction, rtol=1e-11, atol=1e-13)


def test_a_batch_of_series_gives_rows_per_series():
    module = bp.compile(bp.Model("mixed", residuals=MODELS["mixed"], wrt=[a, b, c], inputs=[t, y]),
                        derivatives=("jacobian",)).load()
    ts = np.linspace(0.0, 1.0, 5) + np.arange(3)[:, None]
    ys = np.cos(ts)
    theta = np.array([0.5, 2.0, -0.3])
    residual, jacobian = module.residuals(*theta, ts, ys), module.jacobian(*theta, ts, ys)
    assert residual.shape == (3, 5 + 1 + 4) and jacobian.shape == (3, 10, 3)
    for k in range(3):  # each series is the model of that series alone
        np.testing.assert_allclose(residual[k], module.residuals(*theta, ts[k], ys[k]))
        np.testing.assert_allclose(jacobian[k], module.jacobian(*theta, ts[k], ys[k]))
    np.testing.assert_allclose(module.jacobian_flat(theta, ts, ys), jacobian.reshape(-1, 3))
    np.testing.assert_allclose(module.residuals_flat(theta, ts, ys), residual.ravel())


def test_least_squares_fits_an_indexed_decay_and_a_polynomial():
    from scipy.optimize import least_squares

    module = bp.compile(bp.Model("decay", residuals=MODELS["decay"], wrt=[a, b], inputs=[t, y]),
                        derivatives=("jacobian",)).load()
    ts = np.linspace(0, 4, 40)
    fit = least_squares(module.residuals_flat, [1.0, 1.0], jac=module.jacobian_flat, args=(ts, 3 * np.exp(-0.7 * ts)))
    np.testing.assert_allclose(fit.x, [3.0, 0.7], rtol=1e-10)
    # coefficients c[k] of a polynomial: an indexed parameter, a nested Sum in each residual
    K, k, i = 4, sp.Idx("k"), sp.Idx("i", n)
    coefficients = sp.IndexedBase("c", shape=(K,))
    model = bp.Model("poly", residuals=[y[i] - sp.Sum(coefficients[k] * t[i] ** k, (k, 0, K - 1))],
                     wrt=[coefficients], inputs=[t, y])
    module = bp.compile(model, derivatives=("jacobian",)).load()
    samples = np.linspace(-1, 1, 20)
    jacobian = module.jacobian(np.zeros(K), samples, samples)
    np.testing.assert_allclose(jacobian, -samples[:, None] ** np.arange(K), rtol=1e-14, atol=1e-15)
    fit = least_squares(module.residuals_flat, np.zeros(K), jac=module.jacobian_flat,
                        args=(samples, 1 - 2 * samples + 0.5 * samples ** 3))
    np.testing.assert_allclose(fit.x, [1, -2, 0, 0.5], atol=1e-10)


def test_check_and_the_self_check_know_residuals_over_a_range(tmp_path):
    model = bp.Model("decay", residuals=MODELS["decay"], wrt=[a, b], inputs=[t, y])
    report = bp.check(model)
    assert report.ok and all(row.sympy_error < 1e-12 for row in report.rows)
    compiled = bp.compile(model, derivatives=("jacobian",))
    assert compiled.source == bp.compile(model, derivatives=("jacobian",)).source
    path = tmp_path / "decay.py"
    path.write_text(compiled.source)
    run = subprocess.run([sys.executable, str(path)], check=False, capture_output=True, text=True)
    assert run.returncode == 0 and "ok" in run.stdout


@pytest.mark.parametrize("residual, message", [
    (a * t[sp.Idx("i")] - y[sp.Idx("i")], "free index i without a range"),
    (t[sp.Idx("i", n)] * y[sp.Idx("j", n)], "free indices i, j"),
    ((a * t[j] - y[j], (j, 0)), "the range of a residual is (i, lo, hi)"),
    ((a * t[j] - y[j], (j, 0, b)), "not the index of an enclosing Sum nor a shape symbol"),
    (a * t[j] - y[j], "for a residual for each index, give its range: (residual, (i, 0, n - 1))"),
])
def test_bad_ranges_name_the_fix(residual, message):
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bp.compile(bp.Model("bad", residuals=[residual], wrt=[a, b], inputs=[t, y]), derivatives=("jacobian",))


FUNCTIONS = [sp.sin, sp.exp, lambda v: v, lambda v: 1 + v ** 2, sp.tanh]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(-2, 2), st.integers(0, 2), st.sampled_from(range(len(FUNCTIONS))),
                          st.integers(1, 2)), min_size=1, max_size=3),
       st.integers(4, 6), st.integers(0, 2 ** 16))
def test_random_residuals_over_a_range_with_shifted_indices(terms, size, seed):
    """Terms coeff * f(a*t[i + 2 + shift])**power * (b + y[i + 2 - shift]) over i = 0 .. n - 5:
    the rows, the Jacobian and the Hessian of 1/2 sum r^2 against SymPy's of the written-out rows."""
    expr = sum(coeff * FUNCTIONS[f](a * t[j + 2 + shift]) ** power * (b + y[j + 2 - shift])
               for coeff, shift, f, power in terms) + c
    residuals = [(expr, (j, 0, n - 5)), a * b - 1]
    module = bp.compile(bp.Model("random", residuals=residuals, wrt=[a, b, c], inputs=[t, y]),
                        derivatives=("jacobian", "hessian")).load()
    size += 4
    rng = np.random.default_rng(seed)
    ts, ys, theta = rng.uniform(-1, 1, size), rng.uniform(-1, 1, size), rng.uniform(-1, 1, 3)
    rows, data = written_out(residuals, size)
    values = dict(zip((a, b, c), theta)) | dict(zip(data, [*ts, *ys]))
    numbers = evaluator(values)
    np.testing.assert_allclose(module.residuals(*theta, ts, ys), numbers(rows).ravel(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(module.jacobian(*theta, ts, ys), numbers(sp.Matrix(rows).jacobian([a, b, c])),
                               rtol=1e-11, atol=1e-12)
    objective = sum(r ** 2 for r in rows) / 2
    np.testing.assert_allclose(module.hessian_flat(theta, ts, ys), numbers(sp.hessian(objective, [a, b, c])),
                               rtol=1e-10, atol=1e-11)


def test_jacobians_with_parameters_of_named_size():
    """The Jacobian's columns come from the parameters' shapes at call time: coefficients c of a
    named length K (over a range of residuals), and a 2 x K matrix W (reverse mode)."""
    from scipy.optimize import least_squares

    K, k, i = sp.Symbol("K", integer=True, positive=True), sp.Idx("k"), sp.Idx("i", n)
    coefficients = sp.IndexedBase("c", shape=(K,))
    model = bp.Model("poly", residuals=[y[i] - sp.Sum(coefficients[k] * t[i] ** k, (k, 0, K - 1))],
                     wrt=[coefficients], inputs=[t, y])
    module = bp.compile(model, derivatives=("jacobian",)).load()
    samples = np.linspace(-1, 1, 20)
    for size in (2, 4):  # one module, every K
        np.testing.assert_allclose(module.jacobian(np.zeros(size), samples, samples),
                                   -samples[:, None] ** np.arange(size), rtol=1e-14, atol=1e-15)
    fit = least_squares(module.residuals_flat, np.zeros(4), jac=module.jacobian_flat,
                        args=(samples, 1 - 2 * samples + 0.5 * samples ** 3))
    np.testing.assert_allclose(fit.x, [1, -2, 0, 0.5], atol=1e-10)
    W, x, y0 = sp.MatrixSymbol("W", 2, K), sp.MatrixSymbol("x", K, 1), sp.Symbol("y0")
    model = bp.Model("calibration", residuals=[bp.sum(W[0:1, :] * x) - y0, bp.sum(W[1:2, :] * x) ** 2],
                     wrt=[W], inputs=[x, y0])
    module = bp.compile(model, derivatives=("jacobian",)).load()
    rng = np.random.default_rng(0)
    xs, ys, theta = rng.uniform(-1, 1, (5, 3, 1)), np.ones(5), rng.uniform(-1, 1, 6)
    assert module.jacobian(theta.reshape(2, 3), xs, ys).shape == (5, 2, 6)
    h = 1e-6
    differences = np.stack([(module.residuals_flat(theta + h * e, xs, ys) - module.residuals_flat(theta - h * e, xs, ys))
                            / (2 * h) for e in np.eye(6)], axis=-1)
    np.testing.assert_allclose(module.jacobian_flat(theta, xs, ys), differences, rtol=1e-6, atol=1e-8)


def test_a_residual_that_is_zero_at_every_index_still_has_its_rows():
    """SymPy folds y[j] - y[j] to 0: the range still says how many rows the residual has."""
    x = sp.IndexedBase("x", shape=(n,))
    model = bp.Model("zero", residuals=[(y[j] - y[j], (j, 0, n - 2)), (x[j] - y[j], (j, 0, n - 1))], wrt=[x],
                     inputs=[y])
    module = bp.compile(model, derivatives=("jacobian", "hessian")).load()
    xs, ys = np.array([1.0, 2.0, 3.0, 4.0]), np.zeros(4)
    np.testing.assert_array_equal(module.residuals(xs, ys), [0, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(module.jacobian_flat(xs, ys), np.vstack([np.zeros((3, 4)), np.eye(4)]))
    np.testing.assert_array_equal(module.hessian(xs, ys), np.eye(4))
