"""The forward and backward passes as equations, in the lecture's notation (slides 10, 15, 17).

Input: a `Compiled` model. Output: text. The equations are the statements the compiler emitted,
printed as mathematics instead of NumPy: `y = sigmoid(z)` rather than its overflow-free NumPy
form, and a gradient before its sum over the batch. A forward statement that is also an error
signal (the lecture's `y_bar = y - t`, computed once for both passes) is listed with the
backward pass, and the forward pass shows its expression in place.
"""

from __future__ import annotations

from sympy.printing.str import StrPrinter

from .compiler import Compiled

MACRON = "\u0304"


class LectureUnicodePrinter(StrPrinter):
    """z_bar as z̄ and sigmoid as σ."""

    def _print_Symbol(self, expr):
        return bar(expr.name)

    def _print_sigmoid(self, expr):
        return f"σ({self._print(expr.args[0])})"



def bar(name: str) -> str:
    """`z_bar` -> `z̄` (an overbar on the last character of the base name)."""
    if name.endswith("_bar") and len(name) > 4:
        return name[:-4] + MACRON
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
    return forward, backward


def explain(compiled: Compiled, unicode: bool = False) -> str:
    forward, backward = equations(compiled, unicode)
    reduction = "mean" if compiled.listing.seed is not None else "sum"
    signal = "v̄" if unicode else "v_bar"
    text = [f"{compiled.name}: differentiated with respect to {', '.join(compiled.wrt)}", "",
            "Forward pass:"]
    text += [f"    {eq}" for eq in forward]
    shapes = [f"{a} {'x'.join(map(str, s.shape))}" for a, s in zip(compiled.args, compiled.program.args)
              if hasattr(s, "shape")]
    if shapes:
        text += ["", "Matrices (per example; a batch adds leading axes): " + ", ".join(shapes)]
    loss = compiled.listing.forward[-1].name if compiled.listing.forward else "L"
    objective = f"the mean of {loss} over the N examples" if reduction == "mean" else f"the sum of {loss}"
    text += ["", f"Backward pass ({signal} = d(objective)/dv, objective = {objective}; "
             f"each gradient is then summed over the batch):"]
    text += [f"    {eq}" for eq in backward]
    rewrites = compiled.program.graph.rewrites
    if rewrites:
        text += ["", "Rewritten into stable forms before differentiation (turn off with --no-rewrite):"]
        text += [f"    {note}" for note in rewrites]
    ops = compiled.ops
    text += ["", f"Cost: {ops['forward']} operations forward, {ops['value_and_grad']} for value and "
             f"gradient ({ops['value_and_grad'] / max(ops['forward'], 1):.2f}x)."]
    return "\n".join(text) + "\n"
