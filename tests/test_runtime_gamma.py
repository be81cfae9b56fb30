"""The pure-NumPy Gamma family in backpropc/runtime/gamma.py against mpmath at 30 digits."""

import inspect
import math
import warnings

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from backpropc.runtime import gamma as runtime
from backpropc.runtime.gamma import (
    NEEDS,
    _binomial,
    _digamma,
    _factorial,
    _gamma,
    _loggamma,
    _polygamma,
)

TOLERANCE = 1e-13  # relative, absolute where the value is below 1
RNG = np.random.default_rng(20240611)


def worst_error(computed, exact):
    """The largest error of computed floats against mpmath values, relative where |exact| >= 1."""
    worst = 0.0
    for y, e in zip(np.ravel(computed), exact):
        worst = max(worst, float(abs(mp.mpf(float(y)) - e) / max(1, abs(e))))
    return worst


def reference(function, *columns):
    with mp.workdps(30):
        return [function(*(mp.mpf(float(v)) for v in values)) for values in zip(*columns)]


# small x, x near the zeros of log Gamma at 1 and 2, a dense middle, large x
POSITIVE = np.concatenate([
    np.geomspace(1e-300, 1e-8, 30), np.geomspace(1e-8, 1e-2, 60),
    np.linspace(0.01, 12, 600), 1 + np.linspace(-0.01, 0.01, 41), 2 + np.linspace(-0.01, 0.01, 41),
    RNG.uniform(0, 40, 200), np.geomspace(40, 1e8, 80),
])
NEGATIVE = -np.concatenate([np.linspace(0.001, 12, 300) + 1e-4, RNG.uniform(0, 170.5, 300)])
NEGATIVE = NEGATIVE[np.abs(NEGATIVE - np.round(NEGATIVE)) > 1e-6]


@pytest.mark.parametrize("helper, exact, points", [
    (_loggamma, mp.loggamma, POSITIVE),
    (_loggamma, mp.loggamma, np.geomspace(1e8, 1e300, 40)),
    (_gamma, mp.gamma, POSITIVE[POSITIVE < 171.6]),
    (_gamma, mp.gamma, NEGATIVE),
    (_digamma, mp.digamma, POSITIVE),
    (_digamma, mp.digamma, np.geomspace(1e8, 1e300, 40)),
    (_digamma, mp.digamma, NEGATIVE),
    (_digamma, mp.digamma, -RNG.uniform(170, 1e6, 100)),
], ids=["loggamma", "loggamma-huge", "gamma", "gamma-negative", "digamma", "digamma-huge",
        "digamma-negative", "digamma-very-negative"])
def test_accuracy_against_mpmath(helper, exact, points):
    assert worst_error(helper(points), reference(exact, points)) <= TOLERANCE


@pytest.mark.parametrize("k", range(9))
def test_polygamma_accuracy(k):
    points = POSITIVE[(POSITIVE > 1e-30) & (POSITIVE < 1e7)]  # past these it under/overflows
    assert worst_error(_polygamma(k, points), reference(lambda x: mp.psi(k, x), points)) <= TOLERANCE
    # relative even where the value is small: the series has no cancellation for k >= 1
    if k:
        relative = [float(abs(mp.mpf(float(y)) / e - 1))
                    for y, e in zip(_polygamma(k, points), reference(lambda x: mp.psi(k, x), points))]
        assert max(relative) <= TOLERANCE


def test_polygamma_takes_an_array_of_orders():
    k = np.array([[0], [1], [3], [5]])
    x = np.array([0.3, 2.5, 40.0])
    expected = np.array([[_polygamma(int(ki), xi) for xi in x] for ki in k[:, 0]])
    np.testing.assert_array_equal(_polygamma(k, x), expected)
    np.testing.assert_array_equal(_polygamma(0, -x), _digamma(-x))


def test_factorial_is_exact_where_float64_holds_the_result():
    n = np.arange(23.0)
    assert np.array_equal(_factorial(n), [float(math.factorial(i)) for i in range(23)])
    assert _factorial(22.0) == math.factorial(22)  # the last factorial with a 53-bit odd part
    big = np.arange(23.0, 171.0)
    exact = [mp.mpf(math.factorial(int(i))) for i in big]
    assert np.isfinite(_factorial(big)).all()
    assert max(float(abs(mp.mpf(float(y)) / e - 1)) for y, e in zip(_factorial(big), exact)) <= TOLERANCE


def test_factorial_of_non_integers_is_gamma_of_n_plus_one():
    n = np.concatenate([RNG.uniform(-20, 60, 200), [0.5, 2.5, -0.5]])
    n = n[np.abs(n - np.round(n)) > 1e-6]
    with mp.workdps(30):
        exact = [mp.gamma(mp.mpf(float(v)) + 1) for v in n]
    assert worst_error(_factorial(n), exact) <= TOLERANCE
    assert float(_factorial(2.5)) == pytest.approx(float(sp.factorial(sp.Float(2.5))), rel=1e-15)


def test_binomial_is_exact_for_integers_when_float64_holds_it():
    n, k = np.meshgrid(np.arange(0.0, 80.0), np.arange(0.0, 80.0))
    exact = np.array([[math.comb(int(a), int(b)) for a, b in zip(ra, rb)] for ra, rb in zip(n, k)])
    computed = _binomial(n, k)
    fits = exact * np.maximum(np.minimum(k, n - k), 1) < 2.0**53
    assert np.array_equal(computed[fits], exact[fits].astype(float))
    relative = np.abs(computed[~fits] / exact[~fits].astype(float) - 1)
    assert relative.max() <= TOLERANCE


def test_binomial_of_large_integers():
    n = np.array([171.0, 200.0, 500.0, 1000.0, 1000.0, 1e6, 1e6])
    k = np.array([60.0, 100.0, 31.0, 500.0, 3.0, 7.0, 40.0])
    exact = [mp.mpf(math.comb(int(a), int(b))) for a, b in zip(n, k)]
    relative = [float(abs(mp.mpf(float(y)) / e - 1)) for y, e in zip(_binomial(n, k), exact)]
    assert max(relative) <= TOLERANCE


def test_binomial_conventions_match_sympy():
    cases = [(5, -1), (3, 5), (-3, 2), (-3, 5), (0, 0), (2.5, 2), (2.5, 3.5), (2.5, 4.5),
             (3, 2.5), (2.5, -1.5), (-2.5, 3), (7.25, 3.75)]
    for n, k in cases:
        expected = float(sp.binomial(sp.Float(n) if isinstance(n, float) else n,
                                     sp.Float(k) if isinstance(k, float) else k))
        assert float(_binomial(n, k)) == pytest.approx(expected, rel=1e-14, abs=1e-300), (n, k)


def test_binomial_of_non_integers_against_mpmath():
    n = RNG.uniform(-30, 60, 400)
    k = RNG.uniform(-10, 40, 400)
    # near a pole of Gamma(n - k + 1) or Gamma(n + 1) the rounding of n - k + 1 or n + 1
    # alone costs 1e-16 / distance (docs/special.md); test where that stays below 1e-14
    far = np.minimum(np.abs(n - np.round(n)), np.abs(n - k - np.round(n - k))) > 0.05
    n, k = n[far], k[far]
    assert worst_error(_binomial(n, k), reference(mp.binomial, n, k)) <= TOLERANCE


def test_special_values():
    inf, nan = np.inf, np.nan
    cases = [
        (_loggamma, [0.0, -0.0, inf, -1.0, -2.5, nan], [inf, inf, inf, nan, nan, nan]),
        (_gamma, [0.0, -0.0, inf, -inf, -1.0, -7.0, 171.7, 1e300, nan, -200.5],
         [inf, -inf, inf, nan, nan, nan, inf, inf, nan, 0.0]),
        (_digamma, [0.0, -0.0, inf, -inf, -1.0, -3.0, nan], [-inf, inf, inf, nan, nan, nan, nan]),
        (lambda x: _polygamma(1, x), [0.0, -0.0, inf, -0.5, nan], [inf, inf, 0.0, nan, nan]),
        (lambda x: _polygamma(2, x), [0.0, -0.0, inf], [-inf, inf, -0.0]),
        (_factorial, [-1.0, -3.0, 171.0, inf, -inf, nan], [nan, nan, inf, inf, nan, nan]),
    ]
    for helper, x, expected in cases:
        np.testing.assert_array_equal(helper(np.array(x)), np.array(expected))
    assert np.isnan(_polygamma(1.5, 2.0)) and np.isnan(_polygamma(-1, 2.0))
    for n in range(1, 30):  # Gamma(n) = (n - 1)!
        assert _gamma(float(n)) == pytest.approx(math.factorial(n - 1), rel=2e-15)
    assert _gamma(0.5) == pytest.approx(math.sqrt(math.pi), rel=1e-15)
    assert abs(_loggamma(1.0)) < 1e-14 and abs(_loggamma(2.0)) < 1e-14
    assert _digamma(1.0) == pytest.approx(-0.5772156649015329, rel=1e-15)
    assert _gamma(171.6) < np.finfo(float).max < _gamma(171.7)


ALL = [("_loggamma", lambda f, x: f(np.abs(x))), ("_gamma", lambda f, x: f(x)),
       ("_digamma", lambda f, x: f(x)), ("_polygamma", lambda f, x: f(3, np.abs(x))),
       ("_factorial", lambda f, x: f(x)), ("_binomial", lambda f, x: f(x + 12.0, x))]


@pytest.mark.parametrize("name, call", ALL, ids=[name for name, _ in ALL])
def test_shape_dtype_and_scalars(name, call):
    helper = getattr(runtime, name)
    x = np.array([[0.25, 1.5, 3.0], [7.5, 12.0, 30.0]])
    y = call(helper, x)
    assert y.shape == (2, 3) and y.dtype == np.float64
    y32 = call(helper, x.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y.astype(np.float32), rtol=1e-6)
    for scalar in (1.5, np.float64(1.5), np.array(1.5)):
        value = call(helper, scalar)
        assert type(value) is np.float64 and value == y[0, 1]
    assert call(helper, np.float32(1.5)).dtype == np.float32
    assert call(helper, np.array([[1], [3]])).dtype == np.float64  # integers give float64
    assert call(helper, np.zeros((0, 4))).shape == (0, 4)
    with_nan = call(helper, np.array([np.nan, 1.5]))
    assert np.isnan(with_nan[0]) and with_nan[1] == y[0, 1]


@pytest.mark.parametrize("name, call", ALL, ids=[name for name, _ in ALL])
def test_no_floating_point_warnings(name, call):
    helper = getattr(runtime, name)
    nasty = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, -2.0, -0.5, 1e-320, 1e-300,
                      1e300, 1.7e308, -1e300, 171.7, -171.5, -200.5, 1e6])
    with np.errstate(over="ignore"):
        nasty32 = nasty.astype(np.float32)  # 1.7e308 becomes inf
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        call(helper, nasty)
        call(helper, nasty32)
        helper(*(() if name not in ("_polygamma", "_binomial") else (nasty,)), nasty)


def closure(name):
    """name and every helper it needs, dependencies first."""
    order = []
    for dependency in NEEDS[name]:
        order += [n for n in closure(dependency) if n not in order]
    return order + [name]


@pytest.mark.parametrize("name, call", ALL, ids=[name for name, _ in ALL])
def test_verbatim_copies_work(name, call):
    namespace = {"np": np}
    for needed in closure(name):
        exec(inspect.getsource(getattr(runtime, needed)), namespace)  # noqa: S102 - what a generated module does
    x = np.concatenate([NEGATIVE[:50], POSITIVE[::7], [0.0, -0.0, np.inf, np.nan, -3.0]])
    np.testing.assert_array_equal(call(namespace[name], x), call(getattr(runtime, name), x))


def test_helpers_name_only_np_and_their_needs():
    helpers = {n for n, v in vars(runtime).items() if inspect.isfunction(v)}
    assert helpers == set(NEEDS) and all(n.startswith("_") for n in helpers)
    # no module-level constants for a copy to miss: only np, NEEDS and the helpers
    assert {n for n in vars(runtime) if not n.startswith("__")} == helpers | {"np", "NEEDS"}
    for name in helpers:
        code = getattr(runtime, name).__code__
        called = {n for n in code.co_names if n in vars(runtime)}
        assert called == {"np", *NEEDS[name]}, name
        nested = [c.co_name for c in code.co_consts if inspect.iscode(c)]
        assert not code.co_freevars and all(n.startswith("<") for n in nested), name  # no closures
