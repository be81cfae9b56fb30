"""The Lennard-Jones energy of a small cluster: three atoms in the plane (molecular dynamics).

    r_ij**2 = (x_i - x_j)**2 + (y_i - y_j)**2
    s_ij    = 1/r_ij**6                      (sigma = 1)
    E       = sum over pairs of 4*(s_ij**2 - s_ij)   (epsilon = 1)

The pair potential 4(r**-12 - r**-6) repels atoms closer than 2**(1/6) and attracts them beyond;
minus the gradient of E with respect to the coordinates is the force on every atom, the quantity
a molecular-dynamics step or a geometry optimisation needs. Two atoms on top of each other are a
singularity (r**-12), where central finite differences are meaningless long before the energy
overflows: `backpropc check` says so instead of failing, and sympy.diff gives the verdict.

Compile it:  backpropc compile examples/lennard_jones.py --check
"""

from itertools import combinations

import sympy as sp

import backpropc as bp

ATOMS = 3
xs = sp.symbols(f"x1:{ATOMS + 1}")
ys = sp.symbols(f"y1:{ATOMS + 1}")

steps, pair_energies = [], []
for i, j in combinations(range(ATOMS), 2):
    r2, s = sp.symbols(f"r2_{i + 1}{j + 1} s_{i + 1}{j + 1}")
    steps += [(r2, (xs[i] - xs[j]) ** 2 + (ys[i] - ys[j]) ** 2), (s, 1 / r2 ** 3)]
    pair_energies.append(4 * (s ** 2 - s))
E = sp.Symbol("E")
steps.append((E, sp.Add(*pair_energies)))

model = bp.Model(
    name="lennard_jones",
    steps=steps,
    loss=E,
    wrt=[c for xy in zip(xs, ys) for c in xy],
    inputs=[],
)
