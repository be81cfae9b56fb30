"""Third robustness round: the float path's precedence, module names, flat directions, fdiff,
float32 through Hessians and Jacobians, empty ranges, the derivatives argument."""

from __future__ import annotations

import ast
import warnings

import numpy as np
import pytest
import sympy as sp

import backpropc as bp
from backpropc.errors import ModelError, UnsupportedFunctionError, UnusedWrtWarning
from backpropc.naming import MODULE_NAMES

a, b, c, x, y = sp.symbols("a b c x y")
n = sp.Symbol("n", integer=True, positive=True)
i = sp.Symbol("i", integer=True)
F32 = np.float32


@pytest.mark.parametrize("loss", [
    b ** 2 + 2 * sp.Mod(a, 2), b + 5 * sp.frac(a), b ** 2 * sp.Mod(3 * a, 2), -b * sp.Mod(a + b, 2 * b),
    b ** 2 * sp.frac(3 * a + 10), sp.Mod(a, 2) ** 2 * b, b / sp.Mod(a, 2), 2 ** sp.Mod(a, 3) * b,
], ids=str)
def test_mod_and_frac_on_python_floats_agree_with_numpy_in_every_position(loss):
    """On floats Mod is Python's %, which binds like * and /: 2*Mod(a, 2) is not 2*a % 2."""
    module = bp.compile(loss, wrt=[a, b], derivatives=("grad", "hessian")).load()
    point = {a: -0.7, b: 0.9}
    exact = float(loss.subs(point))
    on_floats, on_arrays = module.forward(-0.7, 0.9), module.forward(np.array(-0.7), np.array(0.9))
    assert np.isclose(on_floats, exact, rtol=1e-12) and np.isclose(on_arrays, exact, rtol=1e-12)
    # near the point, Mod(u, v) is u - v*q and frac(u) is u - q, with q the floor at the point
    local = loss.replace(sp.Mod, lambda u, v: u - v * sp.floor((u / v).subs(point)))
    local = local.replace(sp.frac, lambda u: u - sp.floor(u.subs(point)))
    exact_grad = [float(sp.diff(local, s).subs(point)) for s in (a, b)]
    np.testing.assert_allclose(module.grad(-0.7, 0.9), exact_grad, rtol=1e-12, atol=1e-12)
    exact_hessian = np.array(sp.hessian(local, (a, b)).subs(point), dtype=float)
    np.testing.assert_allclose(module.hessian(-0.7, 0.9), exact_hessian, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(module.hessian(np.array(-0.7), np.array(0.9)), exact_hessian, rtol=1e-12, atol=1e-12)


def _public_names(source: str) -> set[str]:
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names |= {t.id for t in ast.walk(target) if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return {name for name in names if not name.startswith("_")}


def test_every_public_name_of_a_module_is_reserved():
    """A symbol named like a module's global (math, HESSIAN_ROWS, ...) would shadow it."""
    xs = sp.symbols("x0:100")  # a Jacobian of 10^4 entries: coloured
    A = sp.MatrixSymbol("A", 2, 2)
    v = sp.IndexedBase("v", shape=(n,))
    sources = [
        bp.compile(bp.Model("loop", residuals=[(3 - 2 * xs[k]) * xs[k] - 2 * xs[k + 1] + 1 for k in range(99)],
                            wrt=list(xs)), derivatives=("grad", "hvp", "hessian", "jacobian")).source,
        bp.compile(sp.sin(a) * x + sp.Trace(A * A.T) * b, wrt=[a, b, A], inputs=[x],
                   derivatives=("grad", "hvp", "hessian")).source,
        bp.compile(sp.Sum((v[i + 1] - v[i] ** 2) ** 2, (i, 0, n - 2)), wrt=[v], derivatives=("grad", "hvp", "hessian")).source,
        bp.compile(sp.sin(a) * b, wrt=[a, b], derivatives=("grad", "hvp", "hessian")).source,
    ]
    found = set().union(*map(_public_names, sources))
    assert {"math", "HESSIAN_ROWS", "JACOBIAN_COLOURS", "hvp_flat", "jacobian_coo"} <= found
    assert found <= MODULE_NAMES


@pytest.mark.parametrize("name", ["math", "HESSIAN_ROWS", "HESSIAN_COLS", "BLOCK"])
def test_a_symbol_named_like_a_module_global_is_renamed(name):
    s = sp.Symbol(name)
    module = bp.compile(sp.sin(a) * s + a ** 2 * s, wrt=[a], inputs=[s], derivatives=("grad", "hessian")).load()
    assert module.ARGS == ("a", f"{name}_")
    assert np.isclose(module.value_and_grad(0.3, 2.0)[1][0], 2.0 * np.cos(0.3) + 1.2)
    np.testing.assert_allclose(module.hessian_flat(np.array([0.3]), 2.0), [[-2.0 * np.sin(0.3) + 4.0]])


def test_hvp_flat_of_a_named_size_takes_the_size_from_theta_not_from_the_direction():
    v = sp.IndexedBase("v", shape=(n,))
    module = bp.compile(sp.Sum(100 * (v[i + 1] - v[i] ** 2) ** 2 + (1 - v[i]) ** 2, (i, 0, n - 2)), wrt=[v],
                        derivatives=("grad", "hvp", "hessian")).load()
    theta = np.linspace(-1.0, 1.0, 6)
    np.testing.assert_allclose(module.hvp_flat(theta, np.arange(6.0)), module.hessian_flat(theta) @ np.arange(6.0))
    for length in (5, 7, 12):
        with pytest.raises(ValueError, match=r"p must be a 1-D array of 6 numbers"):
            module.hvp_flat(theta, np.arange(float(length)))


class _Undefined(sp.Function):
    """fdiff gives an undefined function: no module can compute it."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sp.Function("h")(self.args[0])

    def _numpycode(self, printer):
        return f"np.sin({printer._print(self.args[0])})"


@pytest.mark.parametrize("derivatives", [("grad",), ("grad", "hessian")])
def test_a_derivative_from_fdiff_that_is_undefined_is_refused_at_compile_time(derivatives):
    with pytest.raises(UnsupportedFunctionError, match="fdiff uses h, which has no rule"):
        bp.compile(_Undefined(a) * b, wrt=[a, b], derivatives=derivatives)


def test_float32_stays_float32_through_constant_hessians_matrices_and_jacobians():
    data = np.linspace(-1, 1, 5, dtype=F32)
    constant = bp.compile(a ** 2 / 10 + c * x, wrt=[a, c], inputs=[x], derivatives=("grad", "hessian")).load()
    assert constant.hessian(F32(0.3), F32(0.5), data).dtype == F32
    assert constant.hessian_coo(F32(0.3), F32(0.5), data)[2].dtype == F32
    np.testing.assert_allclose(constant.hessian(F32(0.3), F32(0.5), data), [[1.0, 0.0], [0.0, 0.0]], atol=1e-6)  # 5 examples

    A = sp.MatrixSymbol("A", 2, 2)
    matrix = bp.compile(sp.Trace(A.I * A.T) * x + a ** 2 * x, wrt=[A, a], inputs=[x], derivatives=("grad", "hessian")).load()
    start = np.eye(2, dtype=F32) * 2
    assert matrix.hessian(start, F32(0.5), data).dtype == F32
    assert matrix.hessian_flat(matrix.pack(start, F32(0.5)), data).dtype == F32

    t, obs = sp.IndexedBase("t", shape=(n,)), sp.IndexedBase("obs", shape=(n,))
    decay = bp.compile(bp.Model("decay", residuals=[(a * sp.exp(-b * t[i]) + c - obs[i], (i, 0, n - 1))],
                                wrt=[a, b, c], inputs=[t, obs]), derivatives=("grad", "jacobian")).load()
    times, values = np.linspace(0, 4, 30, dtype=F32), np.ones(30, F32)
    assert decay.jacobian(F32(1), F32(1), F32(0), times, values).dtype == F32
    assert decay.jacobian_flat(np.array([1, 1, 0], F32), times, values).dtype == F32

    scalars = bp.compile(a * b + sp.exp(a), wrt=[a, b]).load()
    value, gradient = scalars.value_and_grad_flat(np.array([0.5, 2.0], F32))
    assert gradient.dtype == F32 and np.isclose(value, 1.0 + np.exp(0.5), rtol=1e-6)
    assert scalars.value_and_grad_flat(np.array([0.5, 2.0]))[1].dtype == np.float64


def test_an_empty_range_of_data_gives_empty_residuals_and_jacobians():
    t, obs = sp.IndexedBase("t", shape=(n,)), sp.IndexedBase("obs", shape=(n,))
    decay = bp.compile(bp.Model("decay", residuals=[(a * sp.exp(-b * t[i]) + c - obs[i], (i, 0, n - 1))],
                                wrt=[a, b, c], inputs=[t, obs]), derivatives=("grad", "jacobian")).load()
    empty = np.array([])
    assert decay.residuals_flat(np.ones(3), empty, empty).shape == (0,)
    assert decay.jacobian_flat(np.ones(3), empty, empty).shape == (0, 3)
    assert decay.jacobian(1.0, 1.0, 1.0, np.zeros((2, 0)), np.zeros((2, 0))).shape == (2, 0, 3)
    assert decay.value_and_grad_flat(np.ones(3), empty, empty)[0] == 0

    K = sp.Symbol("K", integer=True, positive=True)
    coefficients, k = sp.IndexedBase("coef", shape=(K,)), sp.Symbol("k", integer=True)
    poly = bp.compile(bp.Model("poly", residuals=[(obs[i] - sp.Sum(coefficients[k] * t[i] ** k, (k, 0, K - 1)), (i, 0, n - 1))],
                               wrt=[coefficients], inputs=[t, obs]), derivatives=("grad", "jacobian")).load()
    samples = np.linspace(-1, 1, 5)
    assert poly.jacobian_flat(np.zeros(0), samples, samples).shape == (5, 0)
    np.testing.assert_allclose(poly.jacobian_flat(np.zeros(2), samples, samples), -np.stack([samples ** 0, samples], axis=1))


@pytest.mark.parametrize("derivatives", [None, 3, {"grad": 1}, [["grad"]], ["grad", 3]])
def test_derivatives_of_the_wrong_type_are_a_model_error(derivatives):
    with pytest.raises(ModelError, match="derivative"):
        bp.compile(a * b, wrt=[a, b], derivatives=derivatives)


def test_a_set_of_derivatives_compiles_as_the_same_list_would():
    as_set = bp.compile(a * sp.sin(b), wrt=[a, b], derivatives={"hessian", "hvp"})
    as_list = bp.compile(a * sp.sin(b), wrt=[a, b], derivatives=("grad", "hvp", "hessian"))
    assert as_set.source == as_list.source


def test_an_unused_parameter_of_a_residual_model_is_named_against_the_residuals():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bp.compile(bp.Model("fit", residuals=[a * x - y], wrt=[a, b], inputs=[x, y]))
    assert any(issubclass(w.category, UnusedWrtWarning) and "does not occur in the residuals" in str(w.message)
               for w in caught)


# ---- indexed models --------------------------------------------------------------------------------
m_size, j = sp.Symbol("m", integer=True, positive=True), sp.Symbol("j", integer=True)


def test_unpack_reads_the_sizes_theta_cannot_give_off_the_data():
    W, bias, t = sp.IndexedBase("W", shape=(m_size, n)), sp.IndexedBase("bias", shape=(m_size,)), sp.IndexedBase("t", shape=(n,))
    layer = sp.Sum(sp.tanh(sp.Sum(W[i, j] * t[j], (j, 0, n - 1)) + bias[i]), (i, 0, m_size - 1))
    module = bp.compile(bp.Model("layer", loss=layer, wrt=[W, bias], inputs=[t])).load()
    weights, offsets, samples = np.arange(15.0).reshape(3, 5), np.arange(3.0), np.linspace(0, 1, 5)
    theta = module.pack(weights, offsets)
    got_weights, got_offsets = module.unpack(theta, samples)
    np.testing.assert_array_equal(got_weights, weights)
    np.testing.assert_array_equal(got_offsets, offsets)
    single = bp.compile(sp.Sum(t[i] * sp.IndexedBase("v", shape=(n,))[i] ** 2, (i, 0, n - 1)),
                        wrt=[sp.IndexedBase("v", shape=(n,))], inputs=[t]).load()
    np.testing.assert_array_equal(single.unpack(np.arange(4.0))[0], np.arange(4.0))  # theta's length is n


@pytest.mark.parametrize("where", ["inputs", "wrt"])
def test_a_shape_symbol_listed_as_an_argument_is_refused(where):
    v = sp.IndexedBase("v", shape=(n,))
    lists = {"wrt": [v, n], "inputs": []} if where == "wrt" else {"wrt": [v], "inputs": [n]}
    with pytest.raises(ModelError, match=f"n is a size in the shape of v, read off v at call time; remove it from {where}"):
        bp.compile(bp.Model("m", loss=sp.Sum(v[i] ** 2, (i, 0, n - 1)), **lists))


@pytest.mark.parametrize("shape", [(n + 1,), (2 * n,)], ids=str)
def test_a_shape_that_is_an_expression_is_refused(shape):
    v = sp.IndexedBase("v", shape=shape)
    with pytest.raises(ModelError, match="give each size as a number or one symbol"):
        bp.compile(sp.Sum(v[i] ** 2, (i, 0, 2)), wrt=[v])


def test_an_entry_out_of_a_numeric_shape_for_numeric_bounds_is_refused_at_compile_time():
    v, p = sp.IndexedBase("v", shape=(5,)), sp.Idx("p", 10)
    for loss, index in [(v[5] ** 2, 5), (sp.Sum(v[i] ** 2, (i, 0, 5)), 5), (sp.Sum(v[i - 1] ** 2, (i, 0, 4)), -1),
                        (sp.Sum(v[p] ** 2, p), 9), (sp.Sum(v[2 * i + 1] ** 2, (i, 0, 2)), 5)]:
        with pytest.raises(ModelError, match=f"reaches index {index} of v, which has 5 entries there"):
            bp.compile(loss, wrt=[v])
    edge = bp.compile(sp.Sum((v[i + 1] - v[i]) ** 2, (i, 0, 3)) + sp.Sum(v[i] ** 2, (i, 3, 2)), wrt=[v]).load()
    values = np.array([0.0, 1.0, 3.0, 6.0, 10.0])
    value, (gradient,) = edge.value_and_grad(values)
    assert value == np.sum(np.diff(values) ** 2)  # the empty range 3..2 adds nothing
    np.testing.assert_allclose(gradient, [-2.0, -2.0, -2.0, -2.0, 8.0])


def test_reversed_numeric_bounds_are_refused_rather_than_read_two_ways():
    v = sp.IndexedBase("v", shape=(5,))
    with pytest.raises(ModelError, match="runs from 3 down to 1, which SymPy reads as minus the Sum from 2 to 2"):
        bp.compile(sp.Sum(v[i], (i, 3, 1)), wrt=[v])


def test_the_forward_steps_of_the_docstring_print_every_axis_of_a_window():
    v, A = sp.IndexedBase("v", shape=(n,)), sp.IndexedBase("A", shape=(n, 3))
    loss = v[0] ** 2 + v[2] * v[n - 1] + sp.Sum(v[2 * i] ** 2, (i, 0, 2)) + sp.Sum(A[i, 0] * A[i, 2], (i, 0, n - 1))
    doc = bp.compile(loss, wrt=[v, A]).load().__doc__
    for text in ("v[0]**2", "v[2]*v[n - 1]", "v[0:5:2]**2", "A[0:n, 0]*A[0:n, 2]"):
        assert text in doc


def test_kronecker_delta_of_indices_is_one_where_they_are_equal():
    """SymPy writes d x[i] / d x[j] as KroneckerDelta(i, j); a model may use it over indices."""
    A, v = sp.IndexedBase("A", shape=(n, n)), sp.IndexedBase("v", shape=(n,))
    loss = (sp.Sum((A[i, j] - sp.KroneckerDelta(i, j)) ** 2, (i, 0, n - 1), (j, 0, n - 1))
            + sp.Sum(v[i] ** 2 * sp.KroneckerDelta(i, 2), (i, 0, n - 1)))
    module = bp.compile(loss, wrt=[A, v], derivatives=("grad", "hessian")).load()
    rng = np.random.default_rng(3)
    matrix, vector = rng.standard_normal((4, 4)), rng.standard_normal(4)
    written = sum((A[r, q] - sp.KroneckerDelta(r, q)) ** 2 for r in range(4) for q in range(4)) + v[2] ** 2
    entries = {A[r, q]: matrix[r, q] for r in range(4) for q in range(4)} | {v[r]: vector[r] for r in range(4)}
    value, (matrix_bar, vector_bar) = module.value_and_grad(matrix, vector)
    assert np.isclose(value, float(written.subs(entries)))
    np.testing.assert_allclose(matrix_bar, [[float(sp.diff(written, A[r, q]).subs(entries)) for q in range(4)]
                                            for r in range(4)])
    np.testing.assert_allclose(vector_bar, [float(sp.diff(written, v[r]).subs(entries)) for r in range(4)])
    np.testing.assert_allclose(module.hessian_flat(module.pack(matrix, vector)),
                               np.diag([2.0] * 16 + [0.0, 0.0, 2.0, 0.0]))


def test_a_parameter_read_at_every_level_of_a_chain_names_the_ends_of_its_sources():
    xs, L = sp.symbols("x0:21"), sp.Symbol("L")
    steps = [(xs[k + 1], xs[k] ** 2 + a * xs[k]) for k in range(20)] + [(L, xs[20])]
    source = bp.compile(bp.Model("chain", steps=steps, loss=L, wrt=[a], inputs=[xs[0]])).source
    line = next(text for text in source.splitlines() if text.lstrip().startswith("a_bar = "))
    assert line.endswith("# from x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, ..., x20 (20 statements)")


@pytest.mark.parametrize("loss", [sp.Integer(3), sp.Integer(-2), sp.Rational(1, 3)], ids=str)
def test_a_constant_loss_over_a_batch_is_a_float(loss):
    """A loss that reads no argument, broadcast over the batch, sums floats, not integers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedWrtWarning)
        module = bp.compile(bp.Model("constant", [], loss, [a], [x])).load()
    value, (a_bar,) = module.value_and_grad(0.5, np.ones(4))
    assert type(value) is np.float64 and value == 4 * float(loss) and a_bar == 0
    assert module.forward(0.5, np.ones(4)).dtype == np.float64


def test_a_negative_numeric_shape_is_refused_as_such():
    """shape=(-3,) is no size: refused with that, not as an index past "0 to -4"."""
    v = sp.IndexedBase("v", shape=(-3,))
    with pytest.raises(ModelError, match=r"the shape of v has -3 entries along an axis; a size is 0 or more"):
        bp.compile(sp.Sum(v[i] ** 2, (i, 0, 1)), wrt=[v])
