"""The public API and the generated module's contract."""

import ast
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import sympy as sp
from oracle import assert_close, sympy_gradient

import backpropc as bp
from backpropc.errors import ModelError, NonRealConstantError, NonScalarLossError, UnusedWrtWarning

w, b, x, t = sp.symbols("w b x t")
z, y, L = sp.symbols("z y L")


def logistic(inputs=(x, t)):
    return bp.Model(name="logistic", steps=[(z, w * x + b), (y, bp.sigmoid(z)), (L, (y - t) ** 2 / 2)],
                    loss=L, wrt=[w, b], inputs=list(inputs))


@pytest.fixture(scope="module")
def module():
    return bp.compile(logistic()).load()


def test_module_contents(module):
    assert module.ARGS == ("w", "b", "x", "t")
    assert module.WRT == ("w", "b")
    compiled = bp.compile(logistic())
    tree = ast.parse(compiled.source)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    # NumPy, and the standard library's math for calls on Python floats: nothing else
    assert [alias.name for n in imports for alias in n.names] == ["math", "numpy"]
    doc = ast.get_docstring(tree)
    for text in ("logistic", "z = b + w*x", "y = sigmoid(z)", "w, b", bp.__version__, "do not edit"):
        assert text in doc
    assert "z_bar = " in compiled.source and "# from y = sigmoid(z)" in compiled.source


def test_positional_and_keyword_arguments_agree(module):
    xs, ts = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.0, 1.0])
    v1, g1 = module.value_and_grad(0.3, 0.1, xs, ts)
    v2, g2 = module.value_and_grad(t=ts, x=xs, b=0.1, w=0.3)
    assert v1 == v2 and g1 == g2
    assert module.grad(0.3, 0.1, xs, ts) == g1
    assert np.allclose(module.forward(0.3, 0.1, xs, ts).sum(), v1)


def test_objective_is_the_sum_over_the_batch(module):
    xs, ts = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.0, 1.0])
    value, grads = module.value_and_grad(0.3, 0.1, xs, ts)
    singles = [module.value_and_grad(0.3, 0.1, xi, ti) for xi, ti in zip(xs, ts)]
    assert value == pytest.approx(sum(v for v, _ in singles))
    assert grads[0] == pytest.approx(sum(g[0] for _, g in singles))


def test_mean_reduction():
    module = bp.compile(logistic(), reduction="mean").load()
    total = bp.compile(logistic()).load()
    xs, ts = np.linspace(-1, 1, 4), np.ones(4)
    v, g = module.value_and_grad(0.3, 0.1, xs, ts)
    vs, gs = total.value_and_grad(0.3, 0.1, xs, ts)
    assert v == pytest.approx(vs / 4) and g[0] == pytest.approx(gs[0] / 4)


def test_parameter_arrays_get_their_own_shape(module):
    """Broadcasting: a (3, 1) parameter against (1, 4) data gives a (3, 1) gradient."""
    ws = np.array([[0.1], [0.2], [0.3]])
    xs, ts = np.linspace(-1, 1, 4)[None, :], np.ones((1, 4))
    _, (gw, gb) = module.value_and_grad(ws, 0.5, xs, ts)
    assert gw.shape == (3, 1) and np.ndim(gb) == 0
    for i in range(3):
        _, (gi, _) = module.value_and_grad(ws[i, 0], 0.5, xs, ts)
        assert gw[i, 0] == pytest.approx(gi)


def test_constant_gradient_entry_keeps_its_shape_and_counts_the_batch():
    u = sp.Symbol("u")
    module = bp.compile(w + b * u, wrt=[w, b], inputs=[u], name="affine").load()
    gw, gb = module.grad(w=np.zeros((2, 1)), b=1.0, u=np.ones((1, 3)))
    assert gw.shape == (2, 1) and np.all(gw == 3.0)  # each w[i] is used by 3 examples
    assert gb == pytest.approx(6.0)


def test_float32_stays_float32_and_float64_stays_float64(module):
    for dtype in (np.float32, np.float64):
        xs, ts = np.ones(3, dtype), np.zeros(3, dtype)
        v, (gw, gb) = module.value_and_grad(dtype(0.3), dtype(0.1), xs, ts)
        assert np.asarray(v).dtype == dtype and gw.dtype == dtype and gb.dtype == dtype


@pytest.mark.parametrize("reroll", [True, False])
def test_python_floats_beside_float32_data_compute_in_float32(reroll):
    """Parameters given as Python floats are weak, as in NumPy's own arithmetic: with float32
    data the result is float32 even where the model applies a function to a parameter alone
    (np.cos of a Python float is a float64) or stacks the parameters into one vector (a
    re-rolled model); float64 data, or a float64 parameter array, keeps float64."""
    xs, d = sp.symbols("x0:80"), sp.Symbol("d")
    loss = sp.Add(*[(xs[k] * d - xs[k + 1]) ** 2 + sp.cos(xs[k]) for k in range(79)])
    compiled = bp.compile(bp.Model("weak", loss=loss, wrt=list(xs), inputs=[d]), reroll=reroll)
    assert ("_lanes(" in compiled.source) == reroll
    module = compiled.load()
    params = [0.01 * k for k in range(80)]
    for dtype in (np.float32, np.float64):
        data = np.linspace(0.5, 1.0, 7, dtype=dtype)
        value, grads = module.value_and_grad(*params, data)
        assert np.asarray(value).dtype == dtype and all(np.asarray(g).dtype == dtype for g in grads)
        assert module.forward(*params, data).dtype == dtype
    strong = module.value_and_grad(*params[:-1], np.full(7, 0.79), np.ones(7, np.float32))[0]
    assert np.asarray(strong).dtype == np.float64
    exact = module.value_and_grad(*params, np.linspace(0.5, 1.0, 7))[0]
    assert np.isclose(module.value_and_grad(*params, np.linspace(0.5, 1.0, 7, dtype=np.float32))[0], exact, rtol=1e-5)


def test_wrt_may_hold_data_symbols():
    """Gradient with respect to an input, e.g. forces = -dE/dx."""
    r = sp.Symbol("r")
    module = bp.compile(1 / r ** 12 - 2 / r ** 6, wrt=[r], name="lennard_jones").load()
    rs = np.array([0.9, 1.0, 1.3])
    g = module.grad(r=rs)[0]
    assert g.shape == (3,) and np.allclose(g, -12 / rs ** 13 + 12 / rs ** 7)


def test_write_is_atomic_and_load_imports(tmp_path):
    compiled = bp.compile(logistic())
    out = compiled.write(tmp_path / "logistic_grad.py")
    assert out.read_text() == compiled.source
    assert list(tmp_path.iterdir()) == [out]  # no temporary left behind
    run = subprocess.run([sys.executable, str(out)], capture_output=True, text=True)
    assert run.returncode == 0 and "max relative error" in run.stdout


def test_write_into_missing_folder_fails_without_partial_file(tmp_path):
    with pytest.raises(OSError):
        bp.compile(logistic()).write(tmp_path / "missing" / "out.py")
    assert not (tmp_path / "missing").exists()


def test_compile_an_expression_with_default_inputs():
    loss = (bp.sigmoid(w * x + b) - t) ** 2 / 2
    compiled = bp.compile(loss, wrt=[w, b], name="inline")
    assert compiled.args == ("w", "b", "t", "x")  # inputs default to the other symbols, by name
    point = {"w": 0.3, "b": -0.2, "x": np.array([1.0, 2.0]), "t": np.array([0.0, 1.0])}
    grads = compiled.load().grad(**point)
    exact = sympy_gradient(bp.Model("inline", [], loss, [w, b], [t, x]), [w, b, t, x], point)
    assert_close(grads, exact, 1e-12)


def test_steps_as_equations_are_accepted():
    model = bp.Model("eq", [sp.Eq(z, w * x), sp.Eq(L, z ** 2)], L, [w], [x])
    assert bp.compile(model).load().grad(w=2.0, x=3.0)[0] == pytest.approx(2 * 6 * 3)


def test_generated_code_passes_ruff():
    ruff = shutil.which("ruff")
    if ruff is None:
        ruff = [sys.executable, "-m", "ruff"]
    else:
        ruff = [ruff]
    models = [logistic(), logistic(inputs=[x, t, sp.Symbol("unused")]),
              bp.Model("kinks", [], sp.Piecewise((sp.log(w), w > 0), (sp.Max(w, x), True)), [w], [x])]
    for model in models:
        source = bp.compile(model).source
        run = subprocess.run(ruff + ["check", "--no-cache", "--isolated", "-"], input=source,
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("make, error, message", [
    (lambda: bp.Model("m", [(z, w * x)], sp.Matrix([z, z]), [w]), NonScalarLossError, "not a scalar"),
    (lambda: bp.Model("m", [(z, w * x), (z, z + 1)], z, [w]), ModelError, "defined twice"),
    (lambda: bp.Model("m", [(z, w * y), (y, z + 1)], y, [w]), ModelError, "before y is defined"),
    (lambda: bp.Model("m", [(z, z + w)], z, [w]), ModelError, "uses itself"),
    (lambda: bp.Model("m", [(w, x)], w, [w]), ModelError, "redefines an argument"),
    (lambda: bp.Model("m", [], w * x, []), ModelError, "wrt is empty"),
    (lambda: bp.Model("m", [], w * x, [w], [t]), ModelError, "add them to inputs"),
    (lambda: bp.Model("m", [], w * sp.I, [w]), NonRealConstantError, "not a finite real"),
    (lambda: bp.Model("m", [], w * x, [w, w]), ModelError, "twice"),
    (lambda: bp.Model("", [], w * x, [w]), ModelError, "name"),
])
def test_bad_models_raise_typed_errors(make, error, message):
    with pytest.raises(error, match=message):
        bp.compile(make())


def test_unused_wrt_warns_and_gets_zero_gradient():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = bp.compile(w * x, wrt=[w, b], inputs=[x], name="unused").load()
    assert any(issubclass(c.category, UnusedWrtWarning) for c in caught)
    gw, gb = module.grad(w=1.0, b=np.zeros(2), x=np.array([1.0, 2.0]))
    assert gw == pytest.approx(3.0) and gb.shape == (2,) and np.all(gb == 0)


def test_bad_reduction_is_refused():
    with pytest.raises(ModelError, match="reduction"):
        bp.compile(logistic(), reduction="max")


def test_keyword_and_builtin_names_are_mangled():
    lam, lst = sp.Symbol("lambda"), sp.Symbol("list")
    module = bp.compile(lam * lst ** 2, wrt=[lam], inputs=[lst], name="names").load()
    assert module.ARGS == ("lambda_", "list_")
    assert module.grad(lambda_=2.0, list_=3.0)[0] == pytest.approx(9.0)
