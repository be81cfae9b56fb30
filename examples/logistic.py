"""Univariate logistic least squares (lecture 6, slide 6).

    z = w*x + b,  y = sigmoid(z),  L = (y - t)**2/2

Compile it:  backpropc compile examples/logistic.py --check
"""

import sympy as sp

import backpropc as bp

w, b, x, t = sp.symbols("w b x t")
z, y, L = sp.symbols("z y L")

model = bp.Model(
    name="logistic",
    steps=[(z, w * x + b), (y, bp.sigmoid(z)), (L, (y - t) ** 2 / 2)],
    loss=L,
    wrt=[w, b],
    inputs=[x, t],
)
