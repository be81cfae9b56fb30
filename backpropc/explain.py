"""The forward and backward passes as equations, in the lecture's notation (slides 10, 15, 17).

Input: a `Compiled` model. Output: text. The equations are the statements the compiler emitted,
printed as mathematics instead of NumPy: `y = sigmoid(z)` rather than its overflow-free NumPy
form, and a gradient before its sum over the batch. A forward statement that is also an error
signal (the lecture's `y_bar = y - t`, computed once for both passes) is listed with the
backward pass, and the forward pass shows its expression in place.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import sympy as sp
from sympy.printing.str import StrPrinter

from .latex import aligned, latex_name, passes
from .naming import printable

if TYPE_CHECKING:  # for annotations only: compiler.py imports these modules lazily
    from .compiler import Compiled

DOT = "\u0307"
MACRON = "\u0304"      # one letter: z̄
OVERLINE = "\u0305"    # after every character of a longer name: the bars join into one (m̅u̅)
FORMATS = ("text", "latex", "markdown")


class LectureUnicodePrinter(StrPrinter):
    """z_bar as z̄ and sigmoid as σ."""

    def _print_Symbol(self, expr):
        return bar(expr.name)

    def _print_sigmoid(self, expr):
        return f"σ({self._print(expr.args[0])})"



def bar(name: str) -> str:
    """`z_bar` -> `z̄`, `mu_bar` -> `m̅u̅`: one bar over the whole base name, as the lecture draws it.

    A combining overline after each character draws a continuous bar in most fonts; a single
    letter keeps the macron, which every font places well. A tangent `z_dot` gets a dot above,
    `z_bar_dot` both."""
    if name.endswith("_dot") and len(name) > 4:
        return bar(name[:-4]) + DOT
    if name.endswith("_bar") and len(name) > 4:
        base = name[:-4]
        return base + MACRON if len(base) == 1 else "".join(c + OVERLINE for c in base)
    return name


def equations(compiled: Compiled, unicode: bool = False) -> tuple[list[str], list[str]]:
    """(forward equations, backward equations) as text lines."""
    printer = LectureUnicodePrinter({"order": "none"}) if unicode else StrPrinter({"order": "none"})
    name = bar if unicode else str
    listing = compiled.listing
    forward = [f"{name(v)} = {printer.doprint(rhs)}" for v, rhs in listing.forward_equations()]
    backward = [f"{name(v)} = {printer.doprint(rhs)}" for v, rhs, _ in listing.backward_equations()]
    if unicode:  # matrix notation: W^T as Wᵀ, S^-1 as S⁻¹
        forward, backward = ([line.replace("^T", "ᵀ").replace("^-1", "⁻¹") for line in lines]
                             for lines in (forward, backward))
    return forward, _entries_shown_by_their_ends(backward)


ENTRY = re.compile(r"^(.+) = (\S+)\[(\d+)\]$")


def _entries_shown_by_their_ends(lines: list[str]) -> list[str]:
    """The gradients of a re-rolled model, the entries of one lane vector's signal, as one line:
    `x0_bar, ..., x999_bar = c0_bar[0], ..., c0_bar[999]`, not a thousand."""
    result, k = [], 0
    while k < len(lines):
        run = [ENTRY.match(lines[k])]
        while run[-1] and k + len(run) < len(lines):
            nxt = ENTRY.match(lines[k + len(run)])
            if not nxt or nxt[2] != run[0][2] or int(nxt[3]) != int(run[-1][3]) + 1:
                break
            run.append(nxt)
        if run[-1] and len(run) >= 4:
            first, last = run[0], run[-1]
            result.append(f"{first[1]}, ..., {last[1]} = {first[2]}[{first[3]}], ..., {last[2]}[{last[3]}]")
        else:
            result += lines[k:k + len(run)]
        k += len(run)
    return result


def explain(compiled: Compiled, unicode: bool = False, format: str = "text") -> str:
    """The passes as text (z_bar, or z̄ with `unicode`), as LaTeX, or as Markdown with LaTeX math."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    if format == "latex":
        return latex_document(compiled)
    if format == "markdown":
        return markdown(compiled)
    forward, backward = equations(compiled, unicode)
    reduction = "mean" if compiled.listing.seed is not None else "sum"
    signal = "v̄" if unicode else "v_bar"
    wrt = compiled.wrt if len(compiled.wrt) <= 12 else \
        [*compiled.wrt[:3], "...", *compiled.wrt[-2:], f"({len(compiled.wrt)} symbols)"]
    text = [f"{compiled.name}: differentiated with respect to {', '.join(wrt)}".replace(", (", " ("), "",
            "Forward pass:"]
    text += [f"    {eq}" for eq in forward]
    shapes = [f"{a} {'x'.join(map(str, s.shape))}" for a, s in zip(compiled.args, compiled.program.args)
              if hasattr(s, "shape") and not isinstance(s, sp.IndexedBase)]
    indexed = [f"{a} {tuple(s.shape)}" for a, s in zip(compiled.args, compiled.program.args)
               if isinstance(s, sp.IndexedBase)]
    if indexed:
        text += ["", "Indexed arrays (a Sum is one array operation over its index range; a batch of data "
                 "adds leading axes): " + ", ".join(indexed)]
    if shapes:
        text += ["", "Matrices (per example; a batch adds leading axes): " + ", ".join(shapes)]
    loss = compiled.listing.forward[-1].name if compiled.listing.forward else "L"
    objective = f"the mean of {loss} over the N examples" if reduction == "mean" else f"the sum of {loss}"
    text += ["", f"Backward pass ({signal} = d(objective)/dv, objective = {objective}; "
             f"each gradient is then summed over the batch):"]
    text += [f"    {eq}" for eq in backward]
    rewrites = compiled.program.graph.rewrites
    tangent = compiled.listing.tangent_equations()
    if tangent:
        printer = LectureUnicodePrinter({"order": "none"}) if unicode else StrPrinter({"order": "none"})
        name = bar if unicode else str
        dot = "v̇" if unicode else "v_dot"
        text += ["", f"Tangent pass of hvp ({dot} = the derivative of v along the directions w_dot; "
                 f"the tangent of each gradient is the Hessian times the directions, then summed over "
                 f"the batch):"]
        text += [f"    {name(v)} = {printer.doprint(rhs)}" for v, rhs in tangent]
    if rewrites:
        text += ["", "Rewritten into stable forms before differentiation (turn off with --no-rewrite):"]
        text += [f"    {note}" for note in rewrites]
    text += ["", f"Cost: {cost(compiled)}."]
    return "\n".join(printable(line) for line in text) + "\n"  # user names may hold control characters


def cost(compiled: Compiled) -> str:
    """'6 operations forward, 13 for value and gradient (2.17x)', with thousands separators."""
    ops = compiled.ops
    return (f"{ops['forward']:,} operations forward, {ops['value_and_grad']:,} for value and gradient "
            f"({ops['value_and_grad'] / max(ops['forward'], 1):.2f}x)")


def objective(compiled: Compiled) -> str:
    loss = compiled.listing.forward[-1].name if compiled.listing.forward else "L"
    return f"the mean of {loss} over the N examples" if compiled.listing.seed is not None else f"the sum of {loss}"


def latex_document(compiled: Compiled) -> str:
    """The two passes as LaTeX (amsmath): a forward and a backward aligned block."""
    forward, backward = passes(compiled)
    lines = [f"% {compiled.name}: differentiated with respect to {', '.join(compiled.wrt)}",
             "% Forward pass", r"\[", aligned(forward), r"\]",
             f"% Backward pass (v_bar = d(objective)/dv, objective = {objective(compiled)})",
             r"\[", aligned(backward), r"\]", f"% Cost: {cost(compiled)}"]
    return _printable_lines(lines)


def markdown(compiled: Compiled) -> str:
    """The two passes as Markdown with $$ math (Jupyter, GitHub, most Markdown renderers)."""
    forward, backward = passes(compiled)
    wrt = ", ".join(f"${latex_name(w)}$" for w in compiled.wrt)
    text = [f"**{compiled.name}**: differentiated with respect to {wrt}", "",
            "Forward pass:", "", "$$", aligned(forward), "$$", "",
            (rf"Backward pass ($\bar v$ = d(objective)/d$v$, objective = {objective(compiled)}; "
             "each gradient is then summed over the batch):"), "", "$$", aligned(backward), "$$", "",
            f"Cost: {cost(compiled)}."]
    return _printable_lines(text)


def _printable_lines(blocks: list[str]) -> str:
    """The blocks' lines (an aligned block has several), each made printable on its own."""
    return "\n".join(printable(line) for block in blocks for line in block.split("\n")) + "\n"
