"""The inverse functions pasted into generated modules, erfinv and Lambert's W: accuracy against
mpmath, edge values, dtypes, and gradients through them against sympy.diff and finite differences."""

import mpmath
import numpy as np
import pytest
import sympy as sp

import backpropc as bp
from backpropc.errors import UnsupportedFunctionError
from backpropc import runtime

NAMESPACE = {"np": np}
exec(runtime.source(["_erfinv", "_lambertw"]), NAMESPACE)  # what a generated module holds
erfinv, lambertw = NAMESPACE["_erfinv"], NAMESPACE["_lambertw"]
RNG = np.random.default_rng(20261202)

pytestmark = pytest.mark.filterwarnings("error")


def _relative_errors(fn, reference, xs):
    got = fn(xs)
    with mpmath.workdps(40):
        want = np.array([float(reference(mpmath.mpf(float(v)))) for v in xs])
    assert got.dtype == np.float64 and np.all(np.isfinite(got))
    scale = np.where(want == 0, 1.0, np.abs(want))
    return float(np.max(np.abs(got - want) / scale))


def test_erfinv_is_accurate_to_a_few_ulps_over_the_whole_interval():
    ys = np.concatenate([RNG.uniform(-1, 1, 3000), 1 - np.geomspace(1e-16, 0.5, 300),
                         -np.geomspace(1e-300, 0.5, 300), [0.0, 0.5, -0.5]])
    assert _relative_errors(erfinv, mpmath.erfinv, ys) < 2e-15


def test_lambertw_is_accurate_to_a_few_ulps_and_near_the_branch_point_to_its_conditioning():
    xs = np.concatenate([RNG.uniform(-0.35, 10, 3000), np.geomspace(1e-300, 1e308, 400),
                         -np.geomspace(1e-300, 0.35, 300), [0.0, 1.0, np.e]])
    assert _relative_errors(lambertw, lambda x: mpmath.re(mpmath.lambertw(x)), xs) < 2e-15
    near = -1 / np.e + np.geomspace(1e-12, 0.02, 200)  # W's condition number grows like 1/sqrt(x + 1/e)
    assert _relative_errors(lambertw, lambda x: mpmath.re(mpmath.lambertw(x)), near) < 1e-9
    assert lambertw(-1 / np.e) == -1.0 and lambertw(np.e) == pytest.approx(1.0, rel=1e-16)


def test_edge_values_without_a_floating_point_warning():
    with np.errstate(all="raise"):
        assert erfinv(1.0) == np.inf and erfinv(-1.0) == -np.inf and erfinv(0.0) == 0.0
        assert np.isnan(erfinv(1.5)) and np.isnan(erfinv(np.nan))
        assert np.signbit(erfinv(-0.0))
        assert lambertw(np.inf) == np.inf and lambertw(0.0) == 0.0
        assert np.isnan(lambertw(-0.5)) and np.isnan(lambertw(np.nan))


@pytest.mark.parametrize("fn", [erfinv, lambertw], ids=["erfinv", "lambertw"])
def test_float32_stays_float32_and_scalars_give_numpy_scalars(fn):
    assert fn(np.float32(0.25)).dtype == np.float32
    assert fn(np.array([0.25, 0.5], dtype=np.float32)).dtype == np.float32
    assert type(fn(0.25)) is np.float64 and fn(np.array([[0.1, 0.2]])).shape == (1, 2)


@pytest.mark.parametrize("inner, at", [
    (sp.erfinv(sp.tanh(sp.Symbol("w") * sp.Symbol("x")) / 2), (0.8, [0.3, -0.7, 1.9])),
    (sp.LambertW(sp.Symbol("w") * sp.Symbol("x") + sp.Symbol("w") ** 2), (0.6, [0.3, -0.2, 2.5])),
], ids=["erfinv", "LambertW"])
def test_gradients_and_hvps_through_them_match_sympy_diff_and_finite_differences(inner, at):
    w, x = sp.Symbol("w"), sp.Symbol("x")
    loss = inner * (x + 2) + sp.exp(inner) / 3
    module = bp.compile(bp.Model("inverse", loss=loss, wrt=[w], inputs=[x]), derivatives=("grad", "hvp")).load()
    W, X = at[0], np.array(at[1])
    value, (g,) = module.value_and_grad(W, X)
    _, _, (hv,) = module.hvp(W, X, 1.0)

    def exact(order):
        return sum(float(sp.diff(loss, w, order).subs({w: W, x: v}).evalf(30)) for v in X)
    assert value == pytest.approx(exact(0), rel=1e-14)
    assert g == pytest.approx(exact(1), rel=1e-13) and hv == pytest.approx(exact(2), rel=1e-12)
    h = 1e-6
    assert g == pytest.approx((module.value_and_grad(W + h, X)[0] - module.value_and_grad(W - h, X)[0]) / (2 * h),
                              rel=1e-7)


def test_another_branch_of_lambertw_is_refused_with_the_fix():
    w = sp.Symbol("w")
    with pytest.raises(UnsupportedFunctionError, match=r"LambertW with 2 arguments .*write LambertW\(x\)"):
        bp.compile(sp.LambertW(w, -1), wrt=[w])
