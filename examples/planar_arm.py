"""A two-link planar robot arm reaching for a target (robotics, inverse kinematics).

    ex = l1 cos(q1) + l2 cos(q1 + q2)
    ey = l1 sin(q1) + l2 sin(q1 + q2)
    L  = ((ex - px)**2 + (ey - py)**2)/2

The standard forward kinematics of a planar arm with joint angles q1, q2 (radians, q2 relative to
the first link) and link lengths l1, l2: the end effector e = (ex, ey), the target p = (px, py),
and the loss is half the squared distance between them. Its gradient with respect to the joint
angles is J^T (e - p), with J the arm's Jacobian d(ex, ey)/d(q1, q2), so a gradient step is the
Jacobian-transpose method of inverse kinematics: it moves the joints to pull the hand towards the
target without inverting J, and stays well behaved near singular poses.

Compile it:  backpropc compile examples/planar_arm.py --check
"""

import sympy as sp

import backpropc as bp

q1, q2 = sp.symbols("q1 q2")
l1, l2, px, py = sp.symbols("l1 l2 px py")
ex, ey, L = sp.symbols("ex ey L")

model = bp.Model(
    name="planar_arm",
    steps=[
        (ex, l1 * sp.cos(q1) + l2 * sp.cos(q1 + q2)),
        (ey, l1 * sp.sin(q1) + l2 * sp.sin(q1 + q2)),
        (L, ((ex - px) ** 2 + (ey - py) ** 2) / 2),
    ],
    loss=L,
    wrt=[q1, q2],
    inputs=[l1, l2, px, py],
)

# Link lengths are positive; angles and target coordinates may take any value.
DOMAINS = {"l1": (0.5, 1.5), "l2": (0.5, 1.5)}
