"""Univariate logistic least squares with L2 regularisation (lecture 6, slides 11 and 15).

    z = w*x + b,  y = sigmoid(z),  L = (y - t)**2/2,  R = w**2/2,  L_reg = L + lam*R

The regulariser R fans out from w, so w_bar collects two contributions (the multivariate chain
rule of slide 13): w_bar = z_bar*x + lam*w.
"""

import sympy as sp

import backpropc as bp

w, b, x, t, lam = sp.symbols("w b x t lam")
z, y, L, R, L_reg = sp.symbols("z y L R L_reg")

model = bp.Model(
    name="logistic_l2",
    steps=[
        (z, w * x + b),
        (y, bp.sigmoid(z)),
        (L, (y - t) ** 2 / 2),
        (R, w ** 2 / 2),
        (L_reg, L + lam * R),
    ],
    loss=L_reg,
    wrt=[w, b],
    inputs=[x, t, lam],
)
