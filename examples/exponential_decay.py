"""Exponential decay with an offset, fitted by least squares: one residual per sample.

    r = A*exp(-k*t) + c - y

With no `loss`, the objective is half the sum of the squared residuals (SciPy's and Ceres'
convention); `residuals_flat` and `jacobian_flat` plug into `scipy.optimize.least_squares`.

    backpropc compile examples/exponential_decay.py --derivatives grad,jacobian --check
"""

import sympy as sp

import backpropc as bp

A, k, c, t, y = sp.symbols("A k c t y")

model = bp.Model(
    name="exponential_decay",
    steps=[],
    loss=None,
    wrt=[A, k, c],
    inputs=[t, y],
    residuals=[A * sp.exp(-k * t) + c - y],
)
