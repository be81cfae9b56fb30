"""Rich display in Jupyter: a compiled model shows its passes typeset and its computation graph.

`Compiled` inherits `DisplayMixin`: `_repr_html_` and `_repr_markdown_` give the forward and
backward passes as LaTeX math (the notebook typesets it), the operation counts and the
cheap-gradient ratio, and the computation graph as inline SVG where Graphviz's `dot` exists (a
note where it does not); `_repr_latex_` gives the equations alone. `html_table` renders the rows
of `bp.check` and `bp.compare` reports.
"""

from __future__ import annotations

import html
import re

# The SVG's XML prolog, DOCTYPE and comments mean nothing inside an HTML page.
SVG_PREAMBLE = re.compile(r"<\?xml.*?\?>|<!DOCTYPE.*?>|<!--.*?-->", re.DOTALL)
NO_DOT = ("(The computation graph needs Graphviz's dot program: apt-get install graphviz, "
          "or conda install graphviz.)")


def graph_svg(compiled, backward: bool = True) -> str | None:
    """The computation graph as an inline <svg> element, or None without Graphviz."""
    import shutil
    import subprocess

    from .drawing import to_dot

    dot = shutil.which("dot")
    if dot is None:
        return None
    run = subprocess.run([dot, "-Tsvg"], input=to_dot(compiled, backward=backward).encode(),
                         capture_output=True, check=False)
    if run.returncode != 0:
        return None
    return SVG_PREAMBLE.sub("", run.stdout.decode()).strip()


def html_table(header, rows) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


class DisplayMixin:
    """Jupyter's display hooks for `Compiled` (the attributes are those of `Compiled`)."""

    def _repr_latex_(self) -> str:
        from .latex import aligned, passes

        forward, backward = passes(self)
        return "$$\n" + aligned(forward + backward) + "\n$$"

    def _repr_markdown_(self) -> str:
        from .explain import markdown

        svg = graph_svg(self)
        graph = NO_DOT if svg is None else f"<div>{svg}</div>"
        return markdown(self) + "\nComputation graph (error signals and gradients in red):\n\n" + graph + "\n"

    def _repr_html_(self) -> str:
        from .explain import cost, objective
        from .latex import aligned, latex_name, passes

        forward, backward = passes(self)
        wrt = ", ".join(f"\\({latex_name(w)}\\)" for w in self.wrt)
        svg = graph_svg(self)
        graph = f"<p>{html.escape(NO_DOT)}</p>" if svg is None else f"<div>{svg}</div>"
        return (f"<div><p><b>{html.escape(self.name)}</b>: differentiated with respect to {wrt}</p>"
                f"<p>Forward pass:</p>\n$$\n{html.escape(aligned(forward))}\n$$\n"
                f"<p>Backward pass (\\(\\bar v\\) = d(objective)/d\\(v\\), objective = "
                f"{html.escape(objective(self))}; each gradient is then summed over the batch):</p>\n"
                f"$$\n{html.escape(aligned(backward))}\n$$\n"
                f"<p>Cost: {html.escape(cost(self))}.</p>"
                f"<p>Computation graph (error signals and gradients in red):</p>{graph}</div>")
