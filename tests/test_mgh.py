"""The Moré-Garbow-Hillstrom problems of benchmarks/mgh.py against the paper's published values,
and backpropc's gradient of each against sympy.diff and central finite differences."""

import functools
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import least_squares

import backpropc as bp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import mgh

PROBLEMS = mgh.problems()
IDS = [f"{p.number}-{p.name}" for p in PROBLEMS]


@functools.cache
def sympy_forms(number):
    """The SymPy objective and residuals of problem `number`, printed by lambdify."""
    p = PROBLEMS[number - 1]
    xs, rs = p.residual_expressions()
    return sp.lambdify(xs, sp.Add(*[r ** 2 for r in rs])), sp.lambdify(xs, rs)


def sympy_value(p, point):
    return float(sympy_forms(p.number)[0](*point))


def test_the_35_problems_in_order():
    assert [p.number for p in PROBLEMS] == list(range(1, 36))
    for p in PROBLEMS:
        assert len(p.x0) == p.n
        xs, rs = p.residual_expressions()
        assert len(rs) == p.m and len(xs) == p.n
        assert 2 <= p.n <= 11


@pytest.mark.parametrize("p", PROBLEMS, ids=IDS)
def test_sympy_and_array_forms_agree(p):
    rng = np.random.default_rng(p.number)
    # at x0, and near it (the forms must agree off the published points too)
    for point in (np.array(p.x0), np.array(p.x0) + rng.uniform(-0.1, 0.1, p.n)):
        expected = sympy_value(p, point)
        assert math.isclose(float(p.function()(point)), expected, rel_tol=1e-12, abs_tol=1e-300)
        got = [float(r) for r in p.residual_function()(point)]
        assert got == pytest.approx(np.array(sympy_forms(p.number)[1](*point), dtype=float), rel=1e-12, abs=1e-12)


# f at the standard starting point, worked out by hand from the definitions (Rosenbrock's 24.2
# is the classic check; the others follow the same way).
F_AT_X0 = {1: 24.2, 2: 400.5, 5: 14.203125, 7: 2500.0, 13: 215.0, 14: 19192.0, 20: 30.0, 21: 121.0,
           22: 430.0, 32: 50.0, 4: (1 - 1e6) ** 2 + (1 - 2e-6) ** 2 + 1,
           3: 1 + (math.exp(-1) - 0.0001) ** 2, 30: 21.0, 31: 360.0}


@pytest.mark.parametrize("number, expected", sorted(F_AT_X0.items()))
def test_value_at_the_starting_point(number, expected):
    p = PROBLEMS[number - 1]
    assert math.isclose(sympy_value(p, p.x0), expected, rel_tol=1e-12)


@pytest.mark.parametrize("p", [p for p in PROBLEMS if p.x_min is not None], ids=lambda p: p.name)
def test_published_minimum_at_the_published_minimiser(p):
    assert sympy_value(p, p.x_min) == pytest.approx(p.f_min, rel=1e-12, abs=1e-20)


# Minima the paper reports that a local method can reach from x0 instead of the global one.
OTHER_PUBLISHED_MINIMA = {2: 48.9842, 26: 2.79506e-5}


@pytest.mark.parametrize("p", PROBLEMS, ids=IDS)
def test_least_squares_from_x0_reaches_a_published_minimum(p):
    """A solver from the standard x0 ends at f_min (to the paper's 6 digits), or at the other local
    minimum the paper lists for that problem."""
    residuals = p.residual_function()
    result = least_squares(lambda t: np.array(residuals(t), dtype=float), np.array(p.x0),
                           xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=20000)
    found = float(np.sum(result.fun ** 2))
    candidates = [p.f_min] + ([OTHER_PUBLISHED_MINIMA[p.number]] if p.number in OTHER_PUBLISHED_MINIMA else [])
    assert any(math.isclose(found, f, rel_tol=2e-5, abs_tol=1e-12) for f in candidates), (found, candidates)


@pytest.mark.parametrize("p", PROBLEMS, ids=IDS)
def test_compiled_gradient_matches_sympy_diff_and_finite_differences(p):
    with warnings.catch_warnings():
        # problem 34's first and last parameters are its zero columns
        warnings.simplefilter("ignore", bp.errors.UnusedWrtWarning)
        module = bp.compile(p.model()).load()
    rng = np.random.default_rng(p.number)
    point = np.array(p.x0) + rng.uniform(-0.05, 0.05, p.n)
    value, grads = module.value_and_grad(*[float(v) for v in point])
    xs, rs = p.residual_expressions()
    # d f / d x_j = sum_i 2 r_i d r_i / d x_j, each residual differentiated by sympy.diff
    exact_f = sp.lambdify(xs, [sp.Add(*[r ** 2 for r in rs])] +
                          [sp.Add(*[2 * r * sp.diff(r, x) for r in rs]) for x in xs])
    f_value, *exact = exact_f(*point)
    assert math.isclose(float(value), f_value, rel_tol=1e-10)
    exact = np.array(exact, dtype=float)
    got = np.array([float(g) for g in grads])
    scale = max(np.max(np.abs(exact)), 1.0)
    assert np.max(np.abs(got - exact)) <= 1e-9 * scale
    fun = p.function()
    for i in range(p.n):
        h = 1e-6 * max(1.0, abs(point[i]))
        up, down = point.copy(), point.copy()
        up[i] += h
        down[i] -= h
        central = (fun(up) - fun(down)) / (2 * h)
        assert abs(got[i] - central) <= 1e-4 * max(abs(central), scale), (i, got[i], central)


def test_extended_rosenbrock_at_any_even_size():
    p = mgh.extended_rosenbrock_problem(100)
    assert p.n == p.m == 100
    assert math.isclose(float(p.function()(np.array(p.x0))), 24.2 * 50, rel_tol=1e-12)
