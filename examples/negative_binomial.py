"""Negative-binomial regression: over-dispersed counts, with a dispersion parameter r > 0.

    mu = exp(a*x + b),  p = r/(r + mu)
    L = -(loggamma(y + r) - loggamma(r) - loggamma(y + 1) + r*log(p) + y*log(1 - p))

L is the negative log-likelihood of a count y with mean mu and variance mu + mu**2/r; as r grows
it becomes the Poisson model. r is differentiated too: its gradient needs digamma(y + r) and
digamma(r), the derivatives of loggamma, which the module evaluates in pure NumPy.

    backpropc compile examples/negative_binomial.py --check
"""

import sympy as sp

import backpropc as bp

a, b, r, x, y = sp.symbols("a b r x y")
mu, p, L = sp.symbols("mu p L")

model = bp.Model(
    name="negative_binomial",
    steps=[
        (mu, sp.exp(a * x + b)),
        (p, r / (r + mu)),
        (L, -(sp.loggamma(y + r) - sp.loggamma(r) - sp.loggamma(y + 1) + r * sp.log(p) + y * sp.log(1 - p))),
    ],
    loss=L,
    wrt=[a, b, r],
    inputs=[x, y],
)

DOMAINS = {"r": (0.5, 3.0), "x": (-1.0, 1.0), "y": (0.0, 8.0)}
