"""The erf/erfc source pasted into generated modules: accuracy vs mpmath, dtypes, edge values."""

import ast

import mpmath
import numpy as np
import pytest

from backpropc import runtime

# What a generated module does: `import numpy as np`, then the copied source.
ERF_SOURCE = runtime.source(["_erf"])
NAMESPACE = {"np": np}
exec(ERF_SOURCE, NAMESPACE)
erf, erfc = NAMESPACE["_erf"], NAMESPACE["_erfc"]

pytestmark = pytest.mark.filterwarnings("error")  # any RuntimeWarning fails the test

RNG = np.random.default_rng(20240607)
TINY = np.geomspace(1e-300, 0.5, 400)
MAX = np.finfo(np.float64).max


def _reference(fn, xs):
    with mpmath.workdps(30):
        return np.array([float(fn(mpmath.mpf(float(v)))) for v in xs])


def _max_rel_err(got, want):
    assert got.dtype == np.float64 and np.all(np.isfinite(got))
    zero = want == 0
    assert np.all(got[zero] == 0)
    return float(np.max(np.abs(got[~zero] - want[~zero]) / np.abs(want[~zero])))


def _names(tree, ctx):
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}


def test_source_defines_exactly_erf_and_erfc_using_only_np():
    tree = ast.parse(ERF_SOURCE)
    assert [type(n) for n in tree.body] == [ast.FunctionDef, ast.FunctionDef]
    assert {n.name for n in tree.body} == {"_erf", "_erfc"}
    assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree))
    local = _names(tree, ast.Store) | {arg.arg for f in tree.body for arg in f.args.args}
    assert _names(tree, ast.Load) - local == {"np", "_erfc"}  # no math, scipy or builtins
    assert set(NAMESPACE) - {"np", "__builtins__"} == {"_erf", "_erfc"}


def test_only_loops_are_over_literal_coefficients():
    """A fixed number of whole-array operations: no element loops, np.vectorize or frompyfunc."""
    tree = ast.parse(ERF_SOURCE)
    for func in tree.body:
        assert not any(isinstance(n, (ast.While, ast.comprehension)) for n in ast.walk(func))
        loops = [n for n in ast.walk(func) if isinstance(n, ast.For)]
        assert [ast.unparse(loop.iter) for loop in loops] == ["coeffs[1:]"], func.name
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not attrs & {"vectorize", "frompyfunc", "nditer", "ndindex", "tolist", "item"}


def _literal_coeffs(func_name):
    (func,) = [n for n in ast.parse(ERF_SOURCE).body if n.name == func_name]
    (assign,) = [
        n
        for n in ast.walk(func)
        if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "coeffs"
    ]
    return ast.literal_eval(assign.value)


def test_coefficients_are_reproduced_by_fit():
    fit = runtime.erf.fit()
    for name, func_name in [("erf", "_erf"), ("erfc", "_erfc")]:
        coeffs, err = fit[name]
        assert _literal_coeffs(func_name) == coeffs
        assert err < 3e-17  # the polynomials themselves are far below double rounding


def test_erf_accuracy_against_mpmath():
    xs = np.concatenate(
        [np.linspace(-6, 6, 2401), RNG.uniform(-6, 6, 1000), TINY, -TINY, [1e-10, -1e-10]]
    )
    assert _max_rel_err(erf(xs), _reference(mpmath.erf, xs)) <= 2e-15


def test_erfc_accuracy_against_mpmath():
    xs = np.concatenate([np.linspace(-6, 26, 3201), RNG.uniform(-6, 26, 1000), TINY, -TINY])
    err = _max_rel_err(erfc(xs), _reference(mpmath.erfc, xs))
    assert err <= 1e-13  # required
    assert err <= 2e-15  # promised by backpropc/runtime/erf.py; 1e-13 would let exp(-x*x) lose digits


def test_erfc_underflows_gracefully_past_26():
    xs = np.linspace(26, 28, 401)
    got, want = erfc(xs), _reference(mpmath.erfc, xs)
    assert np.all(np.abs(got - want) <= 1e-13 * want + 1e-322)  # subnormals: absolute error
    assert np.all(np.diff(got) <= 0) and got[-1] == 0.0


def test_saturation():
    big = np.array([6.0, 6.5, 10.0, 27.5, 1e5, 1e154, 1e300, MAX])
    assert np.all(erf(big) == 1.0) and np.all(erf(-big) == -1.0)
    assert np.all(erfc(-big) == 2.0)
    assert np.all(erfc(big[big >= 27.5]) == 0.0)


def test_infinities_nan_and_signed_zero():
    x = np.array([np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0])
    e, c = erf(x), erfc(x)
    np.testing.assert_array_equal(e[:2], [1.0, -1.0])
    np.testing.assert_array_equal(c[:2], [0.0, 2.0])
    assert np.all(np.isnan(e[2:4])) and np.all(np.isnan(c[2:4]))
    np.testing.assert_array_equal(np.signbit(e[4:]), [False, True])  # erf(-0.0) = -0.0
    np.testing.assert_array_equal(c[4:], [1.0, 1.0])


def test_no_floating_point_errors_even_when_numpy_raises():
    x = np.array([0.0, 5e-324, 1e-300, 1e-160, 0.5, 26.6, 26.64, 27.0, 27.5, 40.0, 1e154, 1e300])
    x = np.concatenate([x, [MAX, np.inf, np.nan]])
    x = np.concatenate([x, -x])
    x32 = np.concatenate([x[np.abs(x) < 1e38], [3e38, 1.5e-45]]).astype(np.float32)
    with np.errstate(all="raise"):
        for fn in (erf, erfc):
            fn(x), fn(x32), [fn(v) for v in x]


def test_symmetry():
    x = np.concatenate([np.linspace(0, 7, 1001), TINY, [np.inf]])
    np.testing.assert_array_equal(erf(-x), -erf(x))
    assert np.all(np.signbit(erf(-x)) != np.signbit(erf(x)))
    np.testing.assert_array_equal(erfc(-x), 2.0 - erfc(x))


@pytest.mark.parametrize("fn", [erf, erfc], ids=["erf", "erfc"])
def test_dtypes(fn):
    x64 = np.linspace(-4, 4, 101)
    assert fn(x64).dtype == np.float64
    x32 = x64.astype(np.float32)
    got32 = fn(x32)
    assert got32.dtype == np.float32  # computed in float64, rounded once
    np.testing.assert_array_equal(got32, fn(x32.astype(np.float64)).astype(np.float32))
    assert fn(x64.astype(np.float16)).dtype == np.float16
    ints = np.arange(0, 6)
    for int_dtype in (np.int8, np.int32, np.int64, np.uint16, np.bool_):
        got = fn(ints.astype(int_dtype))
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, fn(ints.astype(int_dtype).astype(np.float64)))


@pytest.mark.parametrize("fn", [erf, erfc], ids=["erf", "erfc"])
def test_python_scalars_and_0d_give_numpy_scalars(fn):
    cases = [
        (0.3, np.float64),
        (3, np.float64),
        (float("nan"), np.float64),
        (np.array(0.3), np.float64),
        (np.float64(30.0), np.float64),
        (np.float32(0.3), np.float32),
        (np.array(-2.5, np.float32), np.float32),
    ]
    for value, dtype in cases:
        got = fn(value)
        assert type(got) is dtype, value
        np.testing.assert_array_equal(got, fn(np.array([value], dtype=dtype))[0])
    assert fn(0.3) == fn(np.array([0.1, 0.3]))[1]


@pytest.mark.parametrize("fn", [erf, erfc], ids=["erf", "erfc"])
def test_any_shape_and_layout_and_input_untouched(fn):
    x = RNG.uniform(-8, 8, (3, 4, 5))
    keep = x.copy()
    want = fn(x.ravel()).reshape(3, 4, 5)
    np.testing.assert_array_equal(fn(x), want)
    np.testing.assert_array_equal(fn(x.T), want.T)  # non-contiguous input
    np.testing.assert_array_equal(fn(x[:, ::2]), want[:, ::2])
    np.testing.assert_array_equal(fn(x.tolist()), want)
    assert fn(np.empty((2, 0))).shape == (2, 0)
    np.testing.assert_array_equal(x, keep)
