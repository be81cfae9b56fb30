"""Hessians of indexed models of named size: one module, every n. Checked against sympy.hessian
of the model written out at several n, against hvp (H times directions), and against the
module of numeric size, whose structure backpropc.sparsity reads entry by entry."""

import itertools
import warnings

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backpropc as bp

n = sp.Symbol("n", integer=True, positive=True)
q = sp.Symbol("q", integer=True, positive=True)
i, j = sp.symbols("i j", integer=True)
x, y = sp.IndexedBase("x", shape=(n,)), sp.IndexedBase("y", shape=(n,))
X = sp.IndexedBase("X", shape=(q, 4))
a, b = sp.symbols("a b")


def written_out(expr, sizes):
    """expr at the given sizes, every Sum carried out, each entry x[k] the real symbol x_k."""
    e = sp.sympify(expr).xreplace(sizes).doit()
    return e.replace(lambda t: isinstance(t, sp.Indexed),
                     lambda t: sp.Symbol(f"{t.base}_{'_'.join(str(int(k)) for k in t.indices)}", real=True))


def entries(base, shape):
    return [sp.Symbol(f"{base}_{'_'.join(map(str, k))}", real=True) for k in itertools.product(*map(range, shape))]


def exact_hessian(objective, symbols, point):
    """sympy.hessian at the point; the derivative of sign (and of Piecewise's kinks) is 0 away
    from the kink, where the points are."""
    h = sp.hessian(objective, symbols).replace(lambda e: isinstance(e, (sp.Derivative, sp.DiracDelta)), lambda e: 0)
    return np.array(h.xreplace(point), dtype=float)


MODELS = {  # name: (loss, wrt, data, the size symbol)
    "rosenbrock": (sp.Sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2, (i, 0, n - 2)), [x], [], n),
    "powell": (sp.Sum((X[i, 0] + 10 * X[i, 1]) ** 2 + 5 * (X[i, 2] - X[i, 3]) ** 2 + (X[i, 1] - 2 * X[i, 2]) ** 4
                      + 10 * (X[i, 0] - X[i, 3]) ** 4, (i, 0, q - 1)), [X], [], q),
    "broyden": (((3 - 2 * x[0]) * x[0] - 2 * x[1] + 1) ** 2 + ((3 - 2 * x[n - 1]) * x[n - 1] - x[n - 2] + 1) ** 2
                + sp.Sum(((3 - 2 * x[i]) * x[i] - x[i - 1] - 2 * x[i + 1] + 1) ** 2, (i, 1, n - 2)), [x], [], n),
    # scalar parameters beside an indexed one, per-index data, a fixed entry, two ranges, Piecewise
    "mixed": (sp.Sum((a * x[i] - y[i]) ** 2 + sp.exp(a * x[i + 1]) * b, (i, 0, n - 2)) + a ** 2 * x[0]
              + sp.Sum(sp.Piecewise((x[i] ** 3, x[i] > 0), (-x[i], True)) + sp.Abs(x[i]) * x[i] ** 2
                       + sp.tanh(a * x[i]) * y[i], (i, 0, n - 1)), [x, a, b], [y], n),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_hessians_of_every_size_match_sympy(name):
    loss, wrt, data, size_symbol = MODELS[name]
    module = bp.compile(bp.Model(name, [], loss, wrt, data), derivatives=("hessian",)).load()
    rng = np.random.default_rng(len(name))
    for size in (2, 3, 5, 8):  # 2: the Sums of Rosenbrock and Broyden over one index or none
        shapes = {w: tuple(int(d.xreplace({size_symbol: size})) for d in w.shape) if isinstance(w, sp.IndexedBase)
                  else () for w in wrt + data}
        values = {w: rng.uniform(-1, 1, shape) if shape else float(rng.uniform(0.5, 1.5)) for w, shape in shapes.items()}
        symbols = [s for w in wrt for s in (entries(w, shapes[w]) if shapes[w] else [w])]
        point = {s: float(v) for w in wrt + data
                 for s, v in zip(entries(w, shapes[w]) if shapes[w] else [w], np.ravel(values[w]))}
        objective = written_out(loss, {size_symbol: size})
        exact = exact_hessian(objective, symbols, point)
        args = [values[w] for w in wrt + data]
        hessian = module.hessian(*args)
        np.testing.assert_allclose(hessian, exact, rtol=1e-11, atol=1e-11)
        assert np.array_equal(hessian, hessian.T)  # each pair of accesses computed once
        theta = module.pack(*args[:len(wrt)])
        np.testing.assert_array_equal(module.hessian_flat(theta, *args[len(wrt):]), hessian)
        rows, cols, vals = module.hessian_coo(*args)
        assert np.all(np.diff(rows * theta.size + cols) > 0)  # sorted, each place once
        np.testing.assert_array_equal(hessian[rows, cols], vals)
        direction = rng.standard_normal(theta.size)
        np.testing.assert_allclose(module.hvp_flat(theta, direction, *args[len(wrt):]), hessian @ direction,
                                   rtol=1e-10, atol=1e-10)


def test_a_batch_of_data_counts_every_example_and_the_mean_divides():
    loss, wrt, data, _ = MODELS["mixed"]
    model = bp.Model("mixed", [], loss, wrt, data)
    total, mean = (bp.compile(model, derivatives=("hessian",), reduction=r).load() for r in ("sum", "mean"))
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(-1, 1, 6), rng.uniform(-1, 1, (3, 6))
    batched = total.hessian(xs, 0.7, 1.3, ys)
    each = sum(total.hessian(xs, 0.7, 1.3, ys[k]) for k in range(3))  # terms without y count 3 times
    np.testing.assert_allclose(batched, each, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mean.hessian(xs, 0.7, 1.3, ys), batched / 3, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["rosenbrock", "broyden"])
def test_the_module_of_named_size_agrees_with_the_numeric_one(name):
    loss, wrt, data, _ = MODELS[name]
    named = bp.compile(bp.Model(name, [], loss, wrt, data), derivatives=("hessian",))
    v = np.random.default_rng(1).uniform(-1, 1, 40)
    numeric = bp.compile(bp.Model(name, [], loss.xreplace({x: sp.IndexedBase("x", shape=(40,)), n: 40}),
                                  [sp.IndexedBase("x", shape=(40,))], []), derivatives=("hessian",))
    np.testing.assert_allclose(named.load().hessian(v), numeric.load().hessian(v), rtol=1e-13, atol=1e-12)
    # the rows and columns are built at call time: the source has no list of them
    assert "HESSIAN_ROWS" not in named.source and len(named.source) < 40_000


def test_trust_exact_minimises_rosenbrock_at_any_n():
    from scipy.optimize import minimize

    loss, wrt, data, _ = MODELS["rosenbrock"]
    module = bp.compile(bp.Model("rosenbrock", [], loss, wrt, data), derivatives=("hessian",)).load()
    for size in (4, 12):
        fit = minimize(module.value_and_grad_flat, np.full(size, -1.2), jac=True, hess=module.hessian_flat,
                       method="trust-exact", options={"gtol": 1e-10})
        assert fit.success and np.abs(fit.x - 1).max() < 1e-6


@pytest.mark.parametrize("loss", [
    sp.log(sp.Sum(x[i] ** 2, (i, 0, n - 1))),                      # a Sum inside: every entry coupled
    sp.Sum(x[i], (i, 0, n - 1)) ** 2,
    sp.Sum(sp.Sum((x[i] - x[j]) ** 4, (j, i + 1, n - 1)), (i, 0, n - 1)),  # a nested Sum's gathers
    sp.Sum(x[i] * x[n - 1 - i] ** 2, (i, 0, n - 1)),               # a reversed index: a gather
])
def test_other_models_of_named_size_get_a_dense_hessian_by_products(loss):
    """Not families: every entry, one Hessian-vector product per column, for the size of the call;
    against the module of numeric size, whose structure is read entry by entry."""
    module = bp.compile(bp.Model("coupled", [], loss, [x], []), derivatives=("hessian",)).load()
    assert "one Hessian-vector product per column" in module.hessian_coo.__doc__
    for size in (4, 7):
        fixed = sp.IndexedBase("x", shape=(size,))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            numeric = bp.compile(bp.Model("coupled", [], loss.xreplace({x: fixed, n: size}), [fixed], []),
                                 derivatives=("hessian",)).load()
        v = np.random.default_rng(size).uniform(0.5, 1.5, size)
        hessian = module.hessian(v)
        np.testing.assert_allclose(hessian, numeric.hessian(v), rtol=1e-12, atol=1e-12)
        assert np.array_equal(hessian, hessian.T)
        np.testing.assert_array_equal(module.hessian_flat(v), hessian)


def test_an_entry_outside_the_array_is_named():
    module = bp.compile(bp.Model("broyden", [], *MODELS["broyden"][:3]), derivatives=("hessian",)).load()
    with pytest.raises(IndexError, match=r"x\["):
        module.hessian(np.ones(1))  # x[1] and x[n - 2] do not exist


FUNCTIONS = [sp.sin, sp.exp, lambda v: v, lambda v: v ** 3, sp.tanh, lambda v: sp.sqrt(1 + v ** 2)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(-2, 2), st.integers(-2, 2), st.sampled_from(range(len(FUNCTIONS))),
                          st.booleans()), min_size=1, max_size=3),
       st.integers(5, 8), st.integers(0, 2 ** 16))
def test_random_stencils_match_sympy(terms, size, seed):
    """Terms f(x[i + 2 + s] * x[i + 2 + t]) (times a when asked) over i = 0 .. n - 5, and a**2 x[0]."""
    loss = sp.Sum(sum(FUNCTIONS[f](x[i + 2 + s] * x[i + 2 + t]) * (a if scaled else 1)
                      for s, t, f, scaled in terms), (i, 0, n - 5)) + a ** 2 * x[0]
    module = bp.compile(bp.Model("random", [], loss, [x, a], []), derivatives=("hessian",)).load()
    rng = np.random.default_rng(seed)
    xs, av = rng.uniform(-1, 1, size), float(rng.uniform(0.5, 1.5))
    symbols = entries("x", (size,)) + [a]
    exact = exact_hessian(written_out(loss, {n: size}), symbols, dict(zip(symbols, [*xs, av])))
    np.testing.assert_allclose(module.hessian(xs, av), exact, rtol=1e-10, atol=1e-10)


def test_the_docs_show_the_hessian_code_as_it_is():
    """docs/arrays.md's listing of the Rosenbrock Hessian is the generated code, line for line."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "arrays.md").read_text(encoding="utf-8")
    listing = doc[doc.index("  def hessian_coo(x):"):]
    listing = listing[:listing.index("```")]
    loss, wrt, data, _ = MODELS["rosenbrock"]
    source = bp.compile(bp.Model("rosenbrock", [], loss, wrt, data), derivatives=("hessian",)).source
    for line in listing.splitlines():
        assert line.strip() in source, line


def test_float32_stays_float32():
    loss, wrt, data, _ = MODELS["rosenbrock"]
    module = bp.compile(bp.Model("rosenbrock", [], loss, wrt, data), derivatives=("hessian",)).load()
    v = np.linspace(-1, 1, 6, dtype=np.float32)
    assert module.hessian_coo(v)[2].dtype == np.float32 and module.hessian(v).dtype == np.float32
    np.testing.assert_allclose(module.hessian(v), module.hessian(v.astype(float)), rtol=1e-5, atol=1e-3)


def test_the_pattern_follows_the_size_of_each_call():
    """The pattern is kept for the sizes of the last call: calls at other sizes and back agree
    with fresh modules, and the rows and columns handed out cannot be changed in place."""
    loss, wrt, data, _ = MODELS["broyden"]
    model = bp.Model("broyden", [], loss, wrt, data)
    module = bp.compile(model, derivatives=("hessian",)).load()
    rng = np.random.default_rng(2)
    points = {size: rng.uniform(-1, 1, size) for size in (4, 9)}
    for size in (4, 9, 4, 9, 9):
        fresh = bp.compile(model, derivatives=("hessian",)).load()
        for a, b in zip(module.hessian_coo(points[size]), fresh.hessian_coo(points[size])):
            np.testing.assert_array_equal(a, b)
    rows, _, _ = module.hessian_coo(points[9])
    with pytest.raises(ValueError, match="read-only"):
        rows += 1
