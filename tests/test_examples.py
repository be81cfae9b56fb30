"""Every shipped example: the generated module against sympy.diff and finite differences,
per example and on a batch, and its source against a golden file."""

import runpy
from pathlib import Path

import numpy as np
import pytest
from oracle import assert_close, directional_derivatives, random_point, reference_gradient

import backpropc as bp

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"
NAMES = sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.stem.endswith("_grad"))


def load_example(name):
    """The example's model, and its optional DOMAINS: {argument name: (low, high)}."""
    namespace = runpy.run_path(str(EXAMPLES / f"{name}.py"))
    return namespace["model"], namespace.get("DOMAINS", {})


@pytest.fixture(scope="module", params=NAMES)
def example(request):
    model, domains = load_example(request.param)
    return request.param, model, bp.compile(model), domains


@pytest.mark.parametrize("batch", [None, 5])
def test_gradient_matches_sympy_diff_and_finite_differences(example, batch):
    name, model, compiled, domains = example
    module = compiled.load()
    rng = np.random.default_rng(sum(map(ord, name)))
    for _ in range(3):
        point = random_point(module, rng, batch, domains)
        value, grads = module.value_and_grad(**point)
        for arg, g, e in zip(module.WRT, grads, reference_gradient(model, point)):
            assert np.shape(g) == np.shape(point[arg])
            assert_close(g, e, 1e-10, what=f"{name}: d/d{arg} vs sympy.diff")
        backprop, finite = directional_derivatives(module, point, grads, rng).T
        assert_close(backprop, finite, 1e-6, what=f"{name} vs finite differences")
        assert np.isclose(value, np.sum(module.forward(**point)))


def test_gradients_have_their_parameters_shapes(example):
    name, model, compiled, domains = example
    module = compiled.load()
    point = random_point(module, np.random.default_rng(1), 7, domains)
    for arg, g in zip(module.WRT, module.grad(**point)):
        assert np.shape(g) == np.shape(point[arg])


def test_generated_module_self_check_passes(example, capsys):
    name, model, compiled, domains = example
    assert compiled.load()._self_check() == 0
    assert "max relative error" in capsys.readouterr().out


def test_golden_source(example, update_golden):
    name, model, compiled, domains = example
    golden = GOLDEN / f"{name}_grad.py"
    if update_golden:
        golden.write_text(compiled.source)
    assert golden.exists(), f"no golden file for {name}; run pytest --update-golden"
    assert compiled.source == golden.read_text(), f"{name}: generated code changed; review and run --update-golden"


def test_backward_costs_about_two_forward_passes(example):
    """The lecture's rule of thumb (slide 19), with margin: ops(value and grad) <= 3 ops(forward)."""
    name, model, compiled, domains = example
    assert compiled.ops["value_and_grad"] <= 3 * compiled.ops["forward"]


def test_every_golden_module_passes_ruff():
    """The generated code has no unused variables and nothing else ruff's default rules flag."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", str(GOLDEN)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_readme_shows_the_generated_code_as_it_is():
    """The README's listing of the logistic model's value_and_grad is the golden module's."""
    readme = (GOLDEN.parent.parent / "README.md").read_text(encoding="utf-8")
    listing = readme.split("The generated `value_and_grad` reads like")[1].split("```python\n")[1].split("```")[0]
    assert listing.startswith("def value_and_grad(") and listing in (GOLDEN / "logistic_grad.py").read_text()
