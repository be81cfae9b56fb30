"""The forward and backward passes typeset in LaTeX, in the lecture's notation.

`z_bar` is written \\bar{z}, a layered name `w1_2_3` as w^{(1)}_{2,3} (slide 16's w^{(1)}_{ij}),
`sigmoid` as \\sigma and the matrix ops as the lecture writes them (W^\\top y, S^{-1}). Each
equation is one statement of the compiled program, printed on its own: never a whole program.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.latex import LatexPrinter, translate

# A base name: letters, then an optional number (the layer or the index), then `_`-joined indices.
# Names the examples give Greek letters that SymPy's own table does not know (lambda is a keyword).
ALIASES = {"lam": r"\lambda"}
NAME = re.compile(r"(?P<letters>[A-Za-z]+)(?P<number>\d*)(?P<rest>(?:_[A-Za-z0-9]+)*)")


def latex_name(name: str) -> str:
    """`z_bar` -> \\bar{z}, `mu_bar` -> \\bar{\\mu}, `w1_2_3` -> w^{(1)}_{2,3}, `W1` -> W_{1}."""
    signal = name.endswith("_bar") and len(name) > 4
    base = name[:-4] if signal else name
    match = NAME.fullmatch(base)
    if match is None:  # an unusual name: typeset as text rather than guess at its structure
        text = r"\mathrm{" + base.replace("_", r"\_") + "}"
        return rf"\overline{{{text}}}" if signal else text
    letters = _word(match["letters"])
    if signal:
        letters = rf"\overline{{{letters}}}" if letters.startswith(r"\mathrm") else rf"\bar{{{letters}}}"
    indices = [_word(part) for part in match["rest"].split("_") if part]
    number = match["number"]
    if number and indices:
        return f"{letters}^{{({number})}}_{{{','.join(indices)}}}"
    indices = ([number] if number else []) + indices
    return f"{letters}_{{{','.join(indices)}}}" if indices else letters


def _word(text: str) -> str:
    """A Greek letter's name as the letter, another word upright (lse, reg), else as it is."""
    greek = ALIASES.get(text) or translate(text)
    return greek if greek != text or len(text) == 1 or text.isdigit() else rf"\mathrm{{{text}}}"


class LectureLatexPrinter(LatexPrinter):
    """SymPy's LaTeX printer with the lecture's names and the matrix ops' notation."""

    def __init__(self):
        super().__init__({"order": "none"})

    def _print_Symbol(self, expr, style="plain"):
        return latex_name(expr.name)

    _print_Dummy = _print_Symbol

    def _print_MatrixSymbol(self, expr):
        return latex_name(expr.name)

    def _print_sigmoid(self, expr, exp=None):
        return self._call(r"\sigma", expr, exp)

    def _call(self, function: str, expr, exp=None) -> str:
        head = function if exp is None else f"{function}^{{{exp}}}"
        return rf"{head}\left({', '.join(self._print(a) for a in expr.args)}\right)"

    # Matrix ops (backpropc.matrices), by class name.
    def _operand(self, e) -> str:
        text = self._print(e)
        atomic = isinstance(e, (sp.Symbol, sp.MatrixSymbol, sp.Number)) or \
            type(e).__name__ in ("transpose", "inverse")
        return text if atomic else rf"\left({text}\right)"

    def _print_matmul(self, expr, exp=None):
        return " ".join(self._operand(a) for a in expr.args)

    def _print_transpose(self, expr, exp=None):
        return rf"{self._operand(expr.args[0])}^{{\top}}"

    def _print_inverse(self, expr, exp=None):
        return rf"{self._operand(expr.args[0])}^{{-1}}"

    def _print_trace(self, expr, exp=None):
        return self._call(r"\operatorname{tr}", expr, exp)

    def _print_det(self, expr, exp=None):
        return self._call(r"\det", expr, exp)

    def _print_logdet(self, expr, exp=None):
        return rf"\log\det\left({self._print(expr.args[0])}\right)"

    def _print_sum_entries(self, expr, exp=None):
        return rf"\textstyle\sum\left({self._print(expr.args[0])}\right)"

    _print_EntrySum = _print_sum_entries

    def _print_entry(self, expr, exp=None):
        x, i, j = expr.args
        return f"{self._operand(x)}_{{{self._print(i)},{self._print(j)}}}"

    def _print_fill(self, expr, exp=None):
        return rf"{self._operand(expr.args[0])}\,\mathbf{{1}}"

    def _print_ones(self, expr, exp=None):
        return r"\mathbf{1}"

    def _print_eye(self, expr, exp=None):
        return "I"

    def _print_as_matrix(self, expr, exp=None):
        return self._print(expr.args[0])


def latex_equation(name: str, rhs: sp.Basic, printer: LectureLatexPrinter | None = None) -> str:
    """One statement `name = rhs` as a LaTeX `lhs &= rhs` line of an aligned block."""
    printer = printer or LectureLatexPrinter()
    return f"{latex_name(name)} &= {printer.doprint(rhs)}"


def aligned(lines: list[str]) -> str:
    r"""Equations as one \begin{aligned} block (MathJax and KaTeX both typeset it)."""
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


def passes(compiled) -> tuple[list[str], list[str]]:
    """(forward, backward) equations of a compiled model as LaTeX lines."""
    printer = LectureLatexPrinter()
    listing = compiled.listing
    forward = [latex_equation(v, rhs, printer) for v, rhs in listing.forward_equations()]
    backward = [latex_equation(v, rhs, printer) for v, rhs, _ in listing.backward_equations()]
    return forward, backward
