"""Indexed models (IndexedBase, Idx, Sum) and matrix slices.

Each gradient is checked against sympy.diff of the Sum written out at a small n (`.doit()` with
concrete n, or the same model built in a Python loop over scalar symbols), against central finite
differences, and against the scalarised model compiled by backpropc itself.
"""

from __future__ import annotations

import itertools
import re
import warnings

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backpropc as bp
from backpropc.check import _written_out
from backpropc.errors import ModelError
from backpropc.explain import explain

n = sp.Symbol("n", integer=True, positive=True)
m = sp.Symbol("m", integer=True, positive=True)
x = sp.IndexedBase("x", shape=(n,))
t = sp.IndexedBase("t", shape=(n,))
y = sp.IndexedBase("y", shape=(n,))
X = sp.IndexedBase("X", shape=(n, 3))
A = sp.IndexedBase("A", shape=(n, m))
z = sp.IndexedBase("z", shape=(m,))
a, b, w = sp.symbols("a b w")
i, j = sp.symbols("i j", integer=True)
k = sp.Idx("k")


# ---- oracles --------------------------------------------------------------------------------------
def written_out(expr, sizes: dict):
    """The indexed expression at concrete sizes with every Sum carried out (`.doit()`) and each
    entry x[3] a scalar symbol x_3: (expression, {IndexedBase: array of entry symbols})."""
    expr = sp.sympify(expr).xreplace(sizes).doit()
    return expr.replace(lambda e: isinstance(e, sp.Indexed),
                        lambda e: entry_symbol(e.base, [int(v) for v in e.indices]))


def entry_symbol(base, index) -> sp.Symbol:
    return sp.Symbol(f"{base}_{'_'.join(map(str, index))}")


def exact_gradient(expr, wrt, values: dict, sizes: dict):
    """sympy.diff of the written-out expression at `values` ({name: array or number}), each
    IndexedBase's gradient as an array of its shape."""
    loss = written_out(expr, sizes)
    subs = {}
    for name, v in values.items():
        if np.ndim(v) == 0:
            subs[sp.Symbol(name)] = float(v)
        else:
            for index in itertools.product(*map(range, np.shape(v))):
                subs[entry_symbol(name, index)] = float(np.asarray(v)[index])
    value = float(loss.xreplace(subs))
    grads = []
    for target in wrt:
        if isinstance(target, sp.IndexedBase):
            shape = np.shape(values[str(target)])
            g = np.zeros(shape)
            for index in itertools.product(*map(range, shape)):
                g[index] = float(sp.diff(loss, entry_symbol(target, index)).xreplace(subs))
            grads.append(g)
        else:
            grads.append(float(sp.diff(loss, target).xreplace(subs)))
    return value, grads


def finite_differences(f, values: dict, name: str, rng, h=1e-6):
    """Central finite difference of f along a random direction of argument `name`."""
    v = np.asarray(values[name], dtype=float)
    direction = rng.standard_normal(v.shape) if v.ndim else 1.0
    up = f(**{**values, name: v + h * direction})[0]
    down = f(**{**values, name: v - h * direction})[0]
    return (up - down) / (2 * h), direction


def check_model(expr, wrt, shapes: dict, sizes: dict, seed=0, low=-1.0, high=1.0):
    """Compile, then compare value and gradient with sympy.diff and finite differences."""
    module = bp.compile(expr, wrt=wrt).load()
    rng = np.random.default_rng(seed)
    values = {name: rng.uniform(low, high, shape) if shape else float(rng.uniform(low, high))
              for name, shape in shapes.items()}
    value, grads = module.value_and_grad(**values)
    exact_value, exact = exact_gradient(expr, wrt, values, sizes)
    np.testing.assert_allclose(value, exact_value, rtol=1e-10)
    for target, g, e in zip(wrt, grads, exact):
        assert np.shape(g) == np.shape(e)
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9)
        estimate, direction = finite_differences(module.value_and_grad, values, str(target), rng)
        np.testing.assert_allclose(np.sum(g * direction), estimate, rtol=1e-5, atol=1e-6)
    return module


# ---- indexed models ---------------------------------------------------------------------------------
ROSENBROCK = sp.Sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2, (i, 0, n - 2))


def test_extended_rosenbrock_matches_sympy_at_several_n():
    for size in (2, 5, 8):
        check_model(ROSENBROCK, [x], {"x": (size,)}, {n: size}, seed=size)


def test_even_powers_of_an_array_share_their_square():
    """x**4 and x**6 over a range are squares of x**2, which the derivative 4*x**3 = 4*x*x**2
    reads too; the values and gradients are those of sympy.diff."""
    expr = sp.Sum((x[i] - a) ** 4 + x[i + 1] ** 6 / 3 - 2 * t[i] * x[i] ** 2, (i, 0, n - 2))
    module = check_model(expr, [x, a], {"x": (6,), "a": (), "t": (6,)}, {n: 6})
    source = bp.compile(expr, wrt=[x, a]).source
    squares = set(re.findall(r"^ +(c\d+) = \S+\*\*2$", source, flags=re.MULTILINE))
    assert squares & set(re.findall(r"_lane_dot\((c\d+), \1\)", source))  # sum of (x - a)**4: one dot


def test_one_module_serves_every_n():
    module = bp.compile(ROSENBROCK, wrt=[x]).load()
    for size in (3, 50, 1000):
        v = np.random.default_rng(size).uniform(-1, 1, size)
        value, (g,) = module.value_and_grad(v)
        hand = np.sum(100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2)
        np.testing.assert_allclose(value, hand, rtol=1e-12)
        assert g.shape == (size,)


def test_idx_and_symbolic_index_give_the_same_module():
    with_idx = bp.compile(sp.Sum(sp.sin(x[k + 1]) * x[k], (k, 0, n - 2)), wrt=[x]).load()
    with_symbol = bp.compile(sp.Sum(sp.sin(x[i + 1]) * x[i], (i, 0, n - 2)), wrt=[x]).load()
    v = np.linspace(-1, 1, 7)
    np.testing.assert_allclose(with_idx.grad(v)[0], with_symbol.grad(v)[0], rtol=1e-14)


def test_per_index_data_beside_scalar_parameters():
    loss = sp.Sum((a * t[i] + b - y[i]) ** 2, (i, 0, n - 1))
    check_model(loss, [a, b], {"a": (), "b": (), "t": (6,), "y": (6,)}, {n: 6})


def test_strided_shifted_and_reversed_indices():
    loss = sp.Sum(x[2 * i + 1] * sp.exp(x[2 * i]) + x[7 - i] * x[i] ** 2, (i, 0, 3))
    check_model(loss, [x], {"x": (8,)}, {n: 8})


def test_two_dimensional_arrays_columns_and_diagonal():
    loss = sp.Sum(X[i, 0] * X[i, 2] ** 2 - sp.cos(X[i, 1]), (i, 1, n - 1)) + sp.Sum(A[i, i] ** 3, (i, 0, 2))
    module = check_model(loss, [X, A], {"X": (4, 3), "A": (4, 5)}, {n: 4, m: 5})
    assert module.SHAPES == {"X": ("n", 3), "A": ("n", "m")}


def test_rectangular_nested_sum_of_a_matrix_vector_product():
    loss = sp.Sum(sp.Sum(A[i, j] * z[j], (j, 0, m - 1)) ** 2 + w * i, (i, 0, n - 1))
    check_model(loss, [z, w], {"z": (4,), "w": (), "A": (3, 4)}, {n: 3, m: 4})


def test_triangular_double_sum_lennard_jones():
    r2 = sum((X[i, d] - X[j, d]) ** 2 for d in range(3))
    energy = sp.Sum(4 * (r2 ** -6 - r2 ** -3), (j, i + 1, n - 1), (i, 0, n - 1))
    module = bp.compile(energy, wrt=[X]).load()
    rng = np.random.default_rng(3)
    atoms = rng.uniform(-2, 2, (5, 3))
    value, (g,) = module.value_and_grad(atoms)
    # the same energy built in a Python loop over scalar symbols, differentiated by sympy.diff
    P = sp.Matrix(5, 3, lambda r, c: entry_symbol("X", (r, c)))
    scalar = sum(4 * (q ** -6 - q ** -3) for p1, p2 in itertools.combinations(range(5), 2)
                 for q in [sum((P[p1, d] - P[p2, d]) ** 2 for d in range(3))])
    subs = {P[r, c]: atoms[r, c] for r in range(5) for c in range(3)}
    np.testing.assert_allclose(value, float(scalar.xreplace(subs)), rtol=1e-10)
    exact = np.array([[float(sp.diff(scalar, P[r, c]).xreplace(subs)) for c in range(3)] for r in range(5)])
    np.testing.assert_allclose(g, exact, rtol=1e-9, atol=1e-9)


def test_nested_sum_with_outer_terms_and_a_bound_from_the_outer_index():
    inner = sp.Sum(x[j] * x[i], (j, 0, i))
    loss = sp.Sum(sp.sin(x[i]) + inner ** 2, (i, 0, n - 1))
    check_model(loss, [x], {"x": (5,)}, {n: 5})


def test_summand_without_the_index_counts_the_range():
    check_model(sp.Sum(w ** 2, (i, 0, n - 1)) + sp.Sum(x[i], (i, 0, n - 1)), [w, x],
                {"w": (), "x": (4,)}, {n: 4})


def test_piecewise_inside_a_summand():
    loss = sp.Sum(sp.Piecewise((x[i] ** 2, x[i + 1] > 0), (sp.sin(x[i]), True)), (i, 0, n - 2))
    check_model(loss, [x], {"x": (6,)}, {n: 6})


def test_steps_and_a_loss_over_indexed_sums():
    s = sp.Symbol("s")
    model = bp.Model("stepped", steps=[(s, sp.Sum(x[i] ** 2, (i, 0, n - 1)))], loss=sp.log(1 + s), wrt=[x])
    module = bp.compile(model).load()
    v = np.array([0.5, -1.0, 2.0])
    _, (g,) = module.value_and_grad(v)
    np.testing.assert_allclose(g, 2 * v / (1 + np.sum(v ** 2)), rtol=1e-12)


def test_scalarised_model_agrees_with_the_indexed_one():
    size = 6
    xs = sp.symbols(f"x0:{size}")
    scalar = sum(100 * (xs[q + 1] - xs[q] ** 2) ** 2 + (1 - xs[q]) ** 2 for q in range(size - 1))
    scalar_module = bp.compile(scalar, wrt=list(xs)).load()
    indexed_module = bp.compile(ROSENBROCK, wrt=[x]).load()
    v = np.random.default_rng(1).uniform(-1, 1, size)
    value, grads = scalar_module.value_and_grad(*v)
    indexed_value, (g,) = indexed_module.value_and_grad(v)
    np.testing.assert_allclose(indexed_value, value, rtol=1e-12)
    np.testing.assert_allclose(g, np.array(grads), rtol=1e-12)


def test_check_reports_indexed_models_against_sympy():
    report = bp.check(bp.compile(ROSENBROCK, wrt=[x]))
    assert report.ok and report.rows[0].sympy_error is not None


# ---- source independent of n ------------------------------------------------------------------------
def test_generated_source_does_not_grow_with_n():
    sources = []
    for size in (10, 1000, 10 ** 6):
        v = sp.IndexedBase("x", shape=(size,))
        loss = sp.Sum(100 * (v[i + 1] - v[i] ** 2) ** 2 + (1 - v[i]) ** 2, (i, 0, size - 2))
        sources.append(bp.compile(loss, wrt=[v]).source)
    lines = [len(s.splitlines()) for s in sources]
    assert lines[0] == lines[1] == lines[2]
    assert sources[1].replace("1000", "N").replace("999", "N-1").replace("998", "N-2") == \
        sources[2].replace("1000000", "N").replace("999999", "N-1").replace("999998", "N-2")


# ---- random summands -----------------------------------------------------------------------------
def _summand(draw_terms):
    expr = sp.S.Zero
    for coeff, shift, fn, power in draw_terms:
        expr += coeff * fn(x[i + shift]) ** power * x[i + (shift + 1) % 3]
    return expr


FUNCTIONS = [sp.sin, sp.exp, lambda v: v, lambda v: 1 + v ** 2, sp.tanh]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(0, 2), st.sampled_from(range(len(FUNCTIONS))),
                          st.integers(1, 3)), min_size=1, max_size=4),
       st.integers(4, 7), st.integers(0, 2 ** 16))
def test_random_summands_with_shifted_indices(terms, size, seed):
    summand = _summand([(c, s, FUNCTIONS[f], p) for c, s, f, p in terms])
    loss = sp.Sum(summand, (i, 0, n - 3))
    if loss.function == 0:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_model(loss, [x], {"x": (size,)}, {n: size}, seed=seed)


# ---- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss, wrt, message", [
    (sp.Sum(x[i ** 2], (i, 0, n - 1)), [x], "not affine"),
    (sp.Sum(x[i] * t[2 * i / 3], (i, 0, 3)), [x], "not affine"),
    (sp.Sum(x[i] ** 2, (i, 0, w)), [x, w], "depends on w"),
    (sp.Sum(x[a + i], (i, 0, n - 1)), [x], "depends on a"),
    (sp.Sum(x[sp.IndexedBase("p", shape=(n,))[i]], (i, 0, n - 1)), [x], "depends on data"),
    (sp.Sum(sp.IndexedBase("u")[i], (i, 0, 3)), [a], "has no shape"),
    (sp.Sum(x[i], (i, 0, n - 1)) + x[j], [x], "depends on j"),
])
def test_refused_models_name_the_problem(loss, wrt, message):
    with pytest.raises(ModelError, match=message):
        bp.compile(loss, wrt=wrt)


def test_wrt_indexed_base_needs_a_shape():
    with pytest.raises(ModelError, match="without a shape"):
        bp.compile(sp.Sum(sp.IndexedBase("u")[i], (i, 0, 3)), wrt=[sp.IndexedBase("u")])


def test_index_out_of_range_at_call_time_names_the_array_and_bounds():
    module = bp.compile(sp.Sum(x[i + 1] ** 2, (i, 0, 9)), wrt=[x]).load()
    with pytest.raises(IndexError, match=r"x\[\.\.\.\] reaches index 10 .* x has 10 entries"):
        module.value_and_grad(np.ones(10))
    nested = bp.compile(sp.Sum(x[i] * x[j + 1], (j, i, n - 1), (i, 0, n - 1)), wrt=[x]).load()
    with pytest.raises(IndexError, match="reaches index 4 .* x has 4 entries"):
        nested.value_and_grad(np.ones(4))


def test_batched_parameters_and_wrong_shapes_are_refused():
    module = bp.compile(sp.Sum((a * t[i] - y[i]) ** 2, (i, 0, n - 1)), wrt=[a]).load()
    with pytest.raises(ValueError, match="must be one number"):
        module.value_and_grad(np.ones(3), np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        module.value_and_grad(1.0, np.ones(4), np.ones(5))
    with pytest.raises(ValueError, match=r"t must have shape \(n,\), or \(\.\.\., n,\) for a batch; got \(\)"):
        module.value_and_grad(1.0, 2.0, np.ones(4))
    # data may lead with a batch (tests/test_indexed_batches.py): one loss per example
    assert module.forward(1.0, np.ones((2, 4)), np.ones((2, 4))).shape == (2,)


# ---- matrix slices ----------------------------------------------------------------------------------
M = sp.MatrixSymbol("M", 3, 4)
v4 = sp.MatrixSymbol("v", 4, 1)


def explicit_matrix_gradient(expr, wrt_value: np.ndarray, data: dict):
    """sympy.diff of the expression on explicit matrices (entries m_r_c), at wrt_value."""
    entries = sp.Matrix(3, 4, lambda r, c: sp.Symbol(f"m_{r}_{c}"))
    replace = {M: sp.ImmutableMatrix(entries), **{s: sp.ImmutableMatrix(value) for s, value in data.items()}}
    scalar = _written_out(expr.xreplace(replace), {})  # every matrix operation carried out
    scalar = scalar[0, 0] if isinstance(scalar, sp.MatrixBase) else scalar
    subs = {entries[r, c]: wrt_value[r, c] for r in range(3) for c in range(4)}
    return np.array([[float(sp.diff(scalar, entries[r, c]).xreplace(subs)) for c in range(4)]
                     for r in range(3)])


@pytest.mark.parametrize("expr", [
    bp.sum(sp.HadamardPower(M[1:, :], 2)),
    bp.sum(M[:, 0].applyfunc(sp.sin)),
    sp.Trace(M[:2, :2] * M[:2, :2]),
    bp.sum(sp.HadamardPower(M[:, 1:] * v4[1:, :], 3)),
    (M[0, :] * v4)[0, 0] + bp.sum(sp.HadamardProduct(M[1:, ::2], M[1:, :2])),
])
def test_matrix_slice_gradients_against_explicit_matrices(expr):
    rng = np.random.default_rng(5)
    value, data = rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, (4, 1))
    module = bp.compile(expr, wrt=[M], inputs=[v4]).load()
    _, (g,) = module.value_and_grad(value, data)
    np.testing.assert_allclose(g, explicit_matrix_gradient(expr, value, {v4: data}), rtol=1e-10, atol=1e-12)


def test_matrix_slice_with_symbolic_dimensions_and_a_batch():
    B = sp.MatrixSymbol("B", n, n)
    expr = bp.sum(sp.HadamardPower(B[1:, :-1], 2)) + sp.Trace(B[:, 0] * B[0, :])
    report = bp.check(bp.compile(expr, wrt=[B]))
    assert report.ok
    module = bp.compile(expr * a, wrt=[a], inputs=[B]).load()
    batch = np.random.default_rng(0).uniform(-1, 1, (6, 5, 5))
    value, (ga,) = module.value_and_grad(1.0, batch)
    manual = np.sum(batch[:, 1:, :-1] ** 2) + np.sum(batch[:, :, 0] * batch[:, 0, :])
    np.testing.assert_allclose([value, ga], [manual, manual], rtol=1e-12)


# ---- explain, graph, op counts ------------------------------------------------------------------------
def test_explain_shows_each_sum_as_array_statements_whatever_n():
    texts = []
    for size in (10, 10 ** 5):
        v = sp.IndexedBase("x", shape=(size,))
        compiled = bp.compile(sp.Sum(100 * (v[i + 1] - v[i] ** 2) ** 2 + (1 - v[i]) ** 2, (i, 0, size - 2)),
                              wrt=[v])
        texts.append(explain(compiled))
    assert len(texts[0].splitlines()) == len(texts[1].splitlines())
    assert "x_bar = (c2_bar) at x[1:100000] + " in texts[1] and "x[99998]" not in texts[1]


def test_op_counts_keep_the_three_forward_passes_certificate():
    r2 = sum((X[i, d] - X[j, d]) ** 2 for d in range(3))
    for loss, wrt in ((ROSENBROCK, [x]), (sp.Sum(4 * (r2 ** -6 - r2 ** -3), (j, i + 1, n - 1), (i, 0, n - 1)), [X]),
                      (sp.Sum((a * t[i] + b - y[i]) ** 2, (i, 0, n - 1)), [a, b])):
        ops = bp.compile(loss, wrt=wrt).ops
        assert 0 < ops["forward"] and ops["value_and_grad"] <= 3 * ops["forward"]


def test_hessian_vector_products_of_an_indexed_model():
    compiled = bp.compile(ROSENBROCK, wrt=[x], derivatives="hvp")
    module = compiled.load()
    v, direction = np.random.default_rng(2).uniform(-1, 1, (2, 6))
    _, _, (hv,) = module.hvp(v, direction)
    xs = sp.symbols("x0:6")
    scalar = sum(100 * (xs[q + 1] - xs[q] ** 2) ** 2 + (1 - xs[q]) ** 2 for q in range(5))
    hessian = np.array(sp.hessian(scalar, xs).xreplace(dict(zip(xs, v))), dtype=float)
    np.testing.assert_allclose(hv, hessian @ direction, rtol=1e-10)


def test_flat_forms_read_named_sizes_off_the_data_or_the_vector():
    """SciPy hands over one flat vector whatever n is: a named size comes from the data that
    have it, and the one left from the vector's length."""
    module = bp.compile(ROSENBROCK, wrt=[x], derivatives="hvp").load()
    rng = np.random.default_rng(4)
    for size in (3, 6, 11):  # one module, every n
        theta, direction = rng.uniform(-1, 1, (2, size))
        value, (gradient,) = module.value_and_grad(theta)
        flat_value, flat_gradient = module.value_and_grad_flat(theta)
        assert flat_value == value and np.array_equal(flat_gradient, gradient)
        np.testing.assert_array_equal(module.hvp_flat(theta, direction), module.hvp(theta, direction)[2][0])
        np.testing.assert_array_equal(module.unpack(theta)[0], theta)
    from scipy.optimize import minimize
    fit = minimize(module.value_and_grad_flat, np.full(20, -1.2), jac=True, hessp=module.hvp_flat,
                   method="trust-krylov")
    assert fit.success and np.abs(fit.x - 1).max() < 1e-6
    # W of shape (n, m) beside data z of shape (m,): m from z, n from theta's length
    W, z = sp.IndexedBase("W", shape=(n, m)), sp.IndexedBase("z", shape=(m,))
    two = bp.compile(sp.Sum(sp.Sum(W[i, j] ** 2 * z[j], (j, 0, m - 1)), (i, 0, n - 1)), wrt=[W]).load()
    zs = rng.uniform(0, 1, 3)
    weights = rng.uniform(-1, 1, (4, 3))
    value, gradient = two.value_and_grad_flat(weights.ravel(), zs)
    assert value == pytest.approx(np.sum(weights ** 2 * zs))
    np.testing.assert_allclose(gradient, (2 * weights * zs).ravel())
    np.testing.assert_array_equal(two.unpack(weights.ravel(), zs)[0], weights)  # m from z, as the flat forms
    with pytest.raises(TypeError, match="missing: z"):
        two.unpack(weights.ravel())  # theta's length alone cannot give both sizes
    with pytest.raises(ValueError, match=r"theta \(shape \(13,\)\) does not give the size of n"):
        two.value_and_grad_flat(np.ones(13), zs)  # 13 is no multiple of m = 3


def test_a_sum_of_products_over_a_range_is_summed_by_dot_products():
    """Sum(p*q + r**2 + s*x[i] + ...) adds a dot product per product of two values over the range
    (named squares with themselves) instead of forming each product and summing it; a term
    without two such factors stays in one .sum(-1), and a per-example number beside the range
    keeps its trailing axis. Checked against sympy.diff, finite differences, float32 and a
    batch of data with a per-example scale."""
    s = sp.Symbol("s")
    loss = sp.Sum(3 * (x[i + 1] - x[i] ** 2) ** 2 - (a - x[i]) ** 2 * t[i] + sp.cos(x[i]) + b * x[i] * t[i],
                  (i, 0, n - 2))
    compiled = bp.compile(loss, wrt=[x, a, b])
    body = compiled.source.split("def value_and_grad(")[1].split("\ndef ")[0]
    assert body.count("_lane_dot(") >= 3 and ".sum(-1)" in body  # cos(x) stays in the plain sum
    check_model(loss, [x, a, b], {"x": (7,), "a": (), "b": (), "t": (7,)}, {n: 7}, seed=4)
    module = compiled.load()
    rng = np.random.default_rng(5)
    xs, ts = rng.uniform(-1, 1, 7), rng.uniform(-1, 1, 7)
    single = module.value_and_grad(xs.astype(np.float32), np.float32(0.3), np.float32(-0.2), ts.astype(np.float32))
    assert np.asarray(single[0]).dtype == np.float32 and single[1][0].dtype == np.float32
    np.testing.assert_allclose(single[0], module.value_and_grad(xs, 0.3, -0.2, ts)[0], rtol=1e-5)
    scaled = bp.compile(s * loss, wrt=[x, a, b]).load()  # s: data, one per example
    batch_t, batch_s = rng.uniform(-1, 1, (4, 7)), rng.uniform(0.5, 2, 4)
    value, grads = scaled.value_and_grad(xs, 0.3, -0.2, batch_s, batch_t)
    rows = [module.value_and_grad(xs, 0.3, -0.2, batch_t[e]) for e in range(4)]
    assert value == pytest.approx(sum(batch_s[e] * rows[e][0] for e in range(4)), rel=1e-12)
    np.testing.assert_allclose(grads[0], sum(batch_s[e] * rows[e][1][0] for e in range(4)), rtol=1e-12)


@pytest.mark.parametrize("loss, wrt, data", [
    (sp.Sum(a ** 2 + x[i], (i, 0, n - 1)), [x, a], []),
    (sp.Sum(x[0] + x[i] * t[i], (i, 0, n - 1)), [x], [t]),
    (sp.Sum(sp.Sum(sp.exp(a) + x[j], (j, 0, i)) * x[i], (i, 0, n - 1)), [x, a], []),
    (sp.Sum(sp.sin(a) * w + t[i] * x[i], (i, 1, n - 1)) ** 2, [x, a, w], [t]),
])
def test_a_term_without_the_index_gets_its_signal_once_per_entry(loss, wrt, data):
    """In Sum(a**2 + x[i]) the term a**2 is added n times: its signal, a number the same at every
    entry, counts n times (and its tangent too, for the Hessian-vector product)."""
    shapes = {str(s): (5,) if isinstance(s, sp.IndexedBase) else () for s in wrt + data}
    check_model(loss, wrt, shapes, {n: 5})
    written = written_out(loss, {n: 5})
    entries = [e for s in wrt for e in ([entry_symbol(s, (k,)) for k in range(5)] if s is x else [s])]
    rng = np.random.default_rng(1)
    point = {name: rng.uniform(-1, 1, shape) if shape else float(rng.uniform(-1, 1)) for name, shape in shapes.items()}
    values = {s: point[str(s)] for s in wrt + data if not isinstance(s, sp.IndexedBase)}
    for s in wrt + data:
        if isinstance(s, sp.IndexedBase):
            values.update({entry_symbol(s, (k,)): point[str(s)][k] for k in range(5)})
    exact = np.array(sp.hessian(written, entries).xreplace(values), dtype=float)
    module = bp.compile(loss, wrt=wrt, derivatives=("grad", "hvp")).load()
    direction = rng.normal(size=len(entries))
    split = np.split(direction, np.cumsum([5 if s is x else 1 for s in wrt])[:-1])
    directions = [d if s is x else float(d[0]) for s, d in zip(wrt, split)]
    _, _, products = module.hvp(*[point[str(s)] for s in wrt + data], *directions)
    np.testing.assert_allclose(np.concatenate([np.ravel(p) for p in products]), exact @ direction,
                               rtol=1e-10, atol=1e-12)


def test_fuzz_found_indexed_models_compute_what_they_write():
    """Models a fuzzing campaign found wrong or refused, each against sympy.diff of the model
    written out and central finite differences (check_model):
    - a Piecewise over the outer index around an inner Sum (its guard was not repeated to the
      inner tuples, nor a number it guards inside them: a broadcast error);
    - a bound using the shape symbol of an array that only a later term reads (refused,
      depending on SymPy's order of terms);
    - the square of a Sum with a fixed entry beside per-index data, with the Hessian-vector
      product (an AttributeError while compiling)."""
    check_model(sp.Sum(sp.Piecewise((sp.Sum(x[j] ** 2, (j, 0, i)), i > 0), (1, True)), (i, 0, n - 1)),
                [x], {"x": (4,)}, {n: 4}, low=0.1, high=0.9)
    for seed in range(3):  # a guarded number inside the inner Sum: repeated to its tuples
        check_model(sp.Sum(sp.Piecewise((sp.Sum(x[j] / (x[0] ** 2 + 1), (j, 0, i)), x[i] > 0), (1, True)),
                           (i, 0, n - 1)), [x], {"x": (4,)}, {n: 4}, seed=seed)
    check_model(sp.Sum(b ** 2, (i, 0, n - 1)) + sp.Sum(t[i] * b, (i, 0, n - 1)), [b], {"b": (), "t": (4,)}, {n: 4})
    y4, x4 = sp.IndexedBase("y", shape=(4,)), sp.IndexedBase("x", shape=(4,))
    loss = sp.Sum(y4[i] + x4[0] ** 2, (i, 0, 3)) ** 2
    module = bp.compile(loss, wrt=[x4], derivatives=("grad", "hvp")).load()
    rng = np.random.default_rng(2)
    xv, yv, direction = rng.uniform(-1, 1, 4), rng.uniform(-1, 1, 4), rng.normal(size=4)
    entries = [entry_symbol(x4, (k,)) for k in range(4)]
    written = written_out(loss, {})
    values = {**dict(zip(entries, xv)), **{entry_symbol(y4, (k,)): yv[k] for k in range(4)}}
    exact = np.array(sp.hessian(written, entries).xreplace(values), dtype=float) @ direction
    np.testing.assert_allclose(module.hvp(xv, yv, direction)[2][0], exact, rtol=1e-12, atol=1e-12)


def test_a_flat_gradient_of_fixed_entries_is_one_vector():
    """A model of fixed entries only (no Sum, or an empty one) reads them as floats; its flat
    gradient is still the 1-D vector of every entry's."""
    x3, y2 = sp.IndexedBase("x", shape=(3,)), sp.IndexedBase("y", shape=(2,))
    theta = np.array([0.1, 0.2, 0.3])
    for loss in (x3[1] * x3[2], x3[2] + sp.Sum(x3[i], (i, 1, 0))):
        module = bp.compile(loss, wrt=[x3]).load()
        value, flat = module.value_and_grad_flat(theta)
        assert flat.shape == (3,)
        np.testing.assert_allclose(flat, np.ravel(module.value_and_grad(theta)[1][0]))
    module = bp.compile(x3[1] * y2[0], wrt=[x3, y2]).load()
    value, flat = module.value_and_grad_flat(np.array([0.1, 0.2, 0.3, 2.0, 3.0]))
    assert value == pytest.approx(0.4)
    np.testing.assert_allclose(flat, [0, 2.0, 0, 0.2, 0])


def test_a_batch_of_numbers_times_a_nested_sum_sums_each_example():
    """s*Sum(x[i], (j, 0, i), (i, 0, n - 1)) with a batch of s: the signal of the lifted x[i] is
    each example's number at every tuple; it was placed as if the batch were the tuples (mixed
    up when their counts agreed, refused otherwise)."""
    s = sp.Symbol("s")
    module = bp.compile(s * sp.Sum(x[i], (j, 0, i), (i, 0, n - 1)), wrt=[x]).load()
    xv = np.arange(1.0, 5.0)
    for batch in (np.array([1.0, 2.0, 3.0]), np.arange(1.0, 11.0)):  # 10 = the number of tuples
        value, (g,) = module.value_and_grad(xv, batch)
        one_by_one = sum(module.value_and_grad(xv, float(v))[1][0] for v in batch)
        np.testing.assert_allclose(g, one_by_one, rtol=1e-12)
        np.testing.assert_allclose(g, batch.sum() * np.array([1.0, 2.0, 3.0, 4.0]), rtol=1e-12)
        assert value == pytest.approx(sum(v * np.dot(xv, [1, 2, 3, 4]) for v in batch))


def test_a_triangular_sum_reads_only_what_its_tuples_read():
    """At i = n - 1 the range j = i + 1 .. n - 1 is empty, so x[i + 1] = x[n] is never read: it
    was read (and refused) over the whole outer range. An entry inside x over the whole outer
    range (X[i, 0] in a Lennard-Jones sum) is still read once per outer value and repeated."""
    loss = sp.Sum(x[i + 1] * x[j], (j, i + 1, n - 1), (i, 0, n - 1))
    module = bp.compile(loss, wrt=[x]).load()
    entries = sp.symbols("x0:5")
    written = sum(entries[p + 1] * entries[q] for p in range(5) for q in range(p + 1, 5))
    v = np.random.default_rng(4).uniform(-1, 1, 5)
    value, (g,) = module.value_and_grad(v)
    point = dict(zip(entries, v))
    assert value == pytest.approx(float(written.subs(point)), rel=1e-12)
    np.testing.assert_allclose(g, [float(sp.diff(written, e).subs(point)) for e in entries], rtol=1e-12, atol=1e-12)
    estimate, direction = finite_differences(module.value_and_grad, {"x": v}, "x", np.random.default_rng(5))
    assert np.sum(g * direction) == pytest.approx(estimate, rel=1e-6)
    with pytest.raises(IndexError, match="x"):  # a tuple that does read past the end still says so
        bp.compile(sp.Sum(x[i + 2] * x[j], (j, i + 1, n - 1), (i, 0, n - 1)), wrt=[x]).load().value_and_grad(np.ones(4))
    assert module.value_and_grad(np.arange(1.0, 5.0))[0] == pytest.approx(55.0)
    r2 = sum((X[i, d] - X[j, d]) ** 2 for d in range(3))
    source = bp.compile(sp.Sum(r2 ** -3, (j, i + 1, n - 1), (i, 0, n - 1)), wrt=[X]).source
    assert "_lift(" in source


def test_re_im_and_conjugate_of_a_complex_indexed_base_fold_away():
    """An IndexedBase without real=True makes SymPy write Abs(x)**2, re and conjugate; every value
    is real, so re and conjugate are the identity and im is zero, checked against sympy.diff of the
    real form and finite differences."""
    n = sp.Symbol("n", integer=True, positive=True)
    x, k, w = sp.IndexedBase("x", shape=(n,)), sp.Symbol("k", integer=True), sp.Symbol("w", real=True)
    loss = sp.Sum(sp.Abs(x[k]) ** 2 * w + sp.re(x[k] * w) + sp.im(x[k]) * w + sp.conjugate(w) * sp.exp(x[k]), (k, 0, n - 1))
    compiled = bp.compile(bp.Model("complexish", loss=loss, wrt=[x, w]))
    assert "np.conj" not in compiled.source and "np.real(" not in compiled.source
    module = compiled.load()
    X, W = np.array([0.5, -1.0, 2.0]), 0.7
    value, (gx, gw) = module.value_and_grad(X, W)
    t, v = sp.symbols("t v", real=True)
    real = t ** 2 * v + t * v + v * sp.exp(t)
    assert value == pytest.approx(sum(float(real.subs({t: a, v: W})) for a in X), rel=1e-14)
    assert gx == pytest.approx([float(sp.diff(real, t).subs({t: a, v: W})) for a in X], rel=1e-14)
    assert gw == pytest.approx(sum(float(sp.diff(real, v).subs({t: a, v: W})) for a in X), rel=1e-14)
    h = 1e-6
    assert gw == pytest.approx((module.value_and_grad(X, W + h)[0] - module.value_and_grad(X, W - h)[0]) / (2 * h), rel=1e-7)


@pytest.mark.parametrize("outer", [5, 13, 120])
def test_the_inner_sums_of_a_triangular_range_whatever_its_size(outer):
    """_segment_sum adds each outer tuple's inner values: by one bincount for a few tuples, by
    runs for many, and with a batch; an outer tuple with no inner ones (the last row of a
    triangle) gets 0."""
    from backpropc.runtime import namespace

    helpers = namespace(["_nest", "_segment_sum"])
    i = np.arange(outer)
    parent, _ = helpers["_nest"](i + 1, outer, i)
    rng = np.random.default_rng(outer)
    for w in (rng.standard_normal(parent.size), rng.standard_normal((3, parent.size))):
        expected = np.zeros(w.shape[:-1] + (outer,))
        for k, p in enumerate(parent):
            expected[..., p] += w[..., k]
        got = helpers["_segment_sum"](w, parent, np.zeros(outer))
        assert got.shape == expected.shape and np.allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_the_tuples_of_a_nested_range_are_listed_once_per_size():
    """_nest keeps the last sizes' tuples, read-only, and lists them anew for other sizes: a
    triangular model called at 5, 5, 7 and 5 entries gets each call's own pairs."""
    from backpropc.runtime import namespace

    nest = namespace(["_nest"])["_nest"]
    pairs = {}
    for n in (5, 5, 7, 5):
        i = np.arange(n)
        tuples = nest(i + 1, n, i)
        assert not tuples.flags.writeable
        assert [tuple(t) for t in tuples.T] == [(a, b) for a in range(n) for b in range(a + 1, n)]
        pairs.setdefault(n, []).append(tuples)
    assert pairs[5][0] is pairs[5][1] and pairs[5][2] is not pairs[5][0]  # 7 came in between
    band = nest(np.maximum(np.arange(6) - 1, 0), np.minimum(np.arange(6) + 2, 6), np.arange(6))
    assert [tuple(t) for t in band.T] == [(a, b) for a in range(6) for b in range(max(a - 1, 0), min(a + 2, 6))]
    n = sp.Symbol("n", integer=True, positive=True)
    i, j = sp.symbols("i j", integer=True)
    x = sp.IndexedBase("x", shape=(n,))
    module = bp.compile(sp.Sum(sp.Sum((x[i] - x[j]) ** 2, (j, i + 1, n - 1)), (i, 0, n - 1)), wrt=[x]).load()
    for size in (4, 6, 4):
        v = np.arange(size, dtype=float) ** 1.5
        value, (grad,) = module.value_and_grad(v)
        assert np.isclose(value, sum((v[a] - v[b]) ** 2 for a in range(size) for b in range(a + 1, size)))
        assert np.allclose(grad, 2 * (size * v - v.sum()))  # each entry against every other one


def test_an_arrays_integer_powers_share_one_power_and_divide_by_the_base():
    """Over a range, x**-6 is (x**-3)**2, so x**-6 - x**-3 (a Lennard-Jones energy) computes one
    cube; the derivative of x**-k is -k*x**-k/x, one division sharing the power. Exact against
    sympy.diff, including odd powers of negative entries."""
    loss = sp.Sum(4 * (x[i] ** -6 - x[i] ** -3) + x[i] ** -4 * t[i] + x[i] ** 3, (i, 0, n - 1))
    compiled = bp.compile(loss, wrt=[x])
    graph = compiled.program.graph
    exponents = sorted(graph.number(node.args[1]) for node in graph.nodes if node.op is sp.Pow
                       and graph[node.args[0]].op is not sp.Pow and graph.number(node.args[1]) is not None
                       and graph.number(node.args[1]) < 0)
    assert exponents == [-3, -2, -1]  # x**-6 and x**-4 are squares of x**-3 and x**-2; 1/x divides
    check_model(loss, [x], {"x": (6,), "t": (6,)}, {n: 6}, seed=7, low=0.5, high=1.5)
    check_model(loss, [x], {"x": (6,), "t": (6,)}, {n: 6}, seed=8, low=-1.5, high=-0.5)


@pytest.mark.parametrize("loss", [
    sp.Sum((x[i] - sp.Sum(x[i], (i, 0, n - 1)) / n) ** 2, (i, 0, n - 1)),  # squared deviations from the mean
    sp.Sum(x[i] * sp.Sum(x[i] ** 2, (i, 0, n - 1)), (i, 0, n - 1)),
    sp.Sum(x[i], (i, 0, 1), (i, 0, n - 1)),  # one index twice in one Sum's limits
    sp.Sum(sp.Sum(x[i] * x[j], (i, 0, j)) * sp.Sum(sp.sin(x[i]), (i, j, n - 1)), (j, 0, n - 1)),
], ids=["deviations", "inner_sum_of_squares", "twice_in_limits", "bounds_read_the_outer_index"])
def test_an_inner_sum_that_reuses_an_outer_index_binds_its_own(loss):
    """As in SymPy, an inner Sum's index is its own: x[i] inside Sum(..., (i, ...)) is the inner
    entry, not the enclosing Sum's (fuzz-found: the deviations from the mean compiled to 0)."""
    check_model(loss, [x], {"x": (5,)}, {n: 5})
