"""Indexed models over a batch of data (SPEC 3.2 beside 2.5): batch axes lead, each indexed
argument's own axes trail, and a Sum reduces over its range per example.

The oracle is sympy.diff of each example's Sum written out (test_arrays.exact_gradient), added
up over the batch; every gradient is also checked against central finite differences of the
batched objective, and against the same module called one example at a time. Batch sizes equal
to n are included on purpose: there a per-example scalar that met a value over a Sum's range
without its trailing axis would broadcast silently instead of failing.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_arrays import entry_symbol, finite_differences

import backpropc as bp

n = sp.Symbol("n", integer=True, positive=True)
m = sp.Symbol("m", integer=True, positive=True)
x = sp.IndexedBase("x", shape=(n,))
t = sp.IndexedBase("t", shape=(n,))
y = sp.IndexedBase("y", shape=(n,))
Y = sp.IndexedBase("Y", shape=(n, 2))
A = sp.IndexedBase("A", shape=(n, m))
z = sp.IndexedBase("z", shape=(m,))
a, b, s, c = sp.symbols("a b s c")
i, j = sp.symbols("i j", integer=True)


# ---- the oracle: each example's Sum written out, then sympy.diff ------------------------------------
def carried_out(e):
    """Every Sum of e carried out term by term (bounds may use enclosing indices: triangles)."""
    if isinstance(e, sp.Sum):
        return _terms(e.function, list(e.limits))
    if not e.args:
        return e
    return e.func(*[carried_out(arg) for arg in e.args])


def _terms(body, limits):
    if not limits:
        return carried_out(body)
    index, lo, hi = limits[-1]  # SymPy lists the innermost limit first
    return sp.Add(*[_terms(body.xreplace({index: k}), [(s2, l2.xreplace({index: k}), h2.xreplace({index: k}))
                                                        for s2, l2, h2 in limits[:-1]])
                    for k in range(int(lo), int(hi) + 1)])


def exact_gradient(expr, wrt, values: dict, sizes: dict):
    """(value, gradients) by sympy.diff of the written-out expression at `values`."""
    loss = carried_out(sp.sympify(expr).xreplace(sizes))
    loss = loss.replace(lambda e: isinstance(e, sp.Indexed),
                        lambda e: entry_symbol(e.base, [int(v) for v in e.indices]))
    subs = {}
    for name, v in values.items():
        if np.ndim(v) == 0:
            subs[sp.Symbol(name)] = float(v)
        else:
            for index in np.ndindex(*np.shape(v)):
                subs[entry_symbol(name, index)] = float(np.asarray(v)[index])
    grads = []
    for target in wrt:
        if isinstance(target, sp.IndexedBase):
            shape = np.shape(values[str(target)])
            grads.append(np.array([float(sp.diff(loss, entry_symbol(target, index)).xreplace(subs))
                                   for index in np.ndindex(*shape)]).reshape(shape))
        else:
            grads.append(float(sp.diff(loss, target).xreplace(subs)))
    return float(loss.xreplace(subs)), grads


def example(values: dict, data: dict, e: tuple) -> dict:
    """The arguments of example e: each batched datum at e (its own trailing axes kept)."""
    return {**values, **{name: v[e] for name, v in data.items()}}


def check_batched(expr, wrt, params: dict, data: dict, sizes: dict, batch, seed=0, derivatives=("grad",),
                  reduction="sum"):
    """Compile; call with `data` that leads with `batch`; compare with the oracle summed (or
    averaged) over the examples, with finite differences and with per-example calls."""
    module = bp.compile(expr, wrt=wrt, derivatives=derivatives, reduction=reduction).load()
    rng = np.random.default_rng(seed)
    values = {name: rng.uniform(-1, 1, shape) if shape else float(rng.uniform(-1, 1))
              for name, shape in params.items()}
    batched = {name: rng.uniform(0.5, 1.5, batch + shape) for name, shape in data.items()}
    point = {**values, **batched}
    value, grads = module.value_and_grad(**point)
    assert np.shape(module.forward(**point)) == batch
    examples = list(np.ndindex(*batch))
    weight = 1 / len(examples) if reduction == "mean" else 1
    exact_value, exact = 0.0, [np.zeros(np.shape(values[str(w)])) for w in wrt]
    for e in examples:
        v, g = exact_gradient(expr, wrt, example(values, batched, e), sizes)
        exact_value += weight * v
        exact = [total + weight * np.asarray(part) for total, part in zip(exact, g)]
        if e == examples[0]:  # the module on one example agrees with the oracle on it
            one_value, _ = module.value_and_grad(**example(values, batched, e))
            np.testing.assert_allclose(one_value, v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(value, exact_value, rtol=1e-10, atol=1e-12)
    for target, got, want in zip(wrt, grads, exact):
        assert np.shape(got) == np.shape(values[str(target)])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
        estimate, direction = finite_differences(module.value_and_grad, point, str(target), rng)
        np.testing.assert_allclose(np.sum(got * direction), estimate, rtol=1e-5, atol=1e-6)
    return module, point, grads


@pytest.mark.parametrize("batch", [(3,), (6,), (2, 3)])
def test_line_fit_to_a_batch_of_series(batch):
    loss = s * sp.Sum((a * t[i] + b - y[i]) ** 2, (i, 0, n - 1))
    check_batched(loss, [a, b], {"a": (), "b": ()}, {"t": (6,), "y": (6,), "s": ()}, {n: 6}, batch)


def test_per_example_scalar_inside_the_summand_and_an_indexed_parameter():
    loss = sp.Sum(s * (x[i] - y[i]) ** 2 + c * x[i + 1] * x[i], (i, 0, n - 2))
    check_batched(loss, [x, c], {"x": (5,), "c": ()}, {"y": (5,), "s": ()}, {n: 5}, (5,))


def test_fixed_entries_of_batched_data():
    loss = sp.Sum((x[i] - y[0]) ** 2 * sp.exp(y[n - 1]), (i, 0, n - 1)) + x[0] * y[1]
    check_batched(loss, [x], {"x": (4,)}, {"y": (4,)}, {n: 4}, (4,))


def test_a_batch_that_enters_only_additively_counts_every_example():
    loss = sp.Sum(x[i] ** 2 + x[i] * x[i + 1], (i, 0, n - 2)) + s + a ** 2 * x[1]
    _, _, (gx, _) = check_batched(loss, [x, a], {"x": (4,), "a": ()}, {"s": ()}, {n: 4}, (7,))
    assert gx.shape == (4,)


def test_nested_sum_over_a_batch_of_matrices():
    loss = sp.Sum(sp.Sum(A[i, j] * z[j], (j, 0, m - 1)) ** 2 + s * z[0] * A[i, 0], (i, 0, n - 1))
    check_batched(loss, [z], {"z": (4,)}, {"A": (3, 4), "s": ()}, {n: 3, m: 4}, (2,))


def test_triangular_sum_gathers_batched_data_and_parameters():
    loss = sp.Sum(sp.sin(x[i] - x[j]) * y[j] + s * x[j] ** 2, (j, i + 1, n - 1), (i, 0, n - 1))
    check_batched(loss, [x], {"x": (5,)}, {"y": (5,), "s": ()}, {n: 5}, (5,))


def test_columns_of_batched_two_dimensional_data():
    loss = sp.Sum((a * Y[i, 0] + b - Y[i, 1]) ** 2, (i, 0, n - 1))
    check_batched(loss, [a, b], {"a": (), "b": ()}, {"Y": (4, 2)}, {n: 4}, (3,))


def test_piecewise_over_batched_data():
    loss = sp.Sum(sp.Piecewise((x[i] * y[i], y[i] > s), (x[i] ** 2, True)), (i, 0, n - 1))
    check_batched(loss, [x], {"x": (4,)}, {"y": (4,), "s": ()}, {n: 4}, (4,))


@pytest.mark.parametrize("batch", [(3,), (4,)])
def test_softmax_cross_entropy_where_a_sum_feeds_back_into_the_range(batch):
    # the signal of the log's Sum is 1/Sum, a per-example scalar that meets the range again
    K = sp.Symbol("K", integer=True, positive=True)
    k = sp.Idx("k", (0, K - 1))
    logits, target = sp.IndexedBase("w", shape=(K,)), sp.IndexedBase("z", shape=(K,))
    loss = -sp.Sum(target[k] * logits[k] * s, k) + sp.log(sp.Sum(sp.exp(logits[k] * s), k))
    check_batched(loss, [logits], {"w": (4,)}, {"z": (4,), "s": ()}, {K: 4}, batch)


def test_mean_over_the_batch():
    loss = sp.Sum((a * t[i] - y[i]) ** 2, (i, 0, n - 1))
    check_batched(loss, [a], {"a": ()}, {"t": (3,), "y": (3,)}, {n: 3}, (5,), reduction="mean")


def test_hessian_vector_product_sums_over_the_batch():
    loss = sp.Sum(s * x[i] ** 2 * x[i + 1] + sp.cos(x[i] * y[i]), (i, 0, n - 2))
    module, point, _ = check_batched(loss, [x], {"x": (4,)}, {"y": (4,), "s": ()}, {n: 4}, (3,),
                                     derivatives=("grad", "hvp"))
    direction = np.random.default_rng(9).standard_normal(4)
    _, _, (hv,) = module.hvp(**point, x_dot=direction)
    h = 1e-5
    up = module.grad(**{**point, "x": point["x"] + h * direction})[0]
    down = module.grad(**{**point, "x": point["x"] - h * direction})[0]
    np.testing.assert_allclose(hv, (up - down) / (2 * h), rtol=1e-6, atol=1e-6)
    one = sum(module.hvp(**example(point, {"y": point["y"], "s": point["s"]}, (e,)), x_dot=direction)[2][0]
              for e in range(3))
    np.testing.assert_allclose(hv, one, rtol=1e-10)


def test_flat_forms_take_batched_data():
    loss = sp.Sum((a * t[i] + b - y[i]) ** 2, (i, 0, n - 1))
    module = bp.compile(loss, wrt=[a, b]).load()
    rng = np.random.default_rng(2)
    tt, yy = rng.uniform(size=(4, 6)), rng.uniform(size=(4, 6))
    value, g = module.value_and_grad_flat(np.array([0.5, -0.2]), tt, yy)
    parts = [module.value_and_grad_flat(np.array([0.5, -0.2]), tt[e], yy[e]) for e in range(4)]
    np.testing.assert_allclose(value, sum(p[0] for p in parts), rtol=1e-12)
    np.testing.assert_allclose(g, sum(p[1] for p in parts), rtol=1e-12)


def test_parameters_take_no_batch_and_data_keep_their_own_axes():
    module = bp.compile(sp.Sum((a * t[i] - y[i]) ** 2 + x[i], (i, 0, n - 1)), wrt=[a, x]).load()
    with pytest.raises(ValueError, match="a must be one number"):
        module.value_and_grad(np.ones(3), np.ones(4), np.ones((3, 4)), np.ones(4))
    with pytest.raises(ValueError, match=r"x must have shape \(n,\); got \(2, 4\)"):
        module.value_and_grad(1.0, np.ones((2, 4)), np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match=r"y must have shape \(4,\), or \(\.\.\., 4,\) for a batch"):
        module.value_and_grad(1.0, np.ones(4), np.ones(4), np.ones((2, 5)))


def test_self_check_runs_with_a_batch_of_data():
    source = bp.compile(s * sp.Sum((a * t[i] - y[i]) ** 2, (i, 0, n - 1)), wrt=[a]).load()
    assert source._self_check() == 0


def _summand(terms):
    expr = sp.S.Zero
    for coeff, shift, fn, with_data in terms:
        factor = (y[i + shift] if with_data == 1 else s if with_data == 2 else 1)
        expr += coeff * fn(x[i + shift]) * factor * x[i + (shift + 1) % 3]
    return expr


FUNCTIONS = [sp.sin, sp.exp, lambda v: v, lambda v: 1 + v ** 2, sp.tanh]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(0, 2), st.sampled_from(range(len(FUNCTIONS))),
                          st.integers(0, 2)), min_size=1, max_size=4),
       st.integers(4, 6), st.sampled_from([(2,), (5,), (2, 3)]), st.integers(0, 2 ** 16))
def test_random_summands_over_batched_data(terms, size, batch, seed):
    loss = sp.Sum(_summand([(k, sh, FUNCTIONS[f], d) for k, sh, f, d in terms]), (i, 0, n - 3))
    assume(loss.function != 0 and loss.has(y, s))  # a model with data to batch
    data = {name: shape for name, shape in (("y", (size,)), ("s", ())) if loss.has(sp.sympify(name)
                                                                               if name == "s" else y)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_batched(loss, [x], {"x": (size,)}, data, {n: size}, batch, seed=seed)


# ---- check, compare and explain ---------------------------------------------------------------------
FIT = bp.Model("fit", loss=s * sp.Sum((a * t[i] + b - y[i]) ** 2, (i, 0, n - 1)), wrt=[a, b], inputs=[t, y, s])


def test_check_draws_batches_of_indexed_data_and_asks_sympy():
    report = bp.check(FIT, batch=5)
    assert report.ok and report.batch == 5
    assert all(row.sympy_error is not None and row.sympy_error < 1e-12 for row in report.rows)


@pytest.mark.parametrize("model", [FIT, bp.Model("rosenbrock", loss=sp.Sum(
    100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2, (i, 0, n - 2)), wrt=[x])])
def test_compare_writes_every_sum_out_for_the_naive_rows(model):
    result = bp.compare(model, batch=50, budget=30)
    assert [r.status for r in result.rows] == ["ok", "ok", "ok"]
    assert all(r.max_rel_diff < 1e-12 for r in result.rows)
    assert result.indexed and "every Sum written out" in result.format()


def test_explain_says_a_batch_of_data_adds_leading_axes():
    from backpropc.explain import explain
    assert "a batch of data adds leading axes" in explain(bp.compile(FIT))


def test_float32_data_and_parameters_stay_float32_and_hessians_sum_over_the_batch():
    x4, y4 = sp.IndexedBase("x", shape=(4,)), sp.IndexedBase("y", shape=(4,))
    loss = sp.Sum(s * x4[i] ** 2 * x4[i + 1] + sp.cos(x4[i] * y4[i]), (i, 0, 2))
    module = bp.compile(loss, wrt=[x4], derivatives=("grad", "hvp", "hessian")).load()
    rng = np.random.default_rng(0)
    X, Y, S = rng.uniform(size=4), rng.uniform(size=(3, 4)), rng.uniform(size=3)
    value, (g,) = module.value_and_grad(x=X.astype(np.float32), y=Y.astype(np.float32), s=S.astype(np.float32))
    assert np.asarray(value).dtype == np.float32 and g.dtype == np.float32 and g.shape == (4,)
    H = module.hessian_flat(X, s=S, y=Y)
    by_example = sum(module.hessian_flat(X, s=float(S[e]), y=Y[e]) for e in range(3))
    np.testing.assert_allclose(H, by_example, rtol=1e-12, atol=1e-12)
    h = 1e-5
    columns = [(module.grad(x=X + h * e, y=Y, s=S)[0] - module.grad(x=X - h * e, y=Y, s=S)[0]) / (2 * h)
               for e in np.eye(4)]
    np.testing.assert_allclose(H, np.array(columns).T, rtol=1e-6, atol=1e-6)


def test_residuals_and_jacobians_over_indexed_data_with_a_batch():
    model = bp.Model("r", [], None, [a, b], [t, y], residuals=[sp.Sum(a * t[i] ** 2 - y[i], (i, 0, n - 1)), a * b])
    module = bp.compile(model, derivatives=("grad", "jacobian")).load()
    T, Y = np.arange(12.0).reshape(3, 4), np.random.default_rng(4).uniform(size=(3, 4))
    r, J = module.residuals(2.0, 3.0, T, Y), module.jacobian(2.0, 3.0, T, Y)
    np.testing.assert_allclose(r, np.stack([(2 * T ** 2 - Y).sum(-1), np.full(3, 6.0)], axis=-1), rtol=1e-12)
    want = np.zeros((3, 2, 2))
    want[:, 0, 0], want[:, 1, 0], want[:, 1, 1] = (T ** 2).sum(-1), 3.0, 2.0
    np.testing.assert_allclose(J, want, rtol=1e-12)
    np.testing.assert_allclose(module.jacobian_flat(np.array([2.0, 3.0]), T, Y), want.reshape(6, 2), rtol=1e-12)


def _pair_summand(terms):
    expr = sp.S.Zero
    for coeff, fn, left, right in terms:
        first = x[i] if left == 0 else y[i] if left == 1 else s
        second = x[j] if right == 0 else y[j] * x[j] if right == 1 else x[i] * x[j]
        expr += coeff * fn(first * second)
    return expr


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(-2, 2).filter(bool), st.sampled_from(range(len(FUNCTIONS))),
                          st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=3),
       st.integers(3, 5), st.sampled_from([(2,), (4,), (5,)]), st.booleans(), st.integers(0, 2 ** 16))
def test_random_nested_sums_over_batched_data(terms, size, batch, triangular, seed):
    lower = i + 1 if triangular else 0
    loss = sp.Sum(_pair_summand([(k, FUNCTIONS[f], le, r) for k, f, le, r in terms]), (j, lower, n - 1), (i, 0, n - 1))
    assume(loss.has(y, s))
    data = {name: shape for name, shape in (("y", (size,)), ("s", ())) if loss.has(y if name == "y" else s)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_batched(loss, [x], {"x": (size,)}, data, {n: size}, batch, seed=seed)


def test_pairs_gather_two_dimensional_data_and_scatter_into_a_two_dimensional_parameter():
    B2 = sp.IndexedBase("B", shape=(n, n))
    P = sp.IndexedBase("P", shape=(n, n))
    loss = sp.Sum(B2[i, j] * x[i] * x[j] + sp.sin(P[i, j] * y[j]) * s, (j, i + 1, n - 1), (i, 0, n - 1))
    check_batched(loss, [x, P], {"x": (4,), "P": (4, 4)}, {"B": (4, 4), "y": (4,), "s": ()}, {n: 4}, (3,))
    check_batched(loss, [x, P], {"x": (4,), "P": (4, 4)}, {"B": (4, 4), "y": (4,), "s": ()}, {n: 4}, (2, 4))
