"""The real `backpropc` command, in a subprocess."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.stem.endswith("_grad"))


def backpropc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "backpropc", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_compile_with_check_on_every_example(example, tmp_path):
    out = tmp_path / f"{example.stem}_grad.py"
    run = backpropc("compile", example, "-o", out, "--check")
    assert run.returncode == 0, run.stderr
    assert "max relative error" in run.stdout and "ok" in run.stdout
    selfcheck = subprocess.run([sys.executable, str(out)], capture_output=True, text=True)
    assert selfcheck.returncode == 0


def test_default_output_is_beside_the_model(tmp_path):
    model = tmp_path / "m.py"
    model.write_text((ROOT / "examples" / "logistic.py").read_text())
    run = backpropc("compile", model)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "logistic_grad.py").is_file()


def test_console_script_is_installed():
    script = Path(sys.executable).parent / ("backpropc.exe" if os.name == "nt" else "backpropc")
    run = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "compile" in run.stdout


BAD_MODELS = {
    "syntax": ("x = (\n", "syntax error"),
    "raises": ("import sympy\nraise ValueError('boom')\n", "ValueError"),
    "no_model": ("import sympy\nx = 1\n", "defines no bp.Model"),
    "several": ("import runpy\ng = runpy.run_path({path!r})\na = g['model']\n"
                "import copy\nb = copy.copy(a)\nb.name = 'other'\n", "several models"),
    "not_scalar": ("import sympy as sp, backpropc as bp\nw = sp.Symbol('w')\n"
                   "model = bp.Model('m', [], sp.Matrix([w, w]), [w])\n", "not a scalar"),
    "undefined_function": ("import sympy as sp, backpropc as bp\nw = sp.Symbol('w')\n"
                           "model = bp.Model('m', [], sp.Function('f')(w), [w])\n", "undefined"),
    "unsupported_function": ("import sympy as sp, backpropc as bp\nw = sp.Symbol('w')\n"
                             "model = bp.Model('m', [], sp.fresnels(w), [w])\n", "fresnels"),
    "unused_wrt": ("import sympy as sp, backpropc as bp\nw, v = sp.symbols('w v')\n"
                   "model = bp.Model('m', [], w**2, [w, v])\n", "wrt symbol v does not occur"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_input_exits_2_with_one_line_and_keeps_existing_output(case, tmp_path):
    text, message = BAD_MODELS[case]
    model = tmp_path / "bad.py"
    model.write_text(text.format(path=str(ROOT / "examples" / "logistic.py")))
    for command, out in (("compile", tmp_path / "out.py"), ("graph", tmp_path / "out.dot")):
        out.write_text("# keep me\n")
        run = backpropc(command, model, "-o", out)
        assert run.returncode == 2
        assert message in run.stderr and "Traceback" not in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
        assert out.read_text() == "# keep me\n"
    for command in ("check", "explain"):
        run = backpropc(command, model)
        assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr


def test_error_names_the_line_of_an_exception_in_the_model_file(tmp_path):
    model = tmp_path / "bad.py"
    model.write_text("import sympy\n\nx = 1\ny = x / 0\n")
    run = backpropc("compile", model)
    assert run.returncode == 2 and "bad.py:4" in run.stderr and "ZeroDivisionError" in run.stderr
    debug = backpropc("compile", model, "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_missing_model_file_and_missing_output_folder(tmp_path):
    run = backpropc("compile", tmp_path / "nothere.py")
    assert run.returncode == 2 and "not found" in run.stderr
    run = backpropc("compile", EXAMPLES[0], "-o", tmp_path / "no" / "such" / "dir" / "out.py")
    assert run.returncode == 2 and "does not exist" in run.stderr and "Traceback" not in run.stderr
    (tmp_path / "file").write_text("")
    run = backpropc("compile", EXAMPLES[0], "-o", tmp_path / "file" / "out.py")  # parent is a file
    assert run.returncode == 2 and "Traceback" not in run.stderr


def test_unknown_model_name(tmp_path):
    run = backpropc("compile", ROOT / "examples" / "logistic.py", "--model", "nope")
    assert run.returncode == 2 and "no model named 'nope'" in run.stderr


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_check_explain_and_graph_on_every_example(example, tmp_path):
    run = backpropc("check", example)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "vs sympy.diff" in run.stdout and ": ok" in run.stdout
    run = backpropc("explain", example)
    assert run.returncode == 0 and "Forward pass:" in run.stdout and "_bar = " in run.stdout
    run = backpropc("graph", example, "-o", tmp_path / "g.dot", "--backward")
    assert run.returncode == 0 and (tmp_path / "g.dot").read_text().startswith("digraph")


def test_check_fails_with_exit_1_on_a_wrong_gradient(tmp_path):
    model = tmp_path / "wrong.py"
    model.write_text(
        "import sympy as sp, backpropc as bp\n"
        "class bad(sp.Function):\n"
        "    def fdiff(self, argindex=1):\n"
        "        return 2*sp.cos(self.args[0])  # wrong on purpose: the derivative of sin is cos\n"
        "    def _numpycode(self, printer):\n"
        "        return 'np.sin(' + printer._print(self.args[0]) + ')'\n"
        "w = sp.Symbol('w')\n"
        "model = bp.Model('wrong', [], bad(w), [w])\n")
    run = backpropc("check", model)
    assert run.returncode == 1 and "FAILED" in run.stdout


def test_explain_logistic_matches_golden(update_golden):
    golden = ROOT / "tests" / "golden" / "logistic_explain.txt"
    run = backpropc("explain", ROOT / "examples" / "logistic.py")
    assert run.returncode == 0
    if update_golden:
        golden.write_text(run.stdout)
    assert run.stdout == golden.read_text()
    for line in ("z = b + w*x", "y = sigmoid(z)", "L = (y - t)**2/2", "y_bar = y - t",
                 "z_bar = y*y_bar*(1 - y)", "w_bar = x*z_bar", "b_bar = z_bar"):
        assert f"    {line}\n" in run.stdout
    unicode = backpropc("explain", ROOT / "examples" / "logistic.py", "--unicode")
    assert "z\u0304 = " in unicode.stdout and "σ(z)" in unicode.stdout


def test_graph_dot_has_the_expected_nodes_and_edges(tmp_path):
    out = tmp_path / "logistic.dot"
    assert backpropc("graph", ROOT / "examples" / "logistic.py", "-o", out).returncode == 0
    dot = out.read_text()
    for edge in ('"w" -> "z"', '"x" -> "z"', '"b" -> "z"', '"z" -> "y"', '"y" -> "L"', '"t" -> "L"'):
        assert edge in dot
    assert "z_bar" not in dot and "doubleoctagon" in dot
    assert backpropc("graph", ROOT / "examples" / "logistic.py", "-o", out, "--backward").returncode == 0
    dot = out.read_text()
    assert '"y_bar" -> "z_bar"' in dot and '"z_bar" -> "w_bar"' in dot and '"x" -> "w_bar"' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed (.ci/run installs it)")
def test_graph_renders_svg_with_graphviz(tmp_path):
    out = tmp_path / "logistic.svg"
    run = backpropc("graph", ROOT / "examples" / "logistic.py", "-o", out, "--backward")
    assert run.returncode == 0, run.stderr
    assert out.stat().st_size > 1000 and "<svg" in out.read_text()


def test_graph_without_graphviz_says_how_to_get_it(tmp_path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # no `dot` on this PATH
    run = subprocess.run([sys.executable, "-m", "backpropc", "graph", str(ROOT / "examples" / "logistic.py"),
                          "-o", str(tmp_path / "g.svg")], capture_output=True, text=True, env=env)
    assert run.returncode == 2 and "apt-get install graphviz" in run.stderr
    assert not (tmp_path / "g.svg").exists()


def test_written_files_get_ordinary_permissions(tmp_path):
    out = tmp_path / "m_grad.py"
    assert backpropc("compile", EXAMPLES[0], "-o", out).returncode == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("option", [["--points", "0"], ["--batch", "0"], ["--tolerance", "-1"]])
def test_check_refuses_meaningless_options(option):
    run = backpropc("check", ROOT / "examples" / "logistic.py", *option)
    assert run.returncode == 2 and "Traceback" not in run.stderr


def test_model_path_that_is_a_folder(tmp_path):
    run = backpropc("compile", tmp_path)
    assert run.returncode == 2 and "is a folder" in run.stderr


def test_readme_synopsis_is_the_usage_of_every_command():
    """The README's command synopsis is `backpropc COMMAND --help`'s usage, command by command
    (compared with whitespace collapsed, so line wrapping may differ)."""
    from backpropc.cli import build_parser

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Command line\n\n```\n", 1)[1].split("```", 1)[0]
    entries = [" ".join(entry.split()) for entry in ("\n" + block).split("\nbackpropc ")[1:]]
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    usages = [" ".join(p.format_usage().split()).removeprefix("usage: backpropc ") for p in commands.values()]
    assert sorted(entries) == sorted(usages)
