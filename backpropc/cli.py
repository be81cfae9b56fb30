"""The `backpropc` command: compile, check, explain, graph, compare.

Exit codes: 0 success, 1 a check failed, 2 bad input (one line on stderr naming the problem and
the fix; `--debug` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import os
import runpy
import sys
import traceback
import warnings
from pathlib import Path

from . import __version__
from .check import check, sampling_domains
from .compare import compare
from .compiler import Compiled, compile
from .drawing import GraphvizMissing, to_dot, write_graph
from .errors import BackpropcError, OutputPathError, UnusedWrtWarning
from .explain import FORMATS, explain
from .files import output_target
from .model import REDUCTIONS, Model
from .naming import clean, printable


class UserError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


def load_models(path: str) -> tuple[dict[str, Model], dict]:
    """Run a model file (the user's own Python): the Models it defines at top level, by name,
    and its DOMAINS (argument name -> sampling range for checks), if it has any."""
    file = Path(path)
    if file.is_dir():
        raise UserError(f"{path} is a folder; pass the path of a .py file that defines a bp.Model")
    if not file.is_file():
        raise UserError(f"model file {path} not found; pass the path of a .py file that defines a bp.Model")
    try:
        ast.parse(file.read_text(encoding="utf-8"), str(file))
    except SyntaxError as exc:
        raise UserError(f"{path}:{exc.lineno}: syntax error: {exc.msg}; fix the model file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    sys.path.insert(0, str(file.resolve().parent))
    limit = sys.getrecursionlimit()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            namespace = runpy.run_path(str(file), run_name="__backpropc_model__")
    except BackpropcError as exc:
        raise UserError(f"{path}: {exc}") from exc
    except SystemExit as exc:  # even exit(0): no model was defined, nothing will be written
        raise UserError(f"{path}: the model file called sys.exit({exc.code!r}); a model file must "
                        f"define models, not exit") from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the user's own exception classes too, but not Ctrl-C
        line = _line_in(exc, file)
        where = f"{path}:{line}" if line else path
        raise UserError(f"{where}: {type(exc).__name__} while running the model file: {_describe(exc)}; "
                        f"fix the model file (--debug shows the traceback)") from exc
    finally:
        sys.path.pop(0)
        lowered = sys.getrecursionlimit() < limit
        sys.setrecursionlimit(max(limit, sys.getrecursionlimit()))  # raising it is the user's business
    if lowered:
        raise UserError(f"{path}: the model file lowered the recursion limit below {limit}, which "
                        f"compiling needs; remove its sys.setrecursionlimit call")
    models = {}
    for var, value in namespace.items():
        if isinstance(value, Model) and not var.startswith("_"):
            models.setdefault(value.name, value)
    try:
        return models, sampling_domains(namespace.get("DOMAINS"))
    except BackpropcError as exc:
        raise UserError(f"{path}: {exc}") from exc


def _describe(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # the user's own exception class may not even print
        return "(its message cannot be printed)"


def _line_in(exc: BaseException, file: Path) -> int | None:
    """The line of the model file where an exception was raised (innermost frame in that file)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == file.resolve():
            line = frame.lineno
    return line


def select_model(path: str, name: str | None) -> tuple[Model, dict]:
    models, domains = load_models(path)
    if not models:
        raise UserError(f"{path} defines no bp.Model at top level; add one, e.g. model = bp.Model(...)")
    if name is not None:
        if name not in models:
            raise UserError(f"{path} has no model named {name!r}; it has: {', '.join(models)}")
        return models[name], domains
    if len(models) > 1:
        raise UserError(f"{path} defines several models ({', '.join(models)}); choose one with --model NAME")
    return next(iter(models.values())), domains


def compile_file(args) -> tuple[Compiled, dict]:
    """Compile the selected model of a model file; a wrt symbol the loss never uses is an error."""
    chosen, domains = select_model(args.model_file, args.model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnusedWrtWarning)
            return compile(chosen, reduction=getattr(args, "reduction", "sum"),
                           rewrite=not args.no_rewrite, reroll=not getattr(args, "no_reroll", False),
                           derivatives=getattr(args, "derivatives", "grad")), domains
    except UnusedWrtWarning as exc:
        raise UserError(f"{args.model_file}: {exc}; remove it from wrt") from exc
    except BackpropcError as exc:
        raise UserError(f"{args.model_file}: {exc}") from exc


def cmd_compile(args) -> int:
    compiled, domains = compile_file(args)
    out = Path(args.output) if args.output else \
        Path(args.model_file).resolve().parent / f"{clean(compiled.name)}_grad.py"
    _check_output(out, args.model_file)
    try:
        compiled.write(out)
    except OutputPathError as exc:  # it changed since _check_output
        raise UserError(str(exc)) from exc
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}; choose another -o path") from exc
    print(f"wrote {printable(out)} ({compiled.ops['forward']:,} ops forward, "
          f"{compiled.ops['value_and_grad']:,} ops value and gradient)")
    if args.check:
        return 1 if compiled.load()._self_check() else 0
    return 0


def cmd_check(args) -> int:
    _require(args.points >= 1, "--points must be at least 1")
    _require(args.batch >= 1, "--batch must be at least 1")
    _require(0 < args.tolerance < float("inf"), "--tolerance must be a positive number")
    compiled, domains = compile_file(args)
    report = check(compiled, seed=args.seed, points=args.points, batch=args.batch,
                   tolerance=args.tolerance, domains=domains)
    print(report.format())
    return 0 if report.ok else 1


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def cmd_compare(args) -> int:
    _require(args.batch >= 1, "--batch must be at least 1")
    _require(0 < args.budget < float("inf"), "--budget must be a positive number of seconds")
    compiled, domains = compile_file(args)
    # The model is compiled again inside compare() so that its compile time is measured.
    try:
        result = compare(select_model(args.model_file, args.model)[0], batch=args.batch, budget=args.budget,
                         seed=args.seed, domains=domains, rewrite=not args.no_rewrite)
    except ValueError as exc:
        raise UserError(f"{exc}; give sampling ranges in a DOMAINS dict in the model file") from exc
    print(result.to_json() if args.json else result.format())
    return 0


def cmd_explain(args) -> int:
    compiled, _ = compile_file(args)
    print(explain(compiled, unicode=args.unicode, format=args.format), end="")
    return 0


def cmd_graph(args) -> int:
    compiled, _ = compile_file(args)
    out = Path(args.output)
    _check_output(out, args.model_file)
    try:
        write_graph(to_dot(compiled, backward=args.backward), out)
    except (GraphvizMissing, OutputPathError) as exc:
        raise UserError(str(exc)) from exc
    except ValueError as exc:
        raise UserError(f"{exc}") from exc
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}; choose another -o path") from exc
    print(f"wrote {printable(out)}")
    return 0


def cmd_plot(args) -> int:
    from .plot import output_format, plot, save

    if args.output:
        try:
            output_format(args.output)
        except BackpropcError as exc:
            raise UserError(str(exc)) from exc
    compiled, domains = compile_file(args)
    data = _load_data(args.data) if args.data else None
    at = dict(_assignment(text) for text in args.at)
    labels = "_".join(args.params or ()) or "plot"
    out = Path(args.output) if args.output else \
        Path(args.model_file).resolve().parent / f"{clean(compiled.name)}_{clean(labels)}.png"
    _check_output(out, args.model_file)
    limits = None if args.xlim is None else [args.xlim] + ([args.ylim] if args.ylim else [])
    try:
        if args.ylim is not None and args.xlim is None:
            raise UserError("--ylim needs --xlim too")
        figure = plot(compiled, args.params or (), data=data, at=at, start=args.start, lr=args.lr,
                           steps=args.steps, batch=args.batch, seed=args.seed, domains=domains,
                           limits=limits)
        save(figure, out)
    except BackpropcError as exc:
        raise UserError(f"{args.model_file}: {exc}") from exc
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}; choose another -o path") from exc
    print(f"wrote {printable(out)}")
    return 0


def _load_data(path: str) -> dict:
    """Arrays by argument name from an .npz file (numpy.savez)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError as exc:
        raise UserError(f"data file {path} not found; pass an .npz file made with numpy.savez") from exc
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} as .npz data ({exc}); save the arrays with "
                        f"numpy.savez(path, x=..., t=...)") from exc


def _assignment(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise UserError(f"--at {text}: write NAME=NUMBER, e.g. --at b=0.5") from None


def _check_output(out: Path, model_file: str) -> None:
    """Refuse an output path whose folder is missing, that is not a regular file (files.py), or
    that is the model file itself (also through a symlink or a hard link)."""
    try:
        if not out.parent.is_dir():
            raise UserError(f"cannot write {out}: folder {out.parent} does not exist; create it or choose "
                            f"another -o path")
        target = output_target(out)
        if target.exists() and os.path.samefile(target, model_file):
            raise UserError(f"cannot write {out}: it is the model file {model_file}; choose another -o path")
    except OutputPathError as exc:
        raise UserError(str(exc)) from exc
    except OSError as exc:  # a name too long for the file system, a symlink loop, ...
        raise UserError(f"cannot write {out}: {exc.strerror or exc}; choose another -o path") from exc


EXAMPLES = {
    "compile": "backpropc compile examples/logistic.py --check\n"
               "  backpropc compile examples/mlp.py -o mlp_grad.py --reduction mean",
    "check": "backpropc check examples/black_scholes.py --points 5 --seed 1",
    "compare": "backpropc compare examples/mlp.py --batch 10000 --budget 5 --json",
    "explain": "backpropc explain examples/logistic.py --unicode\n"
               "  backpropc explain examples/mlp.py --format markdown > mlp.md",
    "graph": "backpropc graph examples/logistic.py -o logistic.svg --backward",
    "plot": "backpropc plot examples/logistic.py --params w b -o w_b.png --steps 50",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backpropc",
        description="Compile a SymPy forward pass into a standalone NumPy module with exact gradients.",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"backpropc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def command(name: str, help: str, description: str, run) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help, description=description,
                                epilog="example:\n  " + EXAMPLES[name],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("model_file", metavar="MODEL.py", help="a Python file that defines bp.Model objects")
        p.add_argument("--model", metavar="NAME", help="which model, when the file defines several")
        p.add_argument("--debug", action="store_true", help="show the traceback of an error")
        p.add_argument("--no-rewrite", action="store_true",
                       help="keep unstable forms as written (no log(1 + exp(x)) -> softplus(x), ...)")
        p.set_defaults(run=run)
        return p

    p = command("compile", "write the gradient module of a model",
                "Write <name>_grad.py: forward, grad and value_and_grad in NumPy.", cmd_compile)
    p.add_argument("-o", "--output", metavar="OUT.py", help="output path (default: <name>_grad.py beside the model)")
    p.add_argument("--reduction", choices=REDUCTIONS, default="sum",
                   help="objective: sum (default) or mean of the per-example loss")
    p.add_argument("--check", action="store_true",
                   help="run the generated self-check (finite differences); exit 1 if it fails")
    p.add_argument("--derivatives", metavar="LIST", default="grad",
                   help="what the module computes, comma-separated from grad, hvp, hessian, jacobian "
                        "(default grad; the flat forms for SciPy come with each)")
    p.add_argument("--no-reroll", action="store_true",
                   help="write every term of a loop-built model out (no array code for families of alike terms)")

    p = command("check", "check the gradient against finite differences and sympy.diff",
                "Compile, then compare the gradient with central finite differences and with "
                "sympy.diff at random points; exit 1 unless every relative error is below the "
                "tolerance.",
                cmd_check)
    p.add_argument("--seed", type=int, default=0, metavar="K", help="random seed of the points (default 0)")
    p.add_argument("--points", type=int, default=3, metavar="N", help="number of random points (default 3)")
    p.add_argument("--batch", type=int, default=4, metavar="N", help="examples per point (default 4)")
    p.add_argument("--tolerance", type=float, default=1e-6, metavar="TOL",
                   help="largest relative error (default 1e-6)")
    p.add_argument("--reduction", choices=REDUCTIONS, default="sum",
                   help="objective: sum (default) or mean of the per-example loss")

    p = command("compare", "compare backprop with the calculus-class sympy.diff expansion",
                "Compare backprop with sympy.diff of the fully substituted loss, one parameter at a "
                "time (naive), and the same followed by sympy.cse (naive_cse): operation counts, "
                "compile and run times, and the largest relative difference of the gradients.",
                cmd_compare)
    p.add_argument("--batch", type=int, default=1000, metavar="N", help="examples per evaluation (default 1000)")
    p.add_argument("--budget", type=float, default=10.0, metavar="SECONDS",
                   help="seconds allowed to each naive method before it is stopped (default 10)")
    p.add_argument("--seed", type=int, default=0, metavar="K", help="random seed of the data (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    p = command("explain", "print the forward and backward passes as equations",
                "Print the forward pass and the backward pass in the lecture's notation "
                "(v_bar is the error signal dL/dv).", cmd_explain)
    p.add_argument("--unicode", action="store_true", help="write overbars (z̄) and σ in the text format")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text (default), latex (amsmath aligned blocks) or markdown (with $$ math)")
    p.add_argument("--reduction", choices=REDUCTIONS, default="sum",
                   help="objective: sum (default) or mean of the per-example loss")
    p.add_argument("--derivatives", metavar="LIST", default="grad",
                   help="with hvp, also the tangent pass of the Hessian-vector product (v_dot)")

    p = command("graph", "draw the computation graph (DOT, SVG, PNG or PDF)",
                "Write the computation graph as DOT; .svg, .png and .pdf need Graphviz's dot program.",
                cmd_graph)
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="OUT.dot, OUT.svg, OUT.png or OUT.pdf")
    p.add_argument("--backward", action="store_true", help="add the error signals and gradients")

    p = command("plot", "plot the objective over one or two parameters, with its gradient",
                "The geometric view: contours of the objective over two parameters (the others held "
                "fixed), the negative gradient as arrows, and a gradient-descent path; for a model "
                "with one parameter, the objective as a curve with tangent lines. Needs matplotlib "
                "(pip install 'backpropc[plot]'). Without --data the data are --batch examples "
                "drawn at random as `check` draws them (uniform in (0.1, 0.9), or the model file's "
                "DOMAINS; seeded by --seed); parameters not plotted take random values the same way "
                "unless --at sets them.",
                cmd_plot)
    p.add_argument("--params", nargs="+", metavar="NAME",
                   help="one or two parameters, or entries of a matrix parameter such as W1[0,1] "
                        "(default: the model's own one or two)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="OUT.png, OUT.svg or OUT.pdf (default: <name>_<params>.png beside the model)")
    p.add_argument("--data", metavar="FILE.npz", help="the data: arrays by argument name (numpy.savez)")
    p.add_argument("--at", action="append", default=[], metavar="NAME=VALUE",
                   help="the value of a parameter (or an entry) that is not plotted; repeatable")
    p.add_argument("--start", nargs="+", type=float, metavar="VALUE",
                   help="where gradient descent starts, one value per plotted parameter")
    p.add_argument("--lr", type=float, metavar="RATE", help="learning rate (default: 1/(2 x the largest curvature at the start))")
    p.add_argument("--steps", type=int, default=30, metavar="N", help="gradient-descent steps (default 30)")
    p.add_argument("--xlim", nargs=2, type=float, metavar=("LOW", "HIGH"),
                   help="range of the first parameter (default: the path's, widened)")
    p.add_argument("--ylim", nargs=2, type=float, metavar=("LOW", "HIGH"), help="range of the second parameter")
    p.add_argument("--batch", type=int, default=20, metavar="N", help="random examples when there is no --data (default 20)")
    p.add_argument("--seed", type=int, default=0, metavar="K",
                   help="random seed of the data and parameters (default 0)")
    p.add_argument("--reduction", choices=REDUCTIONS, default="mean",
                   help="objective: mean (default here: the cost of slide 4) or sum of the per-example loss")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UserError as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"backpropc: error: {printable(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("backpropc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
