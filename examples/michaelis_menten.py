"""Michaelis-Menten kinetics fitted by least squares: one residual per measurement.

    r = Vmax*S/(Km + S) - v

With no `loss`, the objective is half the sum of the squared residuals (SciPy's and Ceres'
convention), so `jacobian_flat` is exactly what `scipy.optimize.least_squares(jac=...)` wants.
DATA holds the treated-cell measurements of the Puromycin data set (Treloar, 1974; R's
`datasets::Puromycin`): substrate concentration S in ppm, reaction rate v in counts/min^2.

    backpropc compile examples/michaelis_menten.py --derivatives grad,jacobian --check
"""

import sympy as sp

import backpropc as bp

Vmax, Km, S, v = sp.symbols("Vmax Km S v")

model = bp.Model(
    name="michaelis_menten",
    steps=[],
    loss=None,
    wrt=[Vmax, Km],
    inputs=[S, v],
    residuals=[Vmax * S / (Km + S) - v],
)

DOMAINS = {"Km": (0.05, 1.0), "S": (0.02, 1.1)}   # Km + S > 0: away from the pole

DATA = {
    "S": [0.02, 0.02, 0.06, 0.06, 0.11, 0.11, 0.22, 0.22, 0.56, 0.56, 1.10, 1.10],
    "v": [76, 47, 97, 107, 123, 139, 159, 152, 191, 201, 207, 200],
}
