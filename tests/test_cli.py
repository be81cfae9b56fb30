"""The real `backpropc` command, in a subprocess."""

import os
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
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_input_exits_2_with_one_line_and_keeps_existing_output(case, tmp_path):
    text, message = BAD_MODELS[case]
    model = tmp_path / "bad.py"
    model.write_text(text.format(path=str(ROOT / "examples" / "logistic.py")))
    out = tmp_path / "out.py"
    out.write_text("# keep me\n")
    run = backpropc("compile", model, "-o", out)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert out.read_text() == "# keep me\n"


def test_missing_model_file_and_missing_output_folder(tmp_path):
    run = backpropc("compile", tmp_path / "nothere.py")
    assert run.returncode == 2 and "not found" in run.stderr
    run = backpropc("compile", EXAMPLES[0], "-o", tmp_path / "no" / "such" / "dir" / "out.py")
    assert run.returncode == 2 and "does not exist" in run.stderr and "Traceback" not in run.stderr


def test_unknown_model_name(tmp_path):
    run = backpropc("compile", ROOT / "examples" / "logistic.py", "--model", "nope")
    assert run.returncode == 2 and "no model named 'nope'" in run.stderr
