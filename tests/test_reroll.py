"""Re-rolling (backpropc.reroll): models written in Python loops over scalar symbols.

Every re-rolled gradient is checked against sympy.diff (the exact oracle), central finite
differences, and the same model compiled without re-rolling. Most tests lower MIN_LANES and
MIN_TERMS so that small models (which sympy.diff can take) are re-rolled; the real thresholds are
tested on their own.
"""

from __future__ import annotations

import subprocess
import sys
from itertools import combinations

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import assert_close, directional_derivatives, sympy_gradient

import backpropc as bp
from backpropc import reroll
from backpropc.explain import explain


@pytest.fixture
def small_families(monkeypatch):
    monkeypatch.setattr(reroll, "MIN_LANES", 4)
    monkeypatch.setattr(reroll, "MIN_TERMS", 4)


def extended_rosenbrock(n: int) -> bp.Model:
    x = sp.symbols(f"x0:{n}")
    loss = sum(100 * (x[2 * i + 1] - x[2 * i] ** 2) ** 2 + (1 - x[2 * i]) ** 2 for i in range(n // 2))
    return bp.Model("rosenbrock", loss=loss, wrt=list(x))


def chained_with_data(n: int) -> bp.Model:
    """Neighbouring symbols, a per-term number and a shared data value t (a batch)."""
    x = sp.symbols(f"x0:{n}")
    t = sp.Symbol("t")
    loss = sum(sp.Rational(k + 1, 7) * sp.sin(x[k + 1] * t) * sp.exp(-x[k] ** 2) + sp.tanh(x[k] - t)
               for k in range(n - 1))
    return bp.Model("chained", loss=loss, wrt=list(x), inputs=[t])


def lennard_jones(atoms: int) -> bp.Model:
    X = sp.symbols(f"X0:{atoms}")
    Y = sp.symbols(f"Y0:{atoms}")
    energy = 0
    for i, j in combinations(range(atoms), 2):
        r2 = (X[i] - X[j]) ** 2 + (Y[i] - Y[j]) ** 2
        energy += 4 * (r2 ** -6 - r2 ** -3)
    return bp.Model("lj", loss=energy, wrt=[c for xy in zip(X, Y) for c in xy])


def mlp(inputs: int, hidden: int) -> bp.Model:
    x = sp.symbols(f"x0:{inputs}")
    t = sp.Symbol("t")
    W = [[sp.Symbol(f"w_{j}_{k}") for k in range(inputs)] for j in range(hidden)]
    b = sp.symbols(f"b0:{hidden}")
    v = sp.symbols(f"v0:{hidden}")
    h = [bp.sigmoid(sum(W[j][k] * x[k] for k in range(inputs)) + b[j]) for j in range(hidden)]
    y = sum(v[j] * h[j] for j in range(hidden))
    wrt = [w for row in W for w in row] + list(b) + list(v)
    return bp.Model("mlp", loss=(y - t) ** 2 / 2, wrt=wrt, inputs=list(x) + [t])


def lattice_points(n: int) -> list[float]:
    """Atoms on a jittered grid: no two close enough for r**-12 to swamp the comparison."""
    side = int(np.ceil(np.sqrt(n)))
    rng = np.random.default_rng(3)
    points = [(1.2 * (k % side) + rng.uniform(-0.1, 0.1), 1.2 * (k // side) + rng.uniform(-0.1, 0.1))
              for k in range(n)]
    return [c for p in points for c in p]


def point_for(module, rng, batch=None):
    point = {}
    for name in module.ARGS:
        if name in module.WRT or batch is None:
            point[name] = float(rng.uniform(-1, 1))
        else:
            point[name] = rng.uniform(-1, 1, batch)
    return point


def check_against_references(model: bp.Model, point: dict, rtol=1e-9, exact=True):
    """The re-rolled module against the unrolled one, finite differences and sympy.diff."""
    rolled = bp.compile(model).load()
    unrolled = bp.compile(model, reroll=False).load()
    value, grads = rolled.value_and_grad(**point)
    value0, grads0 = unrolled.value_and_grad(**point)
    assert_close(value, value0, rtol, what="value")
    for name, g, g0 in zip(rolled.WRT, grads, grads0):
        assert np.shape(g) == np.shape(point[name])
        assert_close(g, g0, rtol, what=name)
    pairs = directional_derivatives(rolled, point, grads, np.random.default_rng(0))
    assert_close(pairs[:, 0], pairs[:, 1], 1e-5, atol=1e-6, what="finite differences")
    if exact:
        args = model.wrt + list(model.inputs or [])
        assert_close(grads, sympy_gradient(model, args, point), 1e-9, what="sympy.diff")
    return rolled


def test_extended_rosenbrock_is_one_array_computation(small_families):
    module = check_against_references(extended_rosenbrock(16), point_for(bp.compile(extended_rosenbrock(16)).load(),
                                                                          np.random.default_rng(1)))
    source = bp.compile(extended_rosenbrock(16)).source
    assert "_lanes((x0, x1," in source and "np.sum(" in source
    assert "x3_bar = " not in source  # no statement per symbol: one for all of them
    assert "c0 = _flat_theta(theta, 16)" in source  # the flat form computes on theta itself
    assert module.value_and_grad(*[1.0] * 16)[0] == 0.0


def test_the_module_does_not_grow_with_the_number_of_terms():
    lines = {n: len(bp.compile(extended_rosenbrock(n)).source.splitlines()) for n in (200, 2000)}
    assert lines[200] == lines[2000], lines
    assert lines[200] < 500
    unrolled = len(bp.compile(extended_rosenbrock(200), reroll=False).source.splitlines())
    assert unrolled > lines[200] + 200


def powell_blocks(blocks: int) -> bp.Model:
    """Extended Powell: four kinds of terms, `blocks` of each."""
    x = sp.symbols(f"x0:{4 * blocks}")
    terms = []
    for k in range(0, len(x), 4):
        a, b, c, d = x[k:k + 4]
        terms += [(a + 10 * b) ** 2, 5 * (c - d) ** 2, (b - 2 * c) ** 4, 10 * (a - d) ** 4]
    return bp.Model("powell", loss=sp.Add(*terms), wrt=list(x))


def test_families_below_the_thresholds_stay_straight_line_code():
    # two kinds of terms: re-rolled once they hold MIN_TERMS together
    terms = reroll.MIN_TERMS // 2
    assert "_lanes(" not in bp.compile(extended_rosenbrock(2 * (terms - 1))).source
    assert "_lanes(" in bp.compile(extended_rosenbrock(2 * terms)).source
    # four kinds: each needs MIN_LANES terms, however many they hold together
    assert 4 * (reroll.MIN_LANES - 1) >= reroll.MIN_TERMS // 2
    assert "_lanes(" not in bp.compile(powell_blocks(reroll.MIN_LANES - 1)).source
    module = bp.compile(powell_blocks(max(reroll.MIN_LANES, reroll.MIN_TERMS // 4)))
    assert module.source.count("_lane_dot(") + module.source.count(".sum(-1)") >= 4


def test_neighbours_numbers_and_shared_data_with_a_batch(small_families):
    model = chained_with_data(9)
    module = bp.compile(model).load()
    source = bp.compile(model).source
    assert "TABLE_" in source and "_lane_lift(t)" in source
    rng = np.random.default_rng(2)
    check_against_references(model, point_for(module, rng, batch=5))
    check_against_references(model, point_for(module, rng))


def test_pairs_read_the_vector_through_gathers(small_families):
    model = lennard_jones(5)
    module = bp.compile(model).load()
    assert "_lane_accumulate(" in bp.compile(model).source
    point = dict(zip(module.ARGS, lattice_points(5)))
    check_against_references(model, point, rtol=1e-8)


def test_a_lennard_jones_cluster_at_the_real_threshold():
    model = lennard_jones(13)  # 78 pairs
    source = bp.compile(model).source
    assert "_lanes(" in source
    module = bp.compile(model).load()
    point = dict(zip(module.ARGS, lattice_points(13)))
    check_against_references(model, point, rtol=1e-8, exact=False)


def test_units_of_a_scalar_mlp_with_batch_data(small_families):
    model = mlp(3, 6)
    compiled = bp.compile(model)
    assert "_sigmoid(" in compiled.source and "_lanes((" in compiled.source
    rng = np.random.default_rng(4)
    check_against_references(model, point_for(compiled.load(), rng, batch=(4, 3)))


def test_parameters_over_a_batch_with_terms_that_do_not_see_the_data(small_families):
    """The lanes' signal is summed over the batch in one call: a term without data (a penalty on
    the weights) counts once per example, as in the unrolled module, with float64 data as with
    float32."""
    base = mlp(3, 6)
    weights = [w for w in base.wrt if str(w).startswith("w_")]
    model = bp.Model("penalised", loss=base.loss + sp.Rational(1, 10) * sp.Add(*[w ** 2 for w in weights]),
                     wrt=base.wrt, inputs=base.inputs)
    rng = np.random.default_rng(5)
    point = point_for(bp.compile(model).load(), rng, batch=(4, 3))
    check_against_references(model, point)
    rolled, unrolled = bp.compile(model).load(), bp.compile(model, reroll=False).load()
    point32 = {a: v.astype(np.float32) if a not in rolled.WRT else v for a, v in point.items()}
    grads, grads0 = rolled.grad(**point32), unrolled.grad(**point32)
    assert all(np.shape(g) == () for g in grads)
    assert_close(grads, grads0, 1e-5)


def test_mean_reduction_and_hessian_vector_products(small_families):
    model = chained_with_data(8)
    rolled = bp.compile(model, reduction="mean", derivatives=("grad", "hvp")).load()
    unrolled = bp.compile(model, reduction="mean", derivatives=("grad", "hvp"), reroll=False).load()
    rng = np.random.default_rng(5)
    point = point_for(rolled, rng, batch=6)
    directions = [float(rng.normal()) for _ in rolled.WRT]
    args = [point[a] for a in rolled.ARGS]
    for got, want in zip(rolled.hvp(*args, *directions), unrolled.hvp(*args, *directions)):
        assert_close(np.ravel(got), np.ravel(want), 1e-9, what="hvp")
    theta = rolled.pack(*[point[w] for w in rolled.WRT])
    value, flat = rolled.value_and_grad_flat(theta, point["t"])
    value0, flat0 = unrolled.value_and_grad_flat(theta, point["t"])
    assert_close(value, value0, 1e-12) and assert_close(flat, flat0, 1e-9)


@pytest.mark.parametrize("make, data", [(extended_rosenbrock, False), (chained_with_data, True)])
def test_a_module_with_the_hessian_is_rerolled_and_keeps_its_structure(small_families, make, data):
    """The HVP and the gradient run over lanes; the Hessian's pattern is read term by term, so
    it stays banded (a few colours), and every entry matches sympy.hessian."""
    model = make(12)
    compiled = bp.compile(model, derivatives=("grad", "hvp", "hessian"))
    assert "_lanes(" in compiled.source
    assert compiled.ops["hessian_products"] <= 3
    # without data, hvp_flat reads theta and p as the lane vectors themselves
    assert ('_flat_theta(p, 12, "p")' in compiled.source) == (not data)
    module = compiled.load()
    rng = np.random.default_rng(8)
    theta = rng.uniform(-1, 1, len(model.wrt))
    args = (rng.uniform(-1, 1, 5),) if data else ()
    unrolled = bp.compile(model, derivatives=("grad", "hvp", "hessian"), reroll=False).load()
    H = module.hessian_flat(theta, *args)
    assert_close(H, unrolled.hessian_flat(theta, *args), 1e-12, what="hessian")
    t = sp.Symbol("t")
    exact = sp.hessian(model.loss, model.wrt)
    point = dict(zip(model.wrt, theta.tolist()))
    want = sum(np.array(exact.subs({**point, t: v}).evalf(), dtype=float)
               for v in (args[0] if data else [0.0]))
    assert_close(H, want, 1e-9, what="sympy.hessian")
    p = rng.normal(size=len(model.wrt))
    assert_close(module.hvp_flat(theta, p, *args), H @ p, 1e-9, what="hvp_flat")
    rows, cols, values = module.hessian_coo(*theta.tolist(), *args)
    assert len(values) < len(model.wrt) ** 2 / 2  # only the band
    with pytest.raises(ValueError, match="p must be a 1-D array of 12 numbers"):
        module.hvp_flat(theta, p[:5], *args)


def test_residual_models_and_their_jacobians(small_families):
    x = sp.symbols("x0:8")
    residuals = [(3 - 2 * x[k]) * x[k] - x[k - 1] - 2 * x[k + 1] + 1 for k in range(1, 7)]
    model = bp.Model("broyden", residuals=residuals, wrt=list(x))
    rolled = bp.compile(model, derivatives=("grad", "jacobian"))
    assert "_lanes(" in rolled.source
    module, unrolled = rolled.load(), bp.compile(model, derivatives=("grad", "jacobian"), reroll=False).load()
    values = [float(v) for v in np.random.default_rng(6).uniform(-1, 1, 8)]
    assert_close(module.jacobian(*values), unrolled.jacobian(*values), 1e-12)
    check_against_references(model, dict(zip(module.ARGS, values)))


def decay_loop(samples: int) -> bp.Model:
    """A curve fit written in a loop: a residual per sample, the samples as data symbols."""
    a, k, c = sp.symbols("a k c")
    t, y = sp.symbols(f"t0:{samples}"), sp.symbols(f"y0:{samples}")
    residuals = [a * sp.exp(-k * t[j]) + c - y[j] for j in range(samples)]
    return bp.Model("decay", residuals=[c - 1, *residuals, a - 2], wrt=[a, k, c], inputs=[*t, *y])


def test_a_run_of_alike_residuals_is_one_value_over_lanes(small_families):
    """The residual list re-rolled like a sum's terms, rows kept in the list's order: residuals,
    Jacobian, residuals_jvp, value, gradient and Hessian as the written-out module has them, and
    the module the same length for every number of residuals."""
    model = decay_loop(9)
    rolled = bp.compile(model, derivatives=("grad", "hessian", "jacobian"))
    assert "_residual_rows(" in rolled.source and '"one", "range", "one"' in rolled.source
    module = rolled.load()
    unrolled = bp.compile(model, derivatives=("grad", "hessian", "jacobian"), reroll=False).load()
    rng = np.random.default_rng(7)
    theta = np.array([1.5, 0.7, 0.4])
    data = [rng.uniform(0, 3, 3) for _ in range(9)] + [rng.uniform(-1, 1, 3) for _ in range(9)]
    for name in ("residuals", "jacobian", "hessian"):
        assert_close(getattr(module, name)(*theta, *data), getattr(unrolled, name)(*theta, *data), 1e-12, what=name)
    assert module.residuals(*theta, *data).shape == (3, 11)
    (value, grads), (value0, grads0) = module.value_and_grad(*theta, *data), unrolled.value_and_grad(*theta, *data)
    assert_close([value, *grads], [value0, *grads0], 1e-12, what="value and gradient")
    direction = rng.normal(size=3)
    assert_close(module.residuals_jvp(*theta, *data, *direction)[1],
                 np.einsum("...ij,j->...i", unrolled.jacobian(*theta, *data), direction), 1e-12)
    exact = sp.Matrix([sp.sympify(r) for r in model.residuals]).jacobian(model.wrt)
    point = dict(zip(model.wrt + model.inputs, [*theta, *[float(d.flat[0]) for d in data]]))
    floats = [float(d.flat[0]) for d in data]
    assert_close(module.jacobian(*theta, *floats), np.array(exact.subs(point).evalf(), dtype=float), 1e-12)
    lines = {size: len(bp.compile(decay_loop(size), derivatives=("jacobian",)).source.splitlines())
             for size in (9, 30)}
    assert lines[9] == lines[30], lines


def test_a_system_in_a_loop_runs_over_lanes_and_colours_its_jacobian():
    """Broyden's 200 equations in 200 unknowns: the residuals re-rolled at the real thresholds,
    the Jacobian three residuals_jvp sweeps, everything as the written-out module has it."""
    x = sp.symbols("x0:200")

    def at(k):
        return x[k] if 0 <= k < 200 else 0
    model = bp.Model("broyden", residuals=[(3 - 2 * x[k]) * x[k] - at(k - 1) - 2 * at(k + 1) + 1 for k in range(200)],
                     wrt=list(x))
    rolled = bp.compile(model, derivatives=("grad", "jacobian"))
    assert len(rolled.source.splitlines()) < 800 and "JACOBIAN_COLOUR_RUNS = ((66, (0, 1, 2)), (1, (0, 1)))" \
        in rolled.source
    module = rolled.load()
    unrolled = bp.compile(model, derivatives=("grad", "jacobian"), reroll=False).load()
    theta = np.random.default_rng(8).uniform(-1, 1, 200)
    for name in ("residuals_flat", "jacobian_flat"):
        assert_close(getattr(module, name)(theta), getattr(unrolled, name)(theta), 1e-13, what=name)
    assert_close(module.value_and_grad_flat(theta)[1], unrolled.value_and_grad_flat(theta)[1], 1e-12)
    flat = rolled.source[rolled.source.index("def residuals_flat(theta):"):]
    assert flat.split("\n")[2].strip() == "c0 = _flat_theta(theta, 200)"  # theta is the lane vector
    with pytest.raises(ValueError, match="theta must be a 1-D array of 200 numbers"):
        module.residuals_flat(theta[:-1])


def test_a_parameter_every_term_adds_counts_once_per_term_in_second_order(small_families):
    """d2/dc2 of sum_k (x_k + c)**2 is 2 per term: the lift of c over the lanes folds to c, and
    its signal's sum over them (a number the same in every lane) is the count times it."""
    x, c = sp.symbols("x0:6"), sp.Symbol("c")
    model = bp.Model("shifted", loss=sp.Add(*[(x[k] * x[k + 1] + c) ** 2 for k in range(5)]), wrt=[*x, c])
    module = bp.compile(model, derivatives=("grad", "hvp", "hessian")).load()
    theta = np.random.default_rng(9).uniform(-1, 1, 7)
    exact = np.array(sp.hessian(model.loss, model.wrt).subs(dict(zip(model.wrt, theta))).evalf(), dtype=float)
    assert_close(module.hessian_flat(theta), exact, 1e-12)
    assert exact[6, 6] == 10.0
    direction = np.eye(7)[6]
    assert_close(module.hvp_flat(theta, direction), exact @ direction, 1e-12)


def test_compiling_is_deterministic(small_families):
    assert bp.compile(lennard_jones(5)).source == bp.compile(lennard_jones(5)).source


def test_explain_shows_the_family_as_one_statement(small_families):
    text = explain(bp.compile(extended_rosenbrock(12)))
    forward = text.split("Forward pass:")[1].split("Backward pass")[0]
    assert "[x0, x1, x2, ..., x10, x11]" in forward and "sum(" in forward
    assert "x5" not in forward and len(forward.strip().splitlines()) <= 8  # not term by term
    assert "at c0[1:12:2]" in text  # the signal added into the slice the family read
    assert "x0_bar, ..., x11_bar = c0_bar[0], ..., c0_bar[11]" in text  # one line for the gradients


# ---- random families: Hypothesis -----------------------------------------------------------------
UNARY = [sp.sin, sp.cos, sp.tanh, sp.exp, bp.sigmoid, lambda e: e ** 2, lambda e: sp.log(1 + e ** 2),
         sp.Abs, lambda e: sp.Max(e, 0), lambda e: sp.Piecewise((e, e > 0), (e ** 2 / 2, True))]


def _term(choice: list[int], x, k: int, c):
    """One term of a family: a small expression of x[k], x[k + shift] and a per-term number."""
    a, b = x[k], x[k + 1 + choice[0] % 2]
    inner = [a * b, a - b, c * a + b, a / (2 + b ** 2)][choice[1] % 4]
    outer = UNARY[choice[2] % len(UNARY)](inner)
    return outer * (1 + choice[3] % 3) + (c * b if choice[4] % 2 else 0)


@pytest.mark.filterwarnings("ignore::backpropc.errors.UnusedWrtWarning")  # x[k + 2] may go unused
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 11), min_size=5, max_size=5), st.integers(5, 9), st.integers(0, 2 ** 16))
def test_random_families_agree_with_sympy_diff(small_families, choice, terms, seed):
    x = sp.symbols(f"x0:{terms + 2}")
    loss = sum(_term(choice, x, k, sp.Rational(k + 2, 3)) for k in range(terms))
    model = bp.Model("random", loss=loss, wrt=list(x))
    module = bp.compile(model).load()
    check_against_references(model, point_for(module, np.random.default_rng(seed)), rtol=1e-8)


def test_the_command_line_rerolls_unless_told_not_to(tmp_path):
    model_file = tmp_path / "loop.py"
    model_file.write_text(
        "import sympy as sp\nimport backpropc as bp\n"
        "x = sp.symbols('x0:200')\n"
        "model = bp.Model('loop', loss=sum((1 - x[k]) ** 2 + 100 * (x[k + 1] - x[k] ** 2) ** 2 "
        "for k in range(199)), wrt=list(x))\n")
    for flags, rerolled in (([], True), (["--no-reroll"], False)):
        out = tmp_path / f"loop{len(flags)}_grad.py"
        result = subprocess.run([sys.executable, "-m", "backpropc", "compile", str(model_file), "-o", str(out),
                                 "--check", *flags], capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr
        assert "(ok)" in result.stdout
        assert ("_lanes((" in out.read_text()) is rerolled


def test_a_loop_built_model_computes_what_its_indexed_form_does():
    """The scalarised model's own gradient against the same model written with IndexedBase and Sum."""
    n = 150
    i = sp.Symbol("i", integer=True)
    xi = sp.IndexedBase("x", shape=(n,))
    indexed = bp.compile(bp.Model("indexed", loss=sp.Sum(100 * (xi[i + 1] - xi[i] ** 2) ** 2 + (1 - xi[i]) ** 2,
                                                         (i, 0, n - 2)), wrt=[xi])).load()
    x = sp.symbols(f"x0:{n}")
    looped = bp.compile(bp.Model("looped", loss=sp.Add(*[100 * (x[k + 1] - x[k] ** 2) ** 2 + (1 - x[k]) ** 2
                                                          for k in range(n - 1)]), wrt=list(x)))
    assert "_lanes(" in looped.source
    theta = np.random.default_rng(7).uniform(-1.5, 1.5, n)
    value, (gradient,) = indexed.value_and_grad(theta)
    looped_value, looped_gradient = looped.load().value_and_grad_flat(theta)
    assert_close(looped_value, value, 1e-13)
    assert_close(looped_gradient, gradient, 1e-12)


def test_check_and_compare_differentiate_the_terms_not_the_lanes(small_families):
    """bp.check's sympy.diff and bp.compare's naive rows see the model term by term."""
    model = chained_with_data(9)
    report = bp.check(model, points=2, batch=3)
    assert report.ok and all(r.sympy_error is not None and r.sympy_error < 1e-9 for r in report.rows)
    result = bp.compare(model, batch=20, budget=30)
    naive = next(r for r in result.rows if r.method == "naive")
    assert naive.status == "ok" and naive.max_rel_diff < 1e-9


def test_dask_data_and_float32_through_a_rerolled_model(small_families):
    """Lazy Dask data stays lazy through lanes (slices and gathers), and float32 stays float32."""
    import dask.array as da

    x = sp.symbols("x0:6")
    t = sp.Symbol("t")
    pairs = list(combinations(range(6), 2))
    model = bp.Model("pairs", loss=sp.Add(*[sp.sin(x[i] * t) * (x[j] - t) ** 2 for i, j in pairs]),
                     wrt=list(x), inputs=[t])
    rolled = bp.compile(model)
    assert "TABLE_" in rolled.source  # the pairs read the vector through gathers
    module, unrolled = rolled.load(), bp.compile(model, reroll=False).load()
    values = [float(v) for v in np.random.default_rng(8).uniform(-1, 1, 6)]
    data = np.random.default_rng(9).uniform(-1, 1, 50)
    lazy_value, lazy_grads = module.value_and_grad(*values, da.from_array(data, chunks=20))
    assert isinstance(lazy_value, da.Array)
    value, grads = unrolled.value_and_grad(*values, data)
    assert_close(lazy_value.compute(), value, 1e-12)
    assert_close([np.asarray(g) for g in da.compute(*lazy_grads)], grads, 1e-12)
    grads32 = module.value_and_grad(*[np.float32(v) for v in values], data.astype(np.float32))[1]
    assert all(np.asarray(g).dtype == np.float32 for g in grads32)


@pytest.mark.parametrize("batch", [None, 5])
def test_numbers_that_differ_from_term_to_term_keep_float32(small_families, batch):
    """A family's table of numbers (k + 1 in (k + 1)*x_k) is weak beside the lanes, as NumPy's
    numbers are: float32 arguments give a float32 value and gradients, float64 ones float64."""
    x = sp.symbols("x0:8")
    s = sp.Symbol("s")
    model = bp.Model("weighted", loss=sum((k + 1) * sp.sin(x[k] * s) for k in range(8)) + 2 * s,
                     wrt=list(x), inputs=[s])
    rolled = bp.compile(model)
    assert "_table_like(TABLE_0" in rolled.source
    module = rolled.load()
    rng = np.random.default_rng(4)
    point = {a: rng.uniform(-1, 1, batch) if a == "s" and batch else float(rng.uniform(-1, 1)) for a in module.ARGS}
    for dtype in (np.float32, np.float64):
        value, grads = module.value_and_grad(**{a: np.asarray(v, dtype=dtype) if np.ndim(v) else dtype(v)
                                                for a, v in point.items()})
        assert np.asarray(value).dtype == dtype and all(np.asarray(g).dtype == dtype for g in grads)
    check_against_references(model, point)


def test_a_shared_parameter_gathers_its_signal_by_dot_products(small_families):
    """A curve fit written term by term: the parameters a, b and c are shared by every term, so
    their gradients are sums over the lanes of products, printed as dot products (and squares as
    a dot product with itself). Checked without data, with a batch, with lazy Dask data and in
    float32."""
    import dask.array as da

    a, b, c, s = sp.symbols("a b c s")
    ts = [k / 4 for k in range(9)]
    ys = [1.0, 0.9, 0.7, 0.65, 0.5, 0.45, 0.3, 0.33, 0.2]
    model = bp.Model("fit", loss=sp.Add(*[(y - a * sp.exp(-b * t) * sp.cos(c * t + s)) ** 2
                                          for t, y in zip(ts, ys)]), wrt=[a, b, c], inputs=[s])
    source = bp.compile(model).source
    backward = source.split("def value_and_grad(")[1].split("\ndef ")[0]
    assert "_lane_dot(" in backward and ".sum(-1)" not in backward
    module = bp.compile(model).load()
    rng = np.random.default_rng(4)
    check_against_references(model, point_for(module, rng))
    check_against_references(model, point_for(module, rng, batch=6))
    unrolled = bp.compile(model, reroll=False).load()
    data = rng.uniform(-1, 1, 40)
    lazy_value, lazy_grads = module.value_and_grad(0.8, 1.1, 0.3, da.from_array(data, chunks=10))
    value, grads = unrolled.value_and_grad(0.8, 1.1, 0.3, data)
    assert_close(lazy_value.compute(), value, 1e-12)
    assert_close([np.asarray(g) for g in da.compute(*lazy_grads)], grads, 1e-12)
    grads32 = module.value_and_grad(np.float32(0.8), np.float32(1.1), np.float32(0.3), data.astype(np.float32))[1]
    assert all(np.asarray(g).dtype == np.float32 for g in grads32)


def test_calls_on_floats_run_scalar_statements_on_floats_and_lanes_on_numpy(small_families):
    """Shared parameters beside a family: a call on Python floats (what value_and_grad_flat
    makes) runs the statements over numbers with the math module and those over the lanes with
    NumPy, with no lifts and no sums over a batch. Checked against sympy.diff, finite differences
    and the NumPy path (0-d arrays), with the family's own parameters (a run of gradients) and
    the Hessian-vector product, and where math.exp overflows (the NumPy path takes over)."""
    a, b = sp.symbols("a b")
    x = sp.symbols("x0:7")
    ts = [k / 3 for k in range(7)]
    loss = sp.exp(a) + sp.Add(*[(x[k] - a * sp.exp(-b * t)) ** 2 + sp.sin(x[k]) * b for k, t in enumerate(ts)])
    model = bp.Model("fit", loss=loss, wrt=[a, b, *x])
    compiled = bp.compile(model, derivatives=("grad", "hvp"))
    on_floats = compiled.source.split("def _value_and_grad_scalar(")[1].split("\ndef ")[0]
    assert "math.exp(a)" in on_floats and "np.exp(" in on_floats and ".tolist()" in on_floats
    assert "_lane_lift" not in on_floats and "_sum_like" not in on_floats
    module = compiled.load()
    rng = np.random.default_rng(2)
    point = point_for(module, rng)
    check_against_references(model, point)
    args = [point[w] for w in module.WRT]
    directions = list(rng.normal(size=len(args)))
    for on_numbers, on_arrays in zip(module.hvp(*args, *directions),
                                     module.hvp(*map(np.array, args), *map(np.array, directions))):
        assert_close(np.ravel(on_numbers), np.ravel(on_arrays), 1e-12, what="hvp")
    theta = module.pack(*args)
    value, flat = module.value_and_grad_flat(theta)
    assert type(value) is float and flat.shape == (9,)
    assert_close(flat, np.ravel(module.value_and_grad(*map(np.array, args))[1]), 1e-12)
    with np.errstate(all="ignore"):
        huge = module.value_and_grad(800.0, *args[1:])  # exp(800) overflows a float
        want = module.value_and_grad(np.array(800.0), *args[1:])
    assert np.isinf(huge[0]) and np.isinf(want[0])
    assert_close(np.ravel(huge[1][1:]), np.ravel(want[1][1:]), 1e-12)
    # a model whose parameters all sit in lane vectors runs its NumPy code on floats: no twin
    assert "_value_and_grad_scalar" not in bp.compile(extended_rosenbrock(12)).source


def benchmark_loops():
    """The four problems of benchmarks/rerolled.py, written in loops as a user would."""
    x = sp.symbols("x0:200")
    rosenbrock = sp.Add(*[100 * (x[k + 1] - x[k] ** 2) ** 2 + (1 - x[k]) ** 2 for k in range(199)])

    def at(k):
        return x[k] if 0 <= k < 200 else 0
    broyden = sp.Add(*[((3 - 2 * x[k]) * x[k] - at(k - 1) - 2 * at(k + 1) + 1) ** 2 for k in range(200)])
    atoms = [sp.symbols(f"x{a} y{a} z{a}") for a in range(13)]
    energy = sp.Add(*[4 * (r2 ** -6 - r2 ** -3) for r2 in
                      (sum((atoms[i][k] - atoms[j][k]) ** 2 for k in range(3)) for i, j in combinations(range(13), 2))])
    return [bp.Model("rosenbrock", loss=rosenbrock, wrt=list(x)), powell_blocks(50),
            bp.Model("broyden", loss=broyden, wrt=list(x)),
            bp.Model("lennard_jones", loss=energy, wrt=[c for atom in atoms for c in atom])]


@pytest.mark.parametrize("model", benchmark_loops(), ids=lambda m: m.name)
def test_a_rerolled_benchmark_loop_is_a_module_under_300_lines_that_passes_its_self_check(model, capsys):
    """Its passes are written once, shared by value_and_grad and value_and_grad_flat, and it
    carries only the helpers' code for what it has (no Dask path without data)."""
    compiled = bp.compile(model)
    source = compiled.source
    assert len(source.splitlines()) < 300
    assert source.count("# backward pass") == 1 and "def _value_and_grad_lanes(c0):" in source
    assert "Dask" not in source and "[with" not in source
    module = compiled.load()
    assert module._self_check() == 0, capsys.readouterr().out
    theta = np.random.default_rng(3).uniform(0.5, 1.5, len(module.WRT))
    value, flat = module.value_and_grad_flat(theta)
    value0, grads = module.value_and_grad(*theta)
    assert value == value0 and np.array_equal(flat, np.array(grads))
    assert module.unpack(theta) == theta.tolist()


def test_the_shared_passes_of_hessian_vector_products_match_the_term_by_term_module(small_families):
    model = powell_blocks(6)
    module = bp.compile(model, derivatives=("grad", "hvp")).load()
    unrolled = bp.compile(model, derivatives=("grad", "hvp"), reroll=False).load()
    assert hasattr(module, "_hvp_lanes") and hasattr(module, "_value_and_grad_lanes")
    rng = np.random.default_rng(4)
    theta, p = rng.uniform(-1, 1, 24), rng.uniform(-1, 1, 24)
    assert_close(module.hvp_flat(theta, p), unrolled.hvp_flat(theta, p), 1e-12)
    value, grads, products = module.hvp(*theta, *p)
    value0, grads0, products0 = unrolled.hvp(*theta, *p)
    assert_close(value, value0, 1e-12)
    assert_close(list(grads), list(grads0), 1e-12)
    assert_close(list(products), list(products0), 1e-12)


def test_the_self_check_fails_a_wrong_gradient_but_not_where_finite_differences_cannot_decide(capsys):
    """The cluster of 13 atoms puts atoms close together, where the loss's rounding over a step
    swamps some estimates: they are reported, not counted; a gradient 0.1 % off still fails."""
    module = bp.compile(benchmark_loops()[3]).load()
    assert module._self_check() == 0
    assert "(within the estimate's own error)" in capsys.readouterr().out

    def wrong(**point):
        value, grads = module.value_and_grad(**point)
        return value, tuple(1.001 * g for g in grads)
    assert module._self_check(value_and_grad=wrong) == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize("term", [
    lambda a, x: sp.Piecewise((a, a > 0), (x, True)),
    lambda a, x: sp.Piecewise((a ** 2 + x, a > 0), (x ** 2, True)),
    lambda a, x: sp.Piecewise((a ** 2, a > 0), (x ** 3, x > 0), (x ** 2, True)),
], ids=["a_or_x", "shared_inside_a_sum", "three_branches"])
@pytest.mark.parametrize("a_value", [0.5, -0.5])
def test_a_signal_the_same_in_every_lane_counts_once_per_term(small_families, term, a_value):
    """Piecewise((a, a > 0), (x_k, True)) over 8 terms: a's signal where(a > 0, 1, 0) is the same
    in every lane, so it counts 8 times (fuzz-found: it was summed over one lane, d/da = 1), in
    the gradient and in Hessian-vector products; float32 stays float32 through the int where."""
    a = sp.Symbol("a")
    xs = sp.symbols("x0:8")
    model = bp.Model("uniform", loss=sum(term(a, x) for x in xs), wrt=[*xs, a])
    rolled = bp.compile(model, derivatives=("grad", "hvp"))
    assert "_lanes(" in rolled.source
    module, unrolled = rolled.load(), bp.compile(model, reroll=False, derivatives=("grad", "hvp")).load()
    rng = np.random.default_rng(5)
    theta = np.concatenate([rng.uniform(-1, 1, 8), [a_value]])
    p = rng.uniform(-1, 1, 9)
    assert_close(module.value_and_grad_flat(theta)[1], unrolled.value_and_grad_flat(theta)[1], 1e-12)
    assert_close(module.hvp_flat(theta, p), unrolled.hvp_flat(theta, p), 1e-12)
    point = dict(zip(module.ARGS, theta.tolist()))
    check_against_references(model, point)
    grads32 = module.value_and_grad(*theta.astype(np.float32))[1]
    assert all(np.asarray(g).dtype == np.float32 for g in grads32)
