"""The Lennard-Jones energy of a cluster of n atoms, a Sum over all pairs i < j.

    E(X) = sum_{i=0}^{n-1} sum_{j=i+1}^{n-1} 4 (r_ij**-12 - r_ij**-6),   r_ij = |X[i, :] - X[j, :]|

X is an n x 3 sympy.IndexedBase (one row of coordinates per atom). The inner Sum's lower bound
depends on the outer index (a triangular Sum): the module lists the pairs once, flat, and the
gradient of X adds each pair's contribution to both of its atoms in one np.bincount.

    backpropc compile examples/lennard_jones_indexed.py --check
"""

import sympy as sp

import backpropc as bp

n = sp.Symbol("n", integer=True, positive=True)
X = sp.IndexedBase("X", shape=(n, 3))
i, j = sp.symbols("i j", integer=True)

r2 = sum((X[i, k] - X[j, k]) ** 2 for k in range(3))  # squared distance of atoms i and j

model = bp.Model(
    name="lennard_jones_indexed",
    steps=[],
    loss=sp.Sum(4 * (r2 ** -6 - r2 ** -3), (j, i + 1, n - 1), (i, 0, n - 1)),
    wrt=[X],
)

# Sampling range of the checks: atoms spread out, so that no two are too close.
DOMAINS = {"X": (-3.0, 3.0)}
