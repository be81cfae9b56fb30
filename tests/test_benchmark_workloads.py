"""Deterministic properties of every benchmark workload (the timings themselves live in
benchmarks/, never in tests)."""

import sys
from pathlib import Path

import pytest

import backpropc as bp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from workloads import benchmark_models

MODELS = benchmark_models()


@pytest.mark.parametrize("label, build", MODELS, ids=[label for label, _ in MODELS])
def test_value_and_gradient_cost_at_most_three_forward_passes(label, build):
    """SPEC section 8: ops(value and gradient) <= 3 x ops(forward) on every benchmark model."""
    ops = bp.compile(build()).ops
    assert ops["value_and_grad"] <= 3 * ops["forward"], f"{label}: {ops}"
