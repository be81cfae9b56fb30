"""Silent wrong answers and NaN, closed: argument kinds, broadcasting into a larger batch, empty
batches, constants that overflow, the stable forms users write, untaken branches through steps,
and models of any size."""

import numpy as np
import pytest
import sympy as sp

import backpropc as bp
from backpropc.errors import NonRealConstantError, UnsupportedFunctionError
from backpropc.explain import explain

w, x, t, z, y, eta, s = sp.symbols("w x t z y eta s")


@pytest.fixture(scope="module")
def squares():
    return bp.compile((w * x - t) ** 2, wrt=[w], inputs=[x, t]).load()


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself warns
def test_np_matrix_and_lists_are_arrays_and_complex_is_refused(squares):
    expected = squares.value_and_grad(0.5, np.array([1.0, 2.0]), np.array([0.0, 1.0]))
    for x_value, t_value in ((np.matrix([[1.0, 2.0]]), np.matrix([[0.0, 1.0]])), ([1, 2], [0, 1])):
        value, grads = squares.value_and_grad(0.5, x_value, t_value)
        assert value == pytest.approx(expected[0]) and value >= 0  # not a matrix product
        assert grads[0] == pytest.approx(expected[1][0])
    with pytest.raises(TypeError, match="x is complex.*real part"):
        squares.value_and_grad(0.5, np.array([1 + 2j]), 1.0)
    with pytest.raises(TypeError, match="t must be a number or an array of numbers, not str"):
        squares.value_and_grad(0.5, 1.0, "1")


def test_data_broadcasting_into_a_larger_batch_is_refused_unless_allowed(squares):
    with pytest.raises(ValueError, match=r"batch of shape \(3, 3\).*x \(3,\), t \(3, 1\).*broadcast=True"):
        squares.value_and_grad(0.5, np.ones(3), np.ones((3, 1)))
    squares.value_and_grad(0.5, np.ones(3), 1.0)  # a scalar beside a batch is fine
    outer = bp.compile((w * x - t) ** 2, wrt=[w], inputs=[x, t], broadcast=True).load()
    value, _ = outer.value_and_grad(0.5, np.ones(3), np.zeros((3, 1)))
    assert value == pytest.approx(9 * 0.25)


def test_the_mean_of_an_empty_batch_is_a_clear_error():
    module = bp.compile((w * x - t) ** 2, wrt=[w], inputs=[x, t], reduction="mean").load()
    with pytest.raises(ValueError, match="batch is empty"):
        module.value_and_grad(0.5, np.ones(0), np.ones(0))
    summed = bp.compile((w * x - t) ** 2, wrt=[w], inputs=[x, t]).load()
    assert summed.value_and_grad(0.5, np.ones(0), np.ones(0)) == (0.0, (0.0,))


@pytest.mark.parametrize("constant", [sp.Integer(10) ** 400, sp.Float("1e400"), sp.exp(1000)],
                         ids=["integer", "float", "exp"])
def test_constants_that_overflow_float64_are_refused(constant):
    with pytest.raises(NonRealConstantError, match="does not fit in a float64"):
        bp.compile(w * constant, wrt=[w])


STABLE = {  # name: (model, the rewrite explain reports)
    "cross_entropy": (bp.Model("bce", [(y, bp.sigmoid(z))], -t * sp.log(y) - (1 - t) * sp.log(1 - y), [z], [t]),
                      "log(1 - sigmoid(x)) -> -softplus(x)"),
    "cross_entropy_written_out": (bp.Model("bce2", [(y, 1 / (1 + sp.exp(-z)))],
                                           -t * sp.log(y) - (1 - t) * sp.log(1 - y), [z], [t]),
                                  "log(sigmoid(x)) -> -softplus(-x)"),
    "log_sigmoid": (bp.Model("ls", [], t * sp.log(bp.sigmoid(z)), [z], [t]), "log(sigmoid(x)) -> -softplus(-x)"),
    "exp_ratio": (bp.Model("er", [], t * sp.exp(z) / (1 + sp.exp(z)), [z], [t]), "exp(x)/(1 + exp(x)) -> sigmoid(x)"),
    "scaled_sigmoid": (bp.Model("two", [], t * 2 / (2 + 2 * sp.exp(-z)), [z], [t]), "sigmoid(x)/a"),
    "log_link": (bp.Model("poisson", [(y, sp.exp(z))], y - t * sp.log(y), [z], [t]), "log(exp(x)) -> x"),
    "log_of_exp_sum": (bp.Model("lse", [], t * sp.log(1 + sp.exp(z) + sp.exp(2 * z)), [z], [t]),
                       "logsumexp"),
}


@pytest.mark.parametrize("case", list(STABLE), ids=list(STABLE))
def test_stable_forms_are_finite_at_plus_and_minus_1000(case):
    model, rewrite = STABLE[case]
    compiled = bp.compile(model)
    assert rewrite in explain(compiled)
    module = compiled.load()
    exact = bp.compile(model, rewrite=False).load()
    ts = np.array([0.0, 1.0])
    with np.errstate(under="ignore"):
        for value in (-1000.0, 1000.0) if case != "log_link" else (-1000.0,):
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                loss, (g,) = module.value_and_grad(value, ts)
            assert np.isfinite(loss) and np.isfinite(g)
        for value in (-3.0, 0.5, 2.0):  # and exactly the model as written, where that is finite
            np.testing.assert_allclose(module.value_and_grad(value, ts)[1], exact.value_and_grad(value, ts)[1],
                                       rtol=1e-12)


def test_sqrt_of_a_square_is_abs_with_derivative_zero_at_zero():
    module = bp.compile(sp.sqrt(w ** 2) * x, wrt=[w], inputs=[x]).load()
    with np.errstate(all="raise"):
        assert module.grad(0.0, np.array([1.0, 2.0]))[0] == 0.0


def test_the_power_of_a_zero_data_value_has_the_limit_derivative():
    p = sp.Symbol("p")
    module = bp.compile(x ** p, wrt=[p], inputs=[x]).load()
    with np.errstate(divide="raise", invalid="raise"):
        value, (g,) = module.value_and_grad(2.0, np.array([0.0, 1.0, 2.0]))
    assert g == pytest.approx(4 * np.log(2.0))


def test_untaken_branches_are_safe_through_steps_and_for_large_powers():
    with np.errstate(all="raise"):
        big = bp.compile(sp.Piecewise((w ** 3, w < 1), (1, True)), wrt=[w]).load()
        assert big.value_and_grad(1e200) == (1.0, (0.0,))
        np.testing.assert_array_equal(big.value_and_grad(np.array([1e200, 0.5]))[1][0], [0.0, 0.75])
        step = bp.compile(bp.Model("step", [(s, sp.sqrt(w))], sp.Piecewise((s, w > 0), (0, True)), [w], [])).load()
        assert step.value_and_grad(np.array(-1.0)) == (0.0, (0.0,))
        assert step.value_and_grad(np.array(4.0))[1][0] == pytest.approx(0.25)


@pytest.mark.parametrize("build", [
    lambda xs: sp.Add(*xs), lambda xs: sp.Mul(*xs[:3000]),
    lambda xs: sp.Max(*[x * k + xs[k] for k in range(220)], evaluate=False),  # SymPy would compare all pairs
    lambda xs: sp.Piecewise(*[(x * k, x < k) for k in range(250)], (x, True)),
    lambda xs: sp.Piecewise((x ** 2, sp.And(*[x > k for k in range(300)])), (x, True)),
], ids=["sum_3000", "product_3000", "max_220", "piecewise_250", "and_300"])
def test_models_of_any_size_compile_to_source_python_parses(build):
    xs = sp.symbols("x0:3001")
    expr = build(xs)
    compiled = bp.compile(expr, wrt=[x] if expr.has(x) else [xs[0]],
                          inputs=sorted((expr.free_symbols - {x}) - ({xs[0]} if not expr.has(x) else set()),
                                        key=str))
    module = compiled.load()
    assert callable(module.value_and_grad)


@pytest.mark.parametrize("construct, name", [(sp.Integral(w ** 2, (x, 0, 1)), "Integral"),
                                             (sp.Derivative(sp.sin(w * x), x), "Derivative"),
                                             (sp.Product(w + x, (x, 1, 3)), "Product")])
def test_constructs_that_are_not_functions_are_named(construct, name):
    with pytest.raises(UnsupportedFunctionError, match=f"{name} is not supported in a model; \\w"):
        bp.compile(construct * w, wrt=[w])


def test_a_product_over_a_symbolic_range_can_be_written_as_the_exp_of_a_sum_of_logs():
    """What the Product error suggests compiles, and its gradient is the product's."""
    size = sp.Symbol("size", integer=True, positive=True)
    v, k = sp.IndexedBase("v", shape=(size,)), sp.Symbol("k", integer=True)
    module = bp.compile(sp.exp(sp.Sum(sp.log(v[k]), (k, 0, size - 1))), wrt=[v]).load()
    values = np.array([0.5, 2.0, 3.0, 0.25])
    total, (v_bar,) = module.value_and_grad(values)
    assert np.isclose(total, np.prod(values))
    assert np.allclose(v_bar, np.prod(values) / values)


def test_bp_sum_refuses_text():
    with pytest.raises(bp.errors.ModelError, match="not a string"):
        bp.sum("__import__('os')")
