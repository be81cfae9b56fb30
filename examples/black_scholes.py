"""The Black-Scholes price of a European call option (mathematical finance).

    d1 = (log(S/K) + (r + sigma**2/2) T) / (sigma sqrt(T)),   d2 = d1 - sigma sqrt(T)
    C  = S N(d1) - K exp(-r T) N(d2),   N(u) = (1 + erf(u/sqrt(2)))/2

The closed-form price (Black and Scholes 1973, Merton 1973) of the right to buy at strike K, at
time T (years), an asset now worth S whose log-price is a Brownian motion with volatility sigma,
with continuously compounded risk-free rate r. The gradient is the option's first-order greeks,
which traders use to hedge and risk-manage positions, and the vega drives the Newton iteration
for implied volatility:

    dC/dS     = delta = N(d1)
    dC/dsigma = vega  = S phi(d1) sqrt(T)
    dC/dT     = the time sensitivity; the usual theta is -dC/dT (time to expiry shrinks)
    dC/dr     = rho   = K T exp(-r T) N(d2)

Backprop gives all four for a small constant multiple of the cost of one price (see
`backpropc explain`), which is why adjoint differentiation is used for the greeks of large books
of options.

Compile it:  backpropc compile examples/black_scholes.py --check
"""

import sympy as sp

import backpropc as bp

S, sigma, T, r, K = sp.symbols("S sigma T r K")
vol, d1, d2, Nd1, Nd2, C = sp.symbols("vol d1 d2 Nd1 Nd2 C")


def N(u):
    """The standard normal cumulative distribution function."""
    return (1 + sp.erf(u / sp.sqrt(2))) / 2


model = bp.Model(
    name="black_scholes",
    steps=[
        (vol, sigma * sp.sqrt(T)),
        (d1, (sp.log(S / K) + (r + sigma ** 2 / 2) * T) / vol),
        (d2, d1 - vol),
        (Nd1, N(d1)),
        (Nd2, N(d2)),
        (C, S * Nd1 - K * sp.exp(-r * T) * Nd2),
    ],
    loss=C,
    wrt=[S, sigma, T, r],
    inputs=[K],
)

# Price, strike, volatility and time to expiry are positive; the ranges are moderate so that the
# option is neither far out of nor deep in the money and finite differences are well conditioned.
DOMAINS = {
    "S": (0.5, 1.5),
    "K": (0.5, 1.5),
    "sigma": (0.1, 0.5),
    "T": (0.2, 2.0),
    "r": (0.0, 0.1),
}
