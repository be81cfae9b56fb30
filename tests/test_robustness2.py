"""Robustness, round 2: output paths, wrongly typed model arguments, hostile model files,
control characters in terminal text, names Python normalises, text escaping for generated
source, and gradient checks near singularities."""

import ast
import io
import os
import runpy
import stat
import subprocess
import sys
import tokenize
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from oracle import assert_close, sympy_gradient

import backpropc as bp
from backpropc import cli
from backpropc.errors import ModelError, OutputPathError
from backpropc.naming import (
    Namer,
    clean,
    comment_text,
    docstring_text,
    printable,
    python_string,
)

ROOT = Path(__file__).resolve().parent.parent
MODEL = ("import sympy as sp, backpropc as bp\n"
         "w, x = sp.symbols('w x')\n"
         "model = bp.Model({name!r}, [], w**2*x, [w])\n")


def backpropc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "backpropc", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, check=False)


def one_line_error(run):
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    return run.stderr


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(MODEL.format(name="m"))
    return path


def identity(path):
    """What must not change about a path that is refused."""
    st = os.lstat(path)
    return st.st_ino, st.st_mode, st.st_rdev, st.st_size, st.st_mtime_ns


# ---- output paths --------------------------------------------------------------------------
@pytest.mark.parametrize("command, name", [("compile", "out.py"), ("graph", "out.dot")])
def test_a_fifo_is_not_replaced(model_file, tmp_path, command, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    before = identity(fifo)
    assert "FIFO" in one_line_error(backpropc(command, model_file, "-o", fifo))
    assert identity(fifo) == before and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_device_is_not_replaced(model_file, tmp_path):
    if os.geteuid() == 0:  # as root a regression would replace the real /dev/null: use a copy of it
        device = tmp_path / "null"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        device = Path("/dev/null")
    before = identity(device)
    assert "character device" in one_line_error(backpropc("compile", model_file, "-o", device))
    assert identity(device) == before and stat.S_ISCHR(os.lstat(device).st_mode)


def test_the_api_refuses_what_is_not_a_regular_file(tmp_path):
    compiled = bp.compile(sp.Symbol("w") ** 2, wrt=[sp.Symbol("w")], name="m")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OutputPathError, match="FIFO"):
        compiled.write(tmp_path / "fifo")
    with pytest.raises(OutputPathError, match="folder"):
        compiled.write(tmp_path)


def test_the_model_file_itself_is_not_overwritten(model_file, tmp_path):
    text = model_file.read_text()
    (tmp_path / "link.py").symlink_to(model_file)
    os.link(model_file, tmp_path / "hard.py")
    for out in (model_file, tmp_path / "link.py", tmp_path / "hard.py", tmp_path / "." / "m.py"):
        for command in ("compile", "graph"):
            assert "model file" in one_line_error(backpropc(command, model_file, "-o", out))
    assert model_file.read_text() == text


def test_a_symlink_is_written_through_to_its_target(model_file, tmp_path):
    target = tmp_path / "target.py"
    target.write_text("# old\n")
    link = tmp_path / "link.py"
    link.symlink_to(target)
    dangling = tmp_path / "dangling.py"
    dangling.symlink_to(tmp_path / "new_target.py")
    for out, written in ((link, target), (dangling, tmp_path / "new_target.py")):
        run = backpropc("compile", model_file, "-o", out)
        assert run.returncode == 0, run.stderr
        assert out.is_symlink() and "def value_and_grad" in written.read_text()


def test_an_existing_file_keeps_its_mode(model_file, tmp_path):
    out = tmp_path / "out.py"
    out.write_text("")
    out.chmod(0o700)
    assert backpropc("compile", model_file, "-o", out).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o700 and "def grad" in out.read_text()
    out.chmod(0o640)
    bp.compile(sp.Symbol("w") ** 2, wrt=[sp.Symbol("w")]).write(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_a_file_name_too_long_is_one_line(model_file, tmp_path):
    assert "too long" in one_line_error(backpropc("compile", model_file, "-o", tmp_path / ("a" * 300 + ".py")))
    assert "too long" in one_line_error(backpropc("graph", model_file, "-o", tmp_path / ("a" * 300 + ".dot")))
    longest = tmp_path / ("a" * 250 + ".py")  # fits; its temporary file must fit too
    assert backpropc("compile", model_file, "-o", longest).returncode == 0 and longest.is_file()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


# ---- model API: strings and wrong types ----------------------------------------------------
x, y, w = sp.symbols("x y w")
EVIL = "__import__('os').system('touch PWNED')"


@pytest.mark.parametrize("kwargs, message", [
    ({"loss": "x**2", "wrt": [x]}, "string"),
    ({"loss": EVIL, "wrt": [x]}, "string"),
    ({"steps": [(y, EVIL)], "loss": y, "wrt": [x]}, "step y is the string"),
    ({"steps": [(y, x)], "loss": b"x", "wrt": [x]}, "string"),
    ({"loss": x ** 2, "wrt": 5}, "wrt must be a list"),
    ({"loss": x ** 2, "wrt": [x], "inputs": 5}, "inputs must be a list"),
    ({"steps": 5, "loss": x, "wrt": [x]}, "steps must be a list"),
    ({"steps": "y = x", "loss": x, "wrt": [x]}, "steps must be a list"),
    ({"steps": x, "loss": x, "wrt": [x]}, "steps must be a list"),
    ({"loss": x ** 2, "wrt": {x}}, "not a set"),
    ({"loss": x ** 2, "wrt": [5]}, "must hold SymPy symbols"),
    ({"loss": object(), "wrt": [x]}, "not a SymPy expression"),
])
def test_strings_and_wrong_types_are_typed_errors(kwargs, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match=message):
        bp.compile(bp.Model("m", **kwargs))
    assert not (tmp_path / "PWNED").exists()


def test_a_name_in_wrt_is_a_symbol_name_not_an_expression():
    m = bp.compile(bp.Model("m", [], x ** 2 * y, wrt=["x"], inputs=["y"])).load()
    assert m.ARGS == ("x", "y") and m.grad(3.0, 2.0) == (12.0,)
    with pytest.warns(bp.errors.UnusedWrtWarning, match="x\\+y"):  # a plain symbol named "x+y"
        bp.compile(bp.Model("m", [], x ** 2, wrt=["x", "x+y"]))


def test_numbers_are_still_accepted_as_losses_and_steps():
    m = bp.compile(bp.Model("m", [(y, np.float64(2.0) * x)], y + 3, wrt=[x])).load()
    assert m.value_and_grad(1.0) == (5.0, (2.0,))


# ---- model files in the command line -------------------------------------------------------
HOSTILE_FILES = {
    "base_exception": ("class Stop(BaseException):\n    pass\nraise Stop('halt')\n", "Stop"),
    "exit_0": ("import sys\nsys.exit(0)\n", "sys.exit(0)"),
    "exit_3": ("import sys\nsys.exit(3)\n", "sys.exit(3)"),
    "exit_text": ("raise SystemExit('bye')\n", "sys.exit('bye')"),
    "recursion_limit": (MODEL.format(name="m") + "import sys\nsys.setrecursionlimit(50)\n", "recursion limit"),
    "unprintable": ("class E(Exception):\n    def __str__(self):\n        raise ValueError\nraise E()\n", "E while"),
    "nul_name": (MODEL.format(name="a\0b"), "NUL"),
    "domains_reversed": (MODEL.format(name="m") + "DOMAINS = {'x': (1, 0)}\n", "low < high"),
    "domains_none": (MODEL.format(name="m") + "DOMAINS = {'x': None}\n", "pair of numbers"),
    "domains_nan": (MODEL.format(name="m") + "DOMAINS = {'x': (float('nan'), 1)}\n", "finite"),
    "domains_text": (MODEL.format(name="m") + "DOMAINS = {'x': 'wide'}\n", "pair of numbers"),
    "domains_digits": (MODEL.format(name="m") + "DOMAINS = {'x': '12'}\n", "pair of numbers"),
    "domains_three": (MODEL.format(name="m") + "DOMAINS = {'x': (0, 1, 2)}\n", "pair of numbers"),
    "domains_list": (MODEL.format(name="m") + "DOMAINS = [(0, 1)]\n", "must be a dict"),
    "domains_key": (MODEL.format(name="m") + "DOMAINS = {1: (0, 1)}\n", "not an argument name"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_model_files_are_one_line_errors(case, tmp_path):
    text, message = HOSTILE_FILES[case]
    path = tmp_path / "bad.py"
    path.write_text(text)
    for command in ("check", "compile"):
        assert message in one_line_error(backpropc(command, path, "-o", tmp_path / "out.py")
                                         if command == "compile" else backpropc(command, path))
    assert not (tmp_path / "out.py").exists()


def test_the_recursion_limit_is_restored(tmp_path, capsys):
    limit = sys.getrecursionlimit()
    path = tmp_path / "low.py"
    path.write_text(MODEL.format(name="m") + "import inspect, sys\n"
                    "sys.setrecursionlimit(len(inspect.stack()) + 40)\n")
    assert cli.main(["explain", str(path)]) == 2
    assert "recursion limit" in capsys.readouterr().err
    assert sys.getrecursionlimit() == limit
    path.write_text(MODEL.format(name="m") + f"import sys\nsys.setrecursionlimit({limit + 500})\n")
    assert cli.main(["explain", str(path)]) == 0  # raising it is allowed (deep expressions need it)
    sys.setrecursionlimit(limit)


def test_domains_are_validated_by_the_api_too():
    with pytest.raises(ModelError, match="low < high"):
        bp.check(bp.Model("m", [], w ** 2 * x, [w]), domains={"x": (2, 1)})
    assert bp.check(bp.Model("m", [], w ** 2 * x, [w]), domains={x: (1, 2)}).ok  # a Symbol key works


# ---- control characters reach the terminal escaped -----------------------------------------
CONTROL = "\x1b[2J\x07\r\n\x00\u202e\u2028\x85\x7f"


def test_printable_escapes_like_repr():
    assert printable("a\x1b[31mb\nc") == "a\\x1b[31mb\\nc"
    assert printable("α σ z\u0304 ok") == "α σ z\u0304 ok"
    assert all(c.isprintable() for c in printable(CONTROL))


def test_explain_check_and_errors_escape_control_characters(tmp_path):
    path = tmp_path / "ctl.py"
    path.write_text("import sympy as sp, backpropc as bp\n"
                    f"w, x = sp.Symbol({('w' + CONTROL)!r}), sp.Symbol('x')\n"
                    f"model = bp.Model({('evil' + CONTROL.replace(chr(0), ''))!r}, [], w**2*x, [w])\n")
    for command in ("explain", "check"):
        run = backpropc(command, path)
        assert run.returncode == 0, run.stderr
        assert all(c.isprintable() for line in run.stdout.splitlines() for c in line)
        assert "evil\\x1b[2J" in run.stdout
    s = sp.Symbol("s" + CONTROL)
    with pytest.raises(ModelError) as error:
        bp.compile(bp.Model("m", [(s, w), (s, 2 * w)], s, [w]))
    assert "s\\x1b[2J" in str(error.value) and all(c.isprintable() for c in str(error.value))
    path.write_text("import sympy as sp, backpropc as bp\n"
                    f"s, w = sp.Symbol({('s' + CONTROL)!r}), sp.Symbol('w')\n"
                    "model = bp.Model('m', [(s, w), (s, 2*w)], s, [w])\n")
    assert "s\\x1b[2J" in one_line_error(backpropc("check", path))


# ---- names Python normalises ---------------------------------------------------------------
NORMALISED = ["\u0303", "\u1e7d", "v\u0303", "\ufb01", "fi", "\uff58", "x", "\u0323", "\u1e7f", "\u00b2",
              "\u2168", "IX", "\uff4c\uff41\uff4d\uff42\uff44\uff41", "_\u0303", "1\u0303", "\u00bc"]


@pytest.mark.parametrize("name", NORMALISED)
def test_clean_gives_the_identifier_python_sees(name):
    text = clean(name)
    assert text.isidentifier() and unicodedata.normalize("NFKC", text) == text
    assert not text.startswith("_")
    namespace = {}
    exec(f"{text} = 1", namespace)  # noqa: S102 - a cleaned name, the point of the test
    assert text in namespace  # the name Python bound is the name we gave


def test_namer_gives_names_distinct_as_python_sees_them():
    namer = Namer()
    names = [namer.fresh(n) for n in NORMALISED]
    assert len({unicodedata.normalize("NFKC", n) for n in names}) == len(NORMALISED)


def test_names_that_collide_only_after_nfkc_keep_the_gradient_exact():
    """A step named with a combining tilde used to become `v` + tilde, which Python composes into
    `ṽ`: the step overwrote the argument `ṽ`, and the gradient came out wrong."""
    a, b, c = sp.Symbol("\u1e7d"), sp.Symbol("x"), sp.Symbol("fi")      # ṽ, x, fi
    t, u, f = sp.Symbol("\u0303"), sp.Symbol("\uff58"), sp.Symbol("\ufb01")  # tilde, full-width x, ﬁ
    dot = sp.Symbol("\u0323")                                            # combining dot below: ṿ
    model = bp.Model("nfkc", [(t, a * b + 1), (u, sp.sin(t)), (f, u * a), (dot, f * c)],
                     dot + b ** 2 + a * t, [a, b], [c])
    compiled = bp.compile(model)
    names = [unicodedata.normalize("NFKC", n) for n in compiled.args]
    assert len(set(names)) == len(names)
    assigned = [node.targets[0].id for node in ast.walk(ast.parse(compiled.source))
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)]
    for function in ("forward", "value_and_grad"):  # no step reuses an argument's name
        tree = next(n for n in ast.walk(ast.parse(compiled.source)) if isinstance(n, ast.FunctionDef)
                    and n.name == function)
        params = {arg.arg for arg in tree.args.args}
        written = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        assert not params & written, params & written
    assert assigned
    m = compiled.load()
    point = {"\u1e7d": 0.7, "x": -1.3, "fi": 0.4}
    grads = m.grad(**dict(zip(m.ARGS, point.values())))
    exact = sympy_gradient(model, [a, b, c], point)
    assert_close(grads, exact, 1e-12)
    assert abs(grads[0]) > 0.1


# ---- escaping user text for generated source -----------------------------------------------
HOSTILE_TEXT = ['"', "'", '"""', "'''", '\\', 'a\\', '\\"""', 'x"""\nimport os; os.system("touch PWNED")\n"""',
                "\n", "\r", "\r\n", "\x00", "\u2028", "\u2029", "\x85", "\x0b\x0c", "\x1b[2J", "\u202e",
                "\t", "# -*- coding: rot13 -*-", "coding=latin-1", "{x}", "%s", "\\N{BULLET}", "\\x41",
                "\ud800", "tail\\", "end\"", "ü\u0301", "", "'''\"\"\"\\\n\r\x00"]


def _no_side_effects(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(source, "<test>", "exec"), {})  # noqa: S102 - must have no side effects
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=ascii)
def test_python_string_round_trips(text, tmp_path, monkeypatch):
    literal = python_string(text)
    tree = ast.parse(f"value = {literal}\n")
    assert len(tree.body) == 1 and ast.literal_eval(tree.body[0].value) == text
    assert "\n" not in literal and all(c.isprintable() for c in literal)
    _no_side_effects(f"value = {literal}\n", tmp_path, monkeypatch)


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=ascii)
def test_comment_text_stays_a_comment(text, tmp_path, monkeypatch):
    comment = comment_text(text)
    source = f"# {comment}\n# {comment}\nvalue = 1  # {comment}\n"
    assert all(c.isprintable() for c in comment)
    assert tokenize.detect_encoding(io.BytesIO(source.encode("utf-8", "surrogatepass")).readline)[0] == "utf-8"
    tree = ast.parse(source)
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Assign)
    comments = [tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT]
    assert comments == [f"# {comment}"] * 3
    _no_side_effects(source, tmp_path, monkeypatch)


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=ascii)
@pytest.mark.parametrize("raw", ["", "r"])
def test_docstring_text_stays_in_the_docstring(text, raw, tmp_path, monkeypatch):
    inside = docstring_text(text)
    source = f'def f():\n    {raw}"""Gradient of {inside}"""\n    return 1\n'
    tree = ast.parse(source)
    body = tree.body[0].body
    assert len(tree.body) == 1 and len(body) == 2 and isinstance(body[1], ast.Return)
    doc = ast.get_docstring(tree.body[0], clean=False)
    assert "\n" not in doc and all(c.isprintable() for c in doc)
    if not raw:
        assert doc == f"Gradient of {printable(text)}"
    _no_side_effects(source, tmp_path, monkeypatch)


# ---- check near a singularity --------------------------------------------------------------
@pytest.fixture(scope="module")
def lennard_jones():
    return runpy.run_path(str(ROOT / "examples" / "lennard_jones.py"))["model"]


@pytest.mark.parametrize("seed", range(10))
def test_check_passes_an_exact_lennard_jones_gradient(lennard_jones, seed):
    """Random points put two atoms nearly on top of each other (seeds 2, 4, 6 and 8 used to say
    FAILED, with a relative error up to 1.0, against a gradient exact to 1e-15)."""
    report = bp.check(lennard_jones, seed=seed)
    assert report.ok, report.format()
    assert all(r.sympy_error < 1e-10 for r in report.rows)
    if seed == 2:
        assert report.unreliable_points >= 1 and "finite differences unreliable" in report.format()


def test_check_still_fails_a_wrong_gradient_near_a_singularity():
    class wrong(sp.Function):  # a 1% error in the derivative of 1/r**12
        def fdiff(self, argindex=1):
            return -12.12 * self.args[0] ** -13

        def _numpycode(self, printer):
            return f"({printer._print(self.args[0])})**-12.0"
    r = sp.Symbol("r")
    model = bp.Model("wrong", [], wrong(r), [r])
    for seed in range(3):
        report = bp.check(model, seed=seed)
        assert not report.ok, report.format()


def test_unreliable_finite_differences_without_sympy_are_not_a_pass():
    model = bp.Model("logistic", [], (bp.sigmoid(w * x) - y) ** 2, [w])
    report = bp.check(model, tolerance=1e-15, sympy_limit=0)
    assert not report.ok and "not verified: w" in report.format()
    assert bp.check(model, tolerance=1e-15).ok  # sympy.diff decides where differences cannot


def test_the_report_says_batch_only_for_models_with_data(lennard_jones):
    assert "batch" not in bp.check(lennard_jones).format()
    assert "batches of 4" in bp.check(bp.Model("m", [], w ** 2 * x, [w])).format()



def test_check_and_compare_map_argument_names_that_were_cleaned():
    """The oracle looks arguments up by the symbols' own names, not the module's (`lambda_`)."""
    lam = sp.Symbol("lambda")
    assert bp.check(bp.Model("m", [], lam ** 2 * x, [lam])).ok
    W, X = sp.MatrixSymbol("lambda", 2, 1), sp.MatrixSymbol("1st", 2, 1)
    model = bp.Model("m", [], bp.sum(W.T * X) ** 2, [W], [X])
    report = bp.check(model)
    assert report.ok and report.rows[0].sympy_error < 1e-12, report.format()
    assert all(r.status == "ok" for r in bp.compare(model, batch=5, budget=5).rows)


def test_backpropc_functions_of_numbers_are_comparable():
    """Found by the fuzzing campaign: sympy.Max(bp.logsumexp(0, 0), w) raised "not comparable"
    while the user built the model, since logsumexp, softplus and relu of numbers had no value."""
    assert bp.logsumexp(0, 0).evalf() == pytest.approx(np.log(2))
    assert bp.softplus(1).evalf() == pytest.approx(np.log1p(np.e)) and bp.relu(-2).evalf() == 0
    m = bp.compile(sp.Max(bp.logsumexp(0, 0), w) + sp.Min(bp.softplus(0), 2 * w) + sp.Max(bp.relu(1), w),
                   wrt=[w]).load()
    for at, value, slope in ((3.0, 6 + np.log(2), 2.0), (0.5, 1 + 2 * np.log(2), 0.0)):
        v, (g,) = m.value_and_grad(at)
        assert v == pytest.approx(value) and g == slope


@pytest.mark.parametrize("derivatives", [("grad",), ("grad", "hvp")])
def test_a_step_that_is_also_an_error_signal_is_read_by_its_first_name_on_floats(derivatives):
    """In w6 = w0*w5 the error signal of w5 is the step w0 itself, so the backward pass names it
    again (w5_bar = w0). The straight-line code on floats read w6 = w5*w5_bar before that line."""
    w, b, lam = sp.symbols("w b lam")
    w0, w5, w6 = sp.symbols("w0 w5 w6")
    model = bp.Model("m", [(w0, sp.Piecewise((sp.log(lam), lam > 1), (lam - 1, True))),
                           (w5, sp.exp(sp.sqrt((b + w) ** 2 + 1))), (w6, w0 * w5)],
                     b ** 2 + b * w ** 2 + w ** 2 + w6, [w, b], [lam])
    module = bp.compile(model, derivatives=derivatives).load()
    for lam_value in (2.0, 0.5):  # both branches
        value, grads = module.value_and_grad(0.5, 0.3, lam_value)  # Python floats: the scalar code
        as_arrays = module.value_and_grad(np.array([0.5]), np.array([0.3]), np.array([lam_value]))
        assert type(value) is float and value == pytest.approx(float(as_arrays[0]), rel=1e-14)
        point = {"w": 0.5, "b": 0.3, "lam": lam_value}
        assert_close(np.array(grads), sympy_gradient(model, model.wrt + model.inputs, point), 1e-12)
        h = 1e-6
        estimate = (module.value_and_grad(0.5 + h, 0.3, lam_value)[0] - module.value_and_grad(0.5 - h, 0.3, lam_value)[0]) / (2 * h)
        assert grads[0] == pytest.approx(estimate, rel=1e-6)
        if "hvp" in derivatives:
            _, _, hv = module.hvp(0.5, 0.3, lam_value, 1.0, 0.0)
            _, _, hv_arrays = module.hvp(np.array([0.5]), np.array([0.3]), np.array([lam_value]), 1.0, 0.0)
            np.testing.assert_allclose(np.ravel(hv), np.ravel(hv_arrays), rtol=1e-13)


# ---- found by a fuzzing campaign over indexed models and the second-order forms -------------------
def _hessian_of(loss, wrt, point):
    return np.array(sp.hessian(loss, wrt).subs(point), dtype=float)


@pytest.mark.parametrize("loss", [sp.Symbol("x0") + sp.Symbol("x1") + sp.Symbol("x2"),
                                  sp.Symbol("x0") + 2 * sp.Symbol("x1") + sp.Symbol("x2") + sp.Symbol("x1") ** 2])
def test_a_hessian_vector_product_has_an_entry_for_every_parameter(loss):
    """Parameters whose gradients are one node (1, or 2 twice) each keep their own entry of the
    product, on floats as with arrays: hvp_flat has the length of theta."""
    xs = sp.symbols("x0:3")
    module = bp.compile(loss, wrt=list(xs), derivatives=("grad", "hvp")).load()
    point, direction = [0.1, 0.2, 0.3], np.array([1.0, -2.0, 0.5])
    exact = _hessian_of(loss, xs, dict(zip(xs, point))) @ direction
    on_floats = module.hvp(*point, *direction)[2]
    on_arrays = module.hvp(*map(np.array, point), *map(np.array, direction))[2]
    assert len(on_floats) == len(on_arrays) == 3
    assert_close(np.array(on_floats, dtype=float), exact, 1e-12, atol=1e-12)
    assert_close(np.ravel(on_arrays), exact, 1e-12, atol=1e-12)
    assert_close(module.hvp_flat(np.array(point), direction), exact, 1e-12, atol=1e-12)


def test_a_gradient_that_is_an_argument_of_a_blocked_model_is_that_argument():
    """d(b*s)/db is s: in a model with a Sum (evaluated in blocks) it was printed as the mean's
    seed 1/N."""
    n = sp.Symbol("n", integer=True, positive=True)
    x, i = sp.IndexedBase("x", shape=(n,)), sp.Symbol("i", integer=True)
    a, b, s = sp.symbols("a b s")
    module = bp.compile(b * s + a * b + sp.Sum(x[i], (i, 0, n - 1)), wrt=[x, a, b]).load()
    _, (gx, ga, gb) = module.value_and_grad(np.ones(3), 2.0, 3.0, np.array([-0.5, 3.0]))
    assert_close(gx, np.full(3, 2.0), 1e-12)
    assert ga == pytest.approx(2 * 3.0) and gb == pytest.approx(-0.5 + 3.0 + 2 * 2.0)


def test_a_dot_product_over_a_fraction_is_divided_by_it():
    """Sum(x[n-1-i]**2/2)/8 (a gather: the dot product is printed apart from the blocks) is
    the dot product over 16; it was printed 1/(8*2*_lane_dot(...)), a reciprocal."""
    n = sp.Symbol("n", integer=True, positive=True)
    x, i, j = sp.IndexedBase("x", shape=(n,)), sp.Symbol("i", integer=True), sp.Symbol("j", integer=True)
    v = np.array([0.3, -0.5, 0.8, 0.4])
    for loss, want, grad in [
            (sp.Sum(x[n - 1 - i] ** 2 / 2, (i, 0, n - 1)) / 8, np.sum(v ** 2) / 16, v / 8),
            (sp.Sum(x[i] * x[j] / 2, (j, 0, i), (i, 0, n - 1)) / 8,
             sum(v[p] * v[q] for p in range(4) for q in range(p + 1)) / 16,
             (np.sum(v) + v) / 16)]:
        module = bp.compile(loss, wrt=[x], derivatives=("grad", "hvp")).load()
        value, (g,) = module.value_and_grad(v)
        assert value == pytest.approx(want, rel=1e-12) and module.hvp(v, np.ones(4))[0] == pytest.approx(want)
        assert_close(g, grad, 1e-12)


def test_a_step_that_is_a_constant_expression_is_its_value_where_used():
    """y's signal is the step c = sin(1/2), a constant: no alias y_bar = c was named (KeyError)."""
    a, c, y = sp.symbols("a c y")
    module = bp.compile(bp.Model("m", steps=[(c, sp.sin(sp.Rational(1, 2))), (y, a ** 2)], loss=c * y,
                                 wrt=[a]), derivatives=("grad", "hvp")).load()
    value, (g,) = module.value_and_grad(1.3)
    assert value == pytest.approx(np.sin(0.5) * 1.69) and g == pytest.approx(2 * np.sin(0.5) * 1.3)
    assert module.hvp(1.3, 1.0)[2][0] == pytest.approx(2 * np.sin(0.5))
