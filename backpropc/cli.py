"""The `backpropc` command (SPEC §4).

Exit codes: 0 success, 1 a check failed, 2 bad input (one line on stderr naming the problem and
the fix; `--debug` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import runpy
import sys
import traceback
import warnings
from pathlib import Path

from . import __version__
from .compiler import Compiled, compile
from .errors import BackpropcError
from .model import REDUCTIONS, Model
from .naming import clean


class UserError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


def load_models(path: str) -> dict[str, Model]:
    """Run a model file (the user's own Python) and collect the Models it defines at top level."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"model file {path} not found; pass the path of a .py file that defines a bp.Model")
    try:
        ast.parse(file.read_text(encoding="utf-8"), str(file))
    except SyntaxError as exc:
        raise UserError(f"{path}:{exc.lineno}: syntax error: {exc.msg}; fix the model file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    sys.path.insert(0, str(file.resolve().parent))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            namespace = runpy.run_path(str(file), run_name="__backpropc_model__")
    except BackpropcError as exc:
        raise UserError(f"{path}: {exc}") from exc
    except Exception as exc:
        line = _line_in(exc, file)
        where = f"{path}:{line}" if line else path
        raise UserError(f"{where}: {type(exc).__name__} while running the model file: {exc}") from exc
    finally:
        sys.path.pop(0)
    models = {}
    for var, value in namespace.items():
        if isinstance(value, Model) and not var.startswith("_"):
            models.setdefault(value.name, value)
    return models


def _line_in(exc: BaseException, file: Path) -> int | None:
    """The line of the model file where an exception was raised (innermost frame in that file)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == file.resolve():
            line = frame.lineno
    return line


def select_model(path: str, name: str | None) -> Model:
    models = load_models(path)
    if not models:
        raise UserError(f"{path} defines no bp.Model at top level; add one, e.g. model = bp.Model(...)")
    if name is not None:
        if name not in models:
            raise UserError(f"{path} has no model named {name!r}; it has: {', '.join(models)}")
        return models[name]
    if len(models) > 1:
        raise UserError(f"{path} defines several models ({', '.join(models)}); choose one with --model NAME")
    return next(iter(models.values()))


def compile_file(path: str, model: str | None, reduction: str = "sum") -> Compiled:
    chosen = select_model(path, model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unused wrt symbols are reported by `check`
            return compile(chosen, reduction=reduction)
    except BackpropcError as exc:
        raise UserError(f"{path}: {exc}") from exc


def cmd_compile(args) -> int:
    compiled = compile_file(args.model_file, args.model, args.reduction)
    out = Path(args.output) if args.output else \
        Path(args.model_file).resolve().parent / f"{clean(compiled.name)}_grad.py"
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: folder {out.parent} does not exist; create it or choose "
                        f"another -o path")
    if out.is_dir():
        raise UserError(f"cannot write {out}: it is a folder; give a file name with -o")
    try:
        compiled.write(out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}; choose another -o path") from exc
    print(f"wrote {out} ({compiled.ops['forward']} ops forward, "
          f"{compiled.ops['value_and_grad']} ops value and gradient)")
    if args.check:
        with contextlib.redirect_stdout(io.StringIO()) as report:
            status = compiled.load()._self_check()
        print(report.getvalue().strip().splitlines()[-1])
        return 1 if status else 0
    return 0


EXAMPLES = {
    "compile": "backpropc compile examples/logistic.py --check\n"
               "  backpropc compile examples/mlp.py -o mlp_grad.py --reduction mean",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backpropc",
        description="Compile a SymPy forward pass into a standalone NumPy module with exact gradients.",
        epilog="example:\n  " + EXAMPLES["compile"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"backpropc {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    p = commands.add_parser("compile", help="write the gradient module of a model file",
                            description="Write MODEL_grad.py: forward, grad and value_and_grad in NumPy.",
                            epilog="examples:\n  " + EXAMPLES["compile"],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_file", metavar="MODEL.py", help="a Python file that defines bp.Model objects")
    p.add_argument("-o", "--output", metavar="OUT.py", help="output path (default: <name>_grad.py beside the model)")
    p.add_argument("--model", metavar="NAME", help="which model, when the file defines several")
    p.add_argument("--reduction", choices=REDUCTIONS, default="sum",
                   help="objective: sum (default) or mean of the per-example loss")
    p.add_argument("--check", action="store_true",
                   help="run the generated self-check (finite differences); exit 1 if it fails")
    p.set_defaults(run=cmd_compile)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"backpropc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("backpropc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
