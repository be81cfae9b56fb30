"""Kinks, safe branches, stable forms, hostile names and bad arguments."""

import keyword
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import sympy as sp

import backpropc as bp
from backpropc.explain import explain

x, y, a, b = sp.symbols("x y a b")


def module(loss, wrt, **kw):
    return bp.compile(loss, wrt=wrt, name="m", **kw).load()


@pytest.fixture(autouse=True)
def warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
            yield


# ---- kinks (docs/nonsmooth.md) -------------------------------------------------------------
RELU_FORMS = [  # (form, derivative at 0)
    (bp.relu(x), 0.0),
    (sp.Max(0, x), 0.0),
    (sp.Piecewise((x, x > 0), (0, True)), 0.0),
    (x * sp.Heaviside(x), 0.5),        # Heaviside(0) = 1/2 in SymPy; Heaviside(x, 0) gives 0
    ((x + sp.Abs(x)) / 2, 0.5),        # (1 + sign(0))/2
]


@pytest.mark.parametrize("form, at_zero", RELU_FORMS, ids=[str(f[0]) for f in RELU_FORMS])
def test_ways_of_writing_relu_at_and_around_zero(form, at_zero):
    m = module(form, [x])
    assert m.grad(0.0)[0] == at_zero
    assert m.grad(-1.0)[0] == 0.0 and m.grad(2.0)[0] == 1.0
    assert np.array_equal(m.forward(np.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 2.0])


def test_max_ties_split_evenly_between_variables_and_give_nothing_to_a_constant():
    m = module(sp.Max(x, y), [x, y])
    assert m.grad(1.0, 1.0) == (0.5, 0.5) and m.grad(2.0, 1.0) == (1.0, 0.0)
    m = module(sp.Max(x, y, a), [x, y, a])
    assert m.grad(1.0, 1.0, 1.0) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    m = module(sp.Min(x, 2), [x])
    assert m.grad(2.0)[0] == 0.0 and m.grad(1.0)[0] == 1.0


def test_zero_derivatives_of_step_functions():
    m = module(sp.sign(x) + sp.floor(x) + sp.ceiling(x) + sp.Heaviside(x) + y * x, [x])
    assert m.grad(0.0, y=3.0)[0] == 3.0 and m.grad(1.5, y=3.0)[0] == 3.0


def test_mod_and_frac_have_derivative_one_in_their_argument_across_the_jumps():
    m = module(sp.Mod(3 * x, 2) + sp.frac(x) * y, [x, y])
    for at in (0.0, 1.0, 2 / 3, 0.25, -0.5):  # 0, 1, 2/3, -0.5 sit on a jump of one or both
        assert m.grad(at, 2.0) == (3.0 + 2.0, at - np.floor(at))
    m = module(sp.Mod(x, y), [x, y])  # x - y*floor(x/y): d/dy = -floor(x/y)
    assert m.grad(7.0, 2.0) == (1.0, -3.0) and m.grad(-1.0, 2.0) == (1.0, 1.0)


def test_sinc_at_zero_has_value_one_and_derivative_zero_without_a_warning():
    m = module(sp.sinc(x) * y, [x, y])
    value, grads = m.value_and_grad(np.array([0.0, 1.5]), np.array([2.0, 2.0]))
    assert value == pytest.approx(2 + 2 * np.sin(1.5) / 1.5, rel=1e-15)
    assert grads[0][0] == 0.0  # sinc is even
    assert grads[0][1] == pytest.approx(2 * (np.cos(1.5) - np.sin(1.5) / 1.5) / 1.5, rel=1e-14)


# ---- untaken branches are safe -------------------------------------------------------------
@pytest.mark.parametrize("branch, point", [
    (sp.log(x), 0.0), (sp.log(x), -1.0), (sp.sqrt(x), -4.0), (1 / x, 0.0), (x ** -2, 0.0),
    (sp.exp(x) * 0 + sp.exp(800 * x), 2.0), (sp.acosh(x), 0.0), (sp.asin(x), 3.0), (x ** y, -2.0),
])
def test_untaken_branch_gives_no_nan_inf_or_warning(branch, point):
    m = module(sp.Piecewise((branch, (x > 0) & (x < 1)), (3 * x, True)), [x])
    value, (g,) = m.value_and_grad(np.array([point]), **({"y": 0.5} if "y" in m.ARGS else {}))
    assert value == 3 * point and g == 3.0


def test_branch_taken_is_still_exact():
    m = module(sp.Piecewise((sp.log(x), x > 0), (0, True)), [x])
    assert m.grad(0.5)[0] == pytest.approx(2.0) and m.grad(0.0)[0] == 0.0


# ---- stable forms --------------------------------------------------------------------------
@pytest.mark.parametrize("written, at, value, slope", [
    (1 / (1 + sp.exp(-x)), -800.0, 0.0, 0.0),
    (1 / (1 + sp.exp(-x)), 800.0, 1.0, 0.0),
    (sp.log(1 + sp.exp(x)), 800.0, 800.0, 1.0),
    (sp.log(1 + sp.exp(x)), -800.0, 0.0, 0.0),
    (sp.log(sp.exp(x) + sp.exp(2 * x)), 800.0, 1600.0, 2.0),
    (sp.log(sp.exp(x) + sp.exp(2 * x)), -800.0, -800.0, 1.0),
    (sp.log(1 + x), 1e-20, 1e-20, 1.0),
    (sp.exp(x) - 1, 1e-20, 1e-20, 1.0),
])
def test_unstable_forms_are_rewritten_and_survive_extreme_arguments(written, at, value, slope):
    m = module(written, [x])
    v, (g,) = m.value_and_grad(at)
    assert v == pytest.approx(value, abs=1e-300) and g == pytest.approx(slope, abs=1e-300)


def test_rewrites_are_reported_and_can_be_turned_off():
    loss = sp.log(1 + sp.exp(x)) * y
    assert "log(1 + exp(x)) -> softplus(x)" in explain(bp.compile(loss, wrt=[x], name="m"))
    plain = bp.compile(loss, wrt=[x], name="m", rewrite=False)
    assert "np.logaddexp" not in plain.source and "np.log(" in plain.source
    assert "Rewritten" not in explain(plain)


def test_stable_functions_at_extreme_arguments():
    m = module(bp.sigmoid(x) + bp.softplus(-x) + bp.logsumexp(x, -x, 2 * x), [x])
    for at in (-800.0, 800.0):
        v, (g,) = m.value_and_grad(at)
        assert np.isfinite(v) and np.isfinite(g)


# ---- hostile names -------------------------------------------------------------------------
HOSTILE = ["lambda", "print", "np", "__class__", "x y", "1abc", "α", "x_bar", "x", "c0", "shape",
           "a.b", "a_b", "__import__('os').system('touch PWNED')", '"""', "L", "L_bar", "_sum_like",
           "value_and_grad", "ARGS", "None", "ﬁ", "fi"]


def test_hostile_names_are_mangled_safely(tmp_path):
    symbols = [sp.Symbol(n) for n in HOSTILE]
    loss = sum((k + 1) * s ** 2 for k, s in enumerate(symbols))
    compiled = bp.compile(loss, wrt=symbols, name='evil"""\nimport os', inputs=[])
    names = compiled.args
    assert len(set(names)) == len(names) and all(n.isidentifier() for n in names)
    assert not any(keyword.iskeyword(n) for n in names) and "np" not in names
    path = compiled.write(tmp_path / "evil_grad.py")
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not (tmp_path / "PWNED").exists() and not os.path.exists("PWNED")
    m = compiled.load()
    point = {n: float(k) for k, n in enumerate(names)}
    grads = m.grad(**point)
    assert grads == pytest.approx(tuple(2 * (k + 1) * k for k in range(len(names))))
    if shutil.which("ruff") or True:
        ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "-"],
                              input=compiled.source, capture_output=True, text=True)
        assert ruff.returncode == 0, ruff.stdout


def test_mangling_is_deterministic():
    symbols = [sp.Symbol(n) for n in HOSTILE]
    loss = sum(s ** 2 for s in symbols)
    assert bp.compile(loss, wrt=symbols, name="m").source == bp.compile(loss, wrt=symbols, name="m").source


# ---- bad arguments to generated functions --------------------------------------------------
@pytest.fixture
def logistic():
    w, t = sp.symbols("w t")
    return module((bp.sigmoid(w * x + b) - t) ** 2, [w, b])


def test_wrong_arguments_name_args(logistic):
    with pytest.raises(TypeError, match="w, b, t, x"):
        logistic.grad(1.0, 2.0)
    with pytest.raises(TypeError, match="w, b, t, x"):
        logistic.grad(1.0, 2.0, 3.0, 4.0, q=1.0)


def test_shapes_that_do_not_broadcast_are_named(logistic):
    with pytest.raises(ValueError, match=r"w \(3,\), b \(\), t \(\), x \(4,\)"):
        logistic.grad(np.ones(3), 0.0, 1.0, np.ones(4))


def test_integer_inputs_are_promoted_to_float64(logistic):
    value, grads = logistic.value_and_grad(1, 0, np.array([0, 1]), np.array([1, 2]))
    assert np.asarray(value).dtype == np.float64 and all(np.asarray(g).dtype == np.float64 for g in grads)


def test_nan_inputs_propagate(logistic):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value, (gw, gb) = logistic.value_and_grad(0.5, 0.1, 1.0, np.array([np.nan, 1.0]))
    assert np.isnan(value) and np.isnan(gw) and np.isnan(gb)


def test_if_then_else_conditions_compile():
    """SymPy writes some nested conditions as ITE (found by fuzzing: it used to be refused)."""
    cond = sp.ITE(x > 0, y > 0, y < 0)
    m = module(sp.Piecewise((x ** 2 * y, cond), (x * y, True)), [x])
    grad = m.grad(x=np.array([1.0, 1.0, -1.0]), y=np.array([2.0, -2.0, -2.0]))[0]
    assert np.array_equal(grad, [4.0, -2.0, 4.0])  # 2xy where the condition holds, else y
