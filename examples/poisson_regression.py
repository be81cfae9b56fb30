"""Poisson regression with the full log-likelihood, log(y!) included as loggamma(y + 1).

    eta = a*x + b,  mu = exp(eta),  L = mu - y*eta + loggamma(y + 1)

L is the negative log-likelihood of a count y under a Poisson distribution with mean mu (the
log link of a generalised linear model). loggamma(y + 1) depends on the data only, so it has no
error signal; it makes L the exact negative log-probability, so sums of L are comparable across
models. The module evaluates loggamma in pure NumPy (docs/special.md).

    backpropc compile examples/poisson_regression.py --check
"""

import sympy as sp

import backpropc as bp

a, b, x, y = sp.symbols("a b x y")
eta, mu, L = sp.symbols("eta mu L")

model = bp.Model(
    name="poisson_regression",
    steps=[(eta, a * x + b), (mu, sp.exp(eta)), (L, mu - y * eta + sp.loggamma(y + 1))],
    loss=L,
    wrt=[a, b],
    inputs=[x, y],
)

# counts are non-negative; keep exp(eta) moderate
DOMAINS = {"x": (-1.0, 1.0), "y": (0.0, 8.0)}
