"""Rich display in Jupyter, LaTeX and Markdown explain, and the small CLI wording rules."""

import re
import runpy
import shutil
from pathlib import Path

import pytest
import sympy as sp
from test_cli import backpropc

import backpropc as bp
from backpropc import display
from backpropc.explain import bar, explain
from backpropc.latex import latex_name

ROOT = Path(__file__).resolve().parent.parent


def example(name):
    namespace = runpy.run_path(str(ROOT / "examples" / f"{name}.py"))
    return next(v for v in namespace.values() if isinstance(v, bp.Model))


@pytest.fixture(scope="module")
def logistic():
    return bp.compile(example("logistic"))


@pytest.mark.parametrize("name, latex", [
    ("z_bar", r"\bar{z}"), ("mu_bar", r"\bar{\mu}"), ("w1_2_3", "w^{(1)}_{2,3}"),
    ("w1_2_3_bar", r"\bar{w}^{(1)}_{2,3}"), ("W1_bar", r"\bar{W}_{1}"), ("lse_bar", r"\overline{\mathrm{lse}}"),
    ("L_reg", r"L_{\mathrm{reg}}"), ("lam", r"\lambda"), ("x", "x"),
])
def test_names_typeset_in_the_lectures_notation(name, latex):
    assert latex_name(name) == latex


def test_unicode_overbar_covers_the_whole_name():
    assert bar("z_bar") == "z\u0304"
    assert bar("mu_bar") == "m\u0305u\u0305"
    assert bar("w1_bar") == "w\u03051\u0305"
    assert bar("mu") == "mu"
    text = explain(bp.compile(example("gaussian_nll")), unicode=True)
    assert "m\u0305u\u0305 = -e\u0304" in text and "mu\u0304" not in text


def test_repr_latex_has_every_signal_typeset(logistic):
    latex = logistic._repr_latex_()
    assert latex.startswith("$$") and latex.endswith("$$")
    for line in (r"z &= b + w x", r"y &= \sigma\left(z\right)", r"\bar{y} &= y - t",
                 r"\bar{z} &= y \bar{y} \left(1 - y\right)", r"\bar{w} &= x \bar{z}", r"\bar{b} &= \bar{z}"):
        assert line in latex
    assert "sigmoid" not in latex and "_bar" not in latex


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed (.ci/run installs it)")
@pytest.mark.parametrize("method", ["_repr_html_", "_repr_markdown_"])
def test_rich_display_has_the_passes_the_cost_and_the_graph(logistic, method):
    text = getattr(logistic, method)()
    for signal in (r"\bar{y}", r"\bar{z}", r"\bar{w}", r"\bar{b}", r"\sigma\left(z\right)"):
        assert signal in text
    assert "6 operations forward, 13 for value and gradient (2.17x)" in text
    assert text.count("<svg") == 1 and "</svg>" in text and "<?xml" not in text
    assert "<title>z_bar</title>" in text  # the graph has the backward pass


@pytest.mark.parametrize("method", ["_repr_html_", "_repr_markdown_"])
def test_rich_display_without_graphviz_says_how_to_get_it(logistic, method, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    text = getattr(logistic, method)()
    assert "<svg" not in text and "apt-get install graphviz" in text
    assert r"\bar{z} &amp;= " in text if method == "_repr_html_" else r"\bar{z} &= " in text


def test_matrix_model_typesets_transposes_and_products():
    latex = bp.compile(example("vectorised_mlp"))._repr_latex_()
    assert r"\bar{h} &= W_{2}^{\top} \bar{y}" in latex and r"\bar{W}_{1} &= \bar{z} x^{\top}" in latex
    assert "matmul" not in latex and "transpose" not in latex


def test_check_and_compare_reports_render_as_tables():
    model = example("logistic")
    report = bp.check(model, points=1)
    html = report._repr_html_()
    assert "1 random point (seed 0)" in html and html.count("<tr>") == 3 and "<td>w</td>" in html
    comparison = bp.compare(model, batch=10, budget=5)
    html = comparison._repr_html_()
    assert html.count("<tr>") == 4 and "<td>naive_cse</td>" in html and "cheap-gradient bound" in html


def test_explain_formats_on_the_command_line():
    model = ROOT / "examples" / "logistic.py"
    latex = backpropc("explain", model, "--format", "latex")
    assert latex.returncode == 0 and r"\begin{aligned}" in latex.stdout and r"\bar{z} &= " in latex.stdout
    markdown = backpropc("explain", model, "--format", "markdown")
    assert markdown.returncode == 0 and markdown.stdout.count("$$") == 4 and "**logistic**" in markdown.stdout
    for text in (latex.stdout, markdown.stdout):  # an equation a line, with real line breaks
        assert "\\begin{aligned}\n" in text and "\\n" not in text
        assert any(line.startswith(r"\bar{z} &= ") for line in text.splitlines())
    bad = backpropc("explain", model, "--format", "html")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_operation_counts_have_thousands_separators(tmp_path):
    w, x = sp.symbols("w x")
    big = bp.compile(sum(sp.sin(w * x + k) for k in range(400)), wrt=[w], inputs=[x], name="big")
    assert big.ops["forward"] >= 1000
    cost = re.search(r"Cost: (\S+) operations forward, (\S+) for", explain(big))
    assert cost.groups() == (f"{big.ops['forward']:,}", f"{big.ops['value_and_grad']:,}")
    model = tmp_path / "big.py"
    model.write_text("import sympy as sp, backpropc as bp\nw, x = sp.symbols('w x')\n"
                     "model = bp.Model('big', [], sum(sp.sin(w*x + k) for k in range(400)), [w], [x])\n")
    run = backpropc("compile", model, "-o", tmp_path / "big_grad.py")
    assert run.returncode == 0 and f"({big.ops['forward']:,} ops forward" in run.stdout


def test_one_random_point_is_singular():
    model = ROOT / "examples" / "logistic.py"
    assert "1 random point (seed 0)" in backpropc("check", model, "--points", "1").stdout
    assert "2 random points (seed 0)" in backpropc("check", model, "--points", "2").stdout


def test_svg_without_graphviz_is_none(logistic, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert display.graph_svg(logistic) is None
