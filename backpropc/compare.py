"""Backprop against the calculus-class expansion (the lecture's slide 7), with numbers.

Three methods compute the same value and gradient:
- `backprop`: this compiler;
- `naive`: `sympy.diff` of the fully substituted loss for each wrt symbol separately, evaluated by
  `sympy.lambdify` as printed trees (no common subexpressions shared);
- `naive_cse`: the same derivatives evaluated jointly through `sympy.cse` (`lambdify(cse=True)`).
Each naive method runs in a child process that is killed at its time budget (SymPy cannot be
interrupted), so a comparison returns in about 2 x budget plus the backprop row, whatever the model.
Operation counts use one definition for every row (`opcount`).
"""

from __future__ import annotations

import html
import json
import multiprocessing
import statistics
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import sympy as sp

from .check import (
    NAMED_SIZE,
    by_module_name,
    by_symbol_name,
    finite_point,
    numpy_function,
    term_by_term,
    to_sympy,
    written_out,
)
from .compiler import Compiled, compile
from .display import html_table
from .opcount import tree_ops

METHODS = ("backprop", "naive", "naive_cse")
REPEATS = 5


@dataclass
class Row:
    method: str
    status: str                      # "ok", "over budget" or "failed: <reason>"
    ops: int | None = None
    compile_s: float | None = None
    run_s: float | None = None
    max_rel_diff: float | None = None


@dataclass
class Comparison:
    model: str
    batch: int
    ops_forward: int
    ratio: float                     # ops(backprop value and gradient) / ops_forward
    rows: list[Row] = field(default_factory=list)
    # A matrix model's backprop row counts matrix operations (one @ is one operation); the naive
    # rows differentiate the model written out entry by entry, and count scalar operations.
    matrix: bool = False
    indexed: bool = False            # an indexed model: array statements, each Sum written out

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def _cells(self) -> list[tuple[str, ...]]:
        header = ("method", "status", "ops", "compile s", "run s", "max rel diff")
        return [header] + [(r.method, r.status, _fmt(r.ops, "{:,}"), _fmt(r.compile_s, "{:.3g}"),
                            _fmt(r.run_s, "{:.3g}"), _fmt(r.max_rel_diff, "{:.1e}")) for r in self.rows]

    def _notes(self) -> list[str]:
        matrix = ("backprop's ops are matrix operations (one @ is one); the naive rows differentiate "
                  "the model written out entry by entry and count scalar operations.")
        ratio = (f"backprop's value and gradient cost {self.ratio:.2f} x its forward pass "
                 f"({self.ops_forward:,} ops); the cheap-gradient bound is 3 for multiplications "
                 f"(Baur-Strassen) and 5 for all operations (Griewank).")
        if self.indexed:
            matrix = ("backprop's ops are array operations (each counted once: operations per entry); "
                      f"the naive rows differentiate the model with every Sum written out at n = {NAMED_SIZE} "
                      "and count scalar operations.")
        return [matrix, ratio] if self.matrix else [ratio]

    def _repr_html_(self) -> str:
        """The comparison as a table, for Jupyter."""
        header, *rows = self._cells()
        return (f"<p>{html.escape(self.model)}: value and gradient at batch {self.batch:,}</p>"
                + html_table(header, rows) + "".join(f"<p>{html.escape(n)}</p>" for n in self._notes()))

    def format(self) -> str:
        cells = self._cells()
        header = cells[0]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        lines = [f"{self.model}: value and gradient at batch {self.batch:,}", ""]
        for row in cells:
            lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        for note in self._notes():
            lines += ["", note]
        return "\n".join(lines)


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def compare(model, *, batch: int = 1000, budget: float = 10.0, seed: int = 0,
            domains: dict | None = None, skip=(), rewrite: bool = True) -> Comparison:
    """Compare backprop with the naive expansions on one random batch of `batch` examples.

    Methods in `skip` are reported "over budget" without running (a sweep skips a method that ran
    over its budget on a smaller problem)."""
    start = time.perf_counter()
    compiled = model if isinstance(model, Compiled) else compile(model, rewrite=rewrite)
    compile_s = None if isinstance(model, Compiled) else time.perf_counter() - start
    module = compiled.load()
    point, _ = finite_point(module, np.random.default_rng(seed), batch, domains or {})
    if point is None:
        raise ValueError(f"{compiled.name}: no point found where the loss and its gradient are finite")
    grads = np.concatenate([np.ravel(g) for g in module.value_and_grad(**point)[1]]).astype(float)
    run_s = median_time(lambda: module.value_and_grad(**point))
    naive_target, naive_point = compiled, point
    if getattr(module, "SHAPES", None):  # the calculus-class way differentiates every entry on its own
        scalar, naive_target = written_out(compiled)
        naive_point = by_module_name(naive_target, scalar.flatten(by_symbol_name(compiled, point)))
    ops = compiled.ops["value_and_grad"]
    result = Comparison(compiled.name, batch, compiled.ops["forward"],
                        ops / max(compiled.ops["forward"], 1),
                        [Row("backprop", "ok", ops, compile_s, run_s, 0.0)], naive_target is not compiled,
                        bool(getattr(module, "INDEXED", ())))
    for method in METHODS[1:]:
        result.rows.append(Row(method, "over budget") if method in skip else
                           _run_naive(naive_target, method, naive_point, grads, budget))
    return result


def median_time(f, repeats: int = REPEATS) -> float:
    """Median wall time of `repeats` calls of f, after one warm-up call."""
    f()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive_gradient(compiled: Compiled, cse: bool):
    """The calculus-class way: (function of the arguments -> [loss, d/dw...], ops)."""
    program = term_by_term(compiled)
    loss = to_sympy(program)
    derivatives = [sp.diff(loss, w) for w in program.wrt]
    exprs = [loss] + derivatives
    # Like backprop's count, one operation per output for its sum over the batch.
    if cse:
        replacements, reduced = sp.cse(exprs, order="none")
        ops = sum(tree_ops(rhs) for _, rhs in replacements) + sum(tree_ops(e) for e in reduced)
    else:
        ops = sum(tree_ops(e) for e in exprs)
    ops += len(exprs)
    return numpy_function(program.args, exprs, cse=cse), ops


def _naive_child(compiled: Compiled, method: str, point: dict, connection) -> None:
    try:
        start = time.perf_counter()
        f, ops = naive_gradient(compiled, cse=method == "naive_cse")
        compile_s = time.perf_counter() - start
        values = [point[a] for a in compiled.args]
        shape = np.broadcast_shapes(*(np.shape(v) for v in values))

        def value_and_grad():
            loss, *grads = f(*values)
            return np.sum(np.broadcast_to(loss, shape)), [np.sum(np.broadcast_to(g, shape)) for g in grads]

        grads = np.array(value_and_grad()[1], dtype=float)
        connection.send(("ok", ops, compile_s, median_time(value_and_grad), grads))
    except BaseException as exc:  # reported as the row's status, whatever it is
        connection.send((f"failed: {type(exc).__name__}: {str(exc)[:200]}", None, None, None, None))


def _run_naive(compiled: Compiled, method: str, point: dict, reference, budget: float) -> Row:
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                         else "spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_naive_child, args=(compiled, method, point, sender), daemon=True)
    child.start()
    sender.close()
    ready = receiver.poll(budget)
    try:
        message = receiver.recv() if ready else None
    except EOFError:  # the child died without a word (killed, out of memory)
        message = None
    if child.is_alive():
        child.kill()
    child.join()
    if message is None:
        return Row(method, "over budget" if not ready else "failed: the child process died")
    status, ops, compile_s, run_s, grads = message
    if status != "ok":
        return Row(method, status)
    with np.errstate(all="ignore"):
        diff = np.abs(grads - reference) / np.maximum(np.maximum(np.abs(grads), np.abs(reference)), 1e-300)
    return Row(method, "ok", ops, compile_s, run_s, float(np.max(diff, initial=0.0)))
