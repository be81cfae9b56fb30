"""The geometric view: `backpropc plot` and `bp.plot`."""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from matplotlib.collections import LineCollection
from matplotlib.quiver import Quiver
from test_cli import backpropc

import backpropc as bp
from backpropc import cli
from backpropc.errors import PlotError
from backpropc.plot import base_point, coordinates, plot, step_size

ROOT = Path(__file__).resolve().parent.parent
LOGISTIC = ROOT / "examples" / "logistic.py"


def example(name):
    namespace = runpy.run_path(str(ROOT / "examples" / f"{name}.py"))
    return next(v for v in namespace.values() if isinstance(v, bp.Model))


def test_command_writes_a_png_deterministically(tmp_path):
    out = tmp_path / "w_b.png"
    run = backpropc("plot", LOGISTIC, "--params", "w", "b", "-o", out)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"wrote {out}\n"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    again = tmp_path / "again.png"
    assert backpropc("plot", LOGISTIC, "--params", "w", "b", "-o", again).returncode == 0
    assert again.read_bytes() == data


def test_default_output_is_beside_the_model(tmp_path):
    model = tmp_path / "m.py"
    model.write_text(LOGISTIC.read_text())
    run = backpropc("plot", model, "-o", tmp_path / "x.svg", "--steps", "3")
    assert run.returncode == 0 and "<svg" in (tmp_path / "x.svg").read_text()
    assert backpropc("plot", model, "--steps", "3").returncode == 0
    assert (tmp_path / "logistic_plot.png").is_file()


def test_plot_has_contours_arrows_path_labels_and_title():
    compiled = bp.compile(example("logistic"), reduction="mean")
    figure = plot(compiled, ("w", "b"), start=(-1.0, 1.5), lr=2.0, steps=12)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "w" and ax.get_ylabel() == "b"
    assert ax.get_title().startswith("logistic: the objective over w and b")
    assert any(isinstance(c, Quiver) for c in ax.collections)
    assert any(isinstance(c, LineCollection) or type(c).__name__ == "QuadContourSet" for c in ax.collections)
    # the path is gradient descent on the compiled objective, step by step
    path = next(line for line in ax.lines if line.get_label().startswith("gradient descent"))
    xs, ys = path.get_xdata(), path.get_ydata()
    assert len(xs) == 13 and (xs[0], ys[0]) == (-1.0, 1.5)
    module = compiled.load()
    point = base_point(compiled, module)
    for k in range(12):
        _, (gw, gb) = module.value_and_grad(**dict(point, w=xs[k], b=ys[k]))
        assert np.allclose([xs[k + 1], ys[k + 1]], [xs[k] - 2.0 * gw, ys[k] - 2.0 * gb], rtol=1e-12)
    # the window shows the whole path
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 < xs.min() and xs.max() < x1 and y0 < ys.min() and ys.max() < y1


def test_one_parameter_model_draws_the_curve_and_its_tangents():
    w, x, t = sp.symbols("w x t")
    model = bp.Model(name="one", steps=[], loss=(bp.sigmoid(w * x) - t) ** 2 / 2, wrt=[w], inputs=[x, t])
    compiled = bp.compile(model)
    figure = plot(compiled, steps=5)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "w" and ax.get_ylabel() == "objective"
    curve = next(line for line in ax.lines if line.get_label() == "objective")
    cx, cy = curve.get_xdata(), curve.get_ydata()
    tangents = [line for line in ax.lines if line.get_color() == "#dc2626" and len(line.get_xdata()) == 2]
    assert len(tangents) == 5
    module = compiled.load()
    point = base_point(compiled, module)

    def objective(value):
        return module.value_and_grad(**dict(point, w=value))[0]

    for line in tangents:  # each tangent touches the curve, with the curve's slope there
        (a, b), (fa, fb) = line.get_xdata(), line.get_ydata()
        middle, h = (a + b) / 2, 1e-5
        assert np.isclose((fa + fb) / 2, objective(middle), rtol=1e-12)
        assert np.isclose((fb - fa) / (b - a), (objective(middle + h) - objective(middle - h)) / (2 * h), rtol=1e-6)
    assert np.allclose(cy, [objective(v) for v in cx], rtol=1e-12)


def test_matrix_entries_can_be_plotted(tmp_path):
    out = tmp_path / "mlp.pdf"
    run = backpropc("plot", ROOT / "examples" / "vectorised_mlp.py", "--params", "W1[0,0]", "W1[1,2]",
                    "-o", out, "--steps", "5", "--at", "b1[0,0]=0.5")
    assert run.returncode == 0, run.stderr
    assert out.read_bytes().startswith(b"%PDF")


def test_at_and_data_set_the_point(tmp_path):
    compiled = bp.compile(example("logistic"))
    module = compiled.load()
    xs, ts = np.linspace(-1, 1, 7), np.linspace(0, 1, 7)
    point = base_point(compiled, module, data={"x": xs, "t": ts}, at={"b": 0.25})
    assert point["b"] == 0.25 and np.array_equal(point["x"], xs) and np.array_equal(point["t"], ts)
    with pytest.raises(PlotError, match="the data lack t"):
        base_point(compiled, module, data={"x": xs})
    data = tmp_path / "data.npz"
    np.savez(data, x=xs, t=ts)
    figure = plot(compiled, ("w", "b"), data={"x": xs, "t": ts}, steps=2)
    assert "over 7 examples" in figure.axes[0].get_title()
    run = backpropc("plot", LOGISTIC, "--data", data, "-o", tmp_path / "p.png", "--steps", "2")
    assert run.returncode == 0, run.stderr


BAD = {
    "unknown name": (["--params", "w", "q"], "'q' is not an argument of the model; logistic's parameters are w, b"),
    "data name": (["--params", "x", "b"], "'x' is data, not a parameter"),
    "one of two": (["--params", "w"], "logistic has 2 parameters (w, b); name two with --params"),
    "three": (["--params", "w", "b", "w"], "at most two parameters"),
    "twice": (["--params", "w", "w"], "names w twice"),
    "index on a scalar": (["--params", "w[0,0]", "b"], "w is a scalar"),
    "start": (["--start", "1"], "--start needs 2 values"),
    "lr": (["--lr", "0"], "the learning rate must be a positive number"),
    "format": (["-o", "OUT.gif"], "unknown plot format .gif"),
    "at": (["--at", "b"], "write NAME=NUMBER"),
    "missing data": (["--data", "nowhere.npz"], "data file nowhere.npz not found"),
}
MATRIX_BAD = {
    "matrix without index": (["--params", "W1", "b1[0,0]"], "W1 is a 4x3 matrix; plot one entry of it, e.g. W1[0,0]"),
    "outside": (["--params", "W1[4,0]", "W1[0,0]"], "W1[4,0] is outside W1, which is 4x3"),
    "no default": ([], "vectorised_mlp has 26 parameters"),
}


@pytest.mark.parametrize("case", sorted(BAD) + sorted(MATRIX_BAD))
def test_bad_params_exit_2_with_one_line(case, tmp_path, monkeypatch, capsys):
    options, message = BAD.get(case) or MATRIX_BAD[case]
    model = LOGISTIC if case in BAD else ROOT / "examples" / "vectorised_mlp.py"
    monkeypatch.chdir(tmp_path)
    code = cli.main(["plot", str(model), *options, *([] if "-o" in options else ["-o", "p.png"])])
    out, err = capsys.readouterr()
    assert code == 2, out
    assert message in err and err.count("\n") == 1 and err.startswith("backpropc: error: ")
    assert not any(tmp_path.iterdir())


def test_exit_2_through_the_real_command(tmp_path):
    run = backpropc("plot", ROOT / "examples" / "vectorised_mlp.py", "--params", "W1", "W2", cwd=tmp_path)
    assert run.returncode == 2 and "W1 is a 4x3 matrix" in run.stderr and "Traceback" not in run.stderr


def test_without_matplotlib_the_message_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert cli.main(["plot", str(LOGISTIC), "-o", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err
    assert err == ("backpropc: error: " + str(LOGISTIC) + ": plotting needs matplotlib, which is not "
                   "installed: pip install 'backpropc[plot]'\n")
    assert not (tmp_path / "p.png").exists()


def test_default_step_is_half_the_inverse_of_the_largest_curvature():
    w, b, x = sp.symbols("w b x")
    quadratic = bp.compile(bp.Model(name="q", steps=[], loss=3 * (w - x) ** 2 + (b - x) ** 2, wrt=[w, b],
                                    inputs=[x]), reduction="mean")
    module = quadratic.load()
    point = {"w": 0.0, "b": 0.0, "x": np.array([0.5, 1.5])}
    axes = coordinates(module, "q", ["w", "b"])
    assert np.isclose(step_size(module, point, axes, (2.0, -1.0)), 1 / 12, rtol=1e-6)  # curvature 6
    concave = bp.compile(bp.Model(name="c", steps=[], loss=-(w - x) ** 2, wrt=[w], inputs=[x]),
                         reduction="mean")
    module = concave.load()
    # not convex: the first step moves a tenth of max(1, |start|); the gradient at w=3, x=1 is -4
    assert np.isclose(step_size(module, {"w": 0.0, "x": 1.0}, coordinates(module, "c", ["w"]), (3.0,)),
                      0.1 * 3 / 4)


def test_a_two_entry_matrix_parameter_is_plotted_entry_by_entry_by_default():
    W, x = sp.MatrixSymbol("W", 2, 1), sp.MatrixSymbol("x", 2, 1)
    compiled = bp.compile(bp.Model(name="m", steps=[], loss=bp.sum(sp.HadamardPower(W - x, 2)), wrt=[W],
                                   inputs=[x]))
    ax = plot(compiled, steps=3).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("W[0,0]", "W[1,0]")
