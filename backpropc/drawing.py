"""The computation graph (the lecture's slide 9) as Graphviz DOT, and rendered through `dot`.

Input: a `Compiled` model. Output: DOT text: one node per argument and per statement of the
forward pass, an edge from each value to the values computed from it. Parameters are boxes,
data are shaded ellipses, intermediates plain ellipses, the loss a double octagon. With
`backward=True` the error signals (red) and gradients (red boxes) are added with their edges.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import sympy as sp

from .explain import bar
from .files import write_atomic

if TYPE_CHECKING:  # for annotations only: compiler.py imports these modules lazily
    from .compiler import Compiled

STYLES = {
    "parameter": 'shape=box, style="rounded,filled", fillcolor="#fde68a"',
    "input": 'shape=ellipse, style=filled, fillcolor="#dbeafe"',
    "intermediate": "shape=ellipse",
    "loss": 'shape=doubleoctagon, style=filled, fillcolor="#e5e7eb"',
    "signal": 'shape=ellipse, color="#b91c1c", fontcolor="#b91c1c"',
    "gradient": 'shape=box, style=rounded, color="#b91c1c", fontcolor="#b91c1c", penwidth=2',
}
BACKWARD_EDGE = 'color="#b91c1c", style=dashed'


class GraphvizMissing(RuntimeError):
    """Graphviz's `dot` program is needed for SVG and PNG output."""


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(compiled: Compiled, backward: bool = False) -> str:
    listing = compiled.listing
    forward = listing.forward_equations()
    loss = next(s.name for s in reversed(listing.forward))

    nodes: dict[str, tuple[str, str]] = {}  # name -> (kind, tooltip)
    for arg in compiled.args:
        nodes[arg] = ("parameter" if arg in compiled.wrt else "input", arg)
    edges: list[tuple[str, str, bool]] = []
    for name, rhs in forward:
        nodes[name] = ("loss" if name == loss else "intermediate", f"{name} = {rhs}")
        edges += [(src, name, False) for src in _sources(rhs, nodes)]
    if backward:
        for name, rhs, kind in listing.backward_equations():
            nodes[name] = (kind, f"{name} = {rhs}")
            edges += [(src, name, True) for src in _sources(rhs, nodes)]

    # a matrix argument shows its per-example shape under its name, as on slide 17's W (n x m)
    shapes = {a: s.shape for a, s in zip(compiled.args, compiled.program.args) if isinstance(s, sp.MatrixSymbol)}
    lines = [f"digraph {_quote(compiled.name)} {{", "    rankdir=LR;",
             '    node [fontname="Helvetica"];', '    edge [color="#374151"];']
    for name, (kind, tooltip) in nodes.items():
        if kind == "input" and not any(e[0] == name for e in edges):
            continue  # an argument the loss does not use
        label = _quote(bar(name))
        if name in shapes:
            label = label[:-1] + "\\n" + _quote("{}×{}".format(*shapes[name]))[1:]
        lines.append(f"    {_quote(name)} [label={label}, tooltip={_quote(tooltip)}, {STYLES[kind]}];")
    for src, dst, is_backward in edges:
        lines.append(f"    {_quote(src)} -> {_quote(dst)}" + (f" [{BACKWARD_EDGE}];" if is_backward else ";"))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _sources(rhs: sp.Basic, nodes: dict) -> list[str]:
    """The named values a small right-hand side reads, in a stable order."""
    return sorted({s.name for s in rhs.free_symbols if s.name in nodes})


def write_graph(dot_text: str, path) -> Path:
    """Write DOT, or render SVG/PNG with Graphviz, atomically."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt == "dot" or fmt == "gv":
        data = dot_text.encode()
    elif fmt in ("svg", "png", "pdf"):
        dot = shutil.which("dot")
        if dot is None:
            raise GraphvizMissing(f"rendering .{fmt} needs Graphviz's dot program, which is not installed "
                                  f"(Debian: apt-get install graphviz); or write a .dot file instead")
        run = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode(), capture_output=True)
        if run.returncode != 0:
            raise GraphvizMissing(f"dot failed: {run.stderr.decode(errors='replace').strip()}")
        data = run.stdout
    else:
        raise ValueError(f"unknown graph format .{fmt}; use .dot (or .gv), .svg, .png or .pdf")
    return write_atomic(path, data)
