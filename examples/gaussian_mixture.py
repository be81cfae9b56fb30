"""Negative log-likelihood of a 1-D mixture of three Gaussians (statistics, density estimation).

    pi_k = softmax(a)_k,   sigma_k = exp(s_k),
    L = -log sum_k pi_k N(x; mu_k, sigma_k)

The standard Gaussian mixture model, with unconstrained parameters: the mixture logits a_k (the
weights are their softmax), the means mu_k and the log standard deviations s_k, so any real values
are a valid mixture. Each log-term is

    z_k   = (x - mu_k) / sigma_k
    ell_k = log pi_k + log N(x; mu_k, sigma_k) = a_k - logsumexp(a) - s_k - z_k**2/2 - log(2*pi)/2

and L = -logsumexp(ell_1, ell_2, ell_3), which cannot overflow or underflow to log(0) even when
x is far from every component. The gradient trains the mixture by gradient descent (an
alternative to EM that works with minibatches and extends to mixture density networks, where
a, mu and s are a network's outputs); the error signal of ell_k is minus the responsibility of
component k for x.

Compile it:  backpropc compile examples/gaussian_mixture.py --check
"""

import sympy as sp

import backpropc as bp

K = 3

x = sp.Symbol("x")
a = sp.symbols(f"a1:{K + 1}")
mu = sp.symbols(f"mu1:{K + 1}")
s = sp.symbols(f"s1:{K + 1}")
z = sp.symbols(f"z1:{K + 1}")
ell = sp.symbols(f"ell1:{K + 1}")
lse, L = sp.symbols("lse L")

steps = [(lse, bp.logsumexp(*a))]
for k in range(K):
    steps.append((z[k], (x - mu[k]) * sp.exp(-s[k])))
    steps.append((ell[k], a[k] - lse - s[k] - z[k] ** 2 / 2 - sp.log(2 * sp.pi) / 2))
steps.append((L, -bp.logsumexp(*ell)))

model = bp.Model(
    name="gaussian_mixture",
    steps=steps,
    loss=L,
    wrt=list(a) + list(mu) + list(s),
    inputs=[x],
)

# Every argument is unconstrained, so any sampling range stays in the domain; the log standard
# deviations are kept to sigma in (0.37, 2.7), component widths comparable to
# the spread of the data and the means.
DOMAINS = {"s1": (-1.0, 1.0), "s2": (-1.0, 1.0), "s3": (-1.0, 1.0)}
