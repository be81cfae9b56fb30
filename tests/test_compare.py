"""Backprop against the calculus-class expansion, and the one operation count."""

import json
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sympy as sp
from sympy.core.cache import clear_cache

import backpropc as bp
from backpropc.compare import compare
from backpropc.opcount import dag_ops, tree_ops

ROOT = Path(__file__).resolve().parent.parent
x, y, w, b = sp.symbols("x y w b")


def example(name):
    return runpy.run_path(str(ROOT / "examples" / f"{name}.py"))["model"]


@pytest.mark.parametrize("name", ["logistic", "mlp"])
def test_three_methods_agree_and_backprop_is_cheapest(name):
    result = compare(example(name), batch=200, budget=60)
    rows = {r.method: r for r in result.rows}
    assert [r.method for r in result.rows] == ["backprop", "naive", "naive_cse"]
    for r in result.rows:
        assert r.status == "ok" and r.max_rel_diff < 1e-10 and r.run_s > 0 and r.compile_s > 0
    assert rows["backprop"].ops < rows["naive_cse"].ops <= rows["naive"].ops
    assert result.ratio == rows["backprop"].ops / result.ops_forward


def test_naive_way_runs_over_budget_on_a_deep_chain_and_the_call_returns():
    clear_cache()
    e = x
    ws = sp.symbols("w0:40")
    for k in range(40):
        e = sp.sin(ws[k] * e + e)
    start = time.perf_counter()
    result = compare(bp.Model("chain40", [], e, list(ws), [x]), batch=100, budget=2)
    elapsed = time.perf_counter() - start
    rows = {r.method: r for r in result.rows}
    assert rows["backprop"].status == "ok"
    assert rows["naive"].status == "over budget" and rows["naive"].ops is None
    assert elapsed < 30


def test_json_output_has_exactly_the_documented_keys():
    run = subprocess.run([sys.executable, "-m", "backpropc", "compare", str(ROOT / "examples" / "logistic.py"),
                          "--json", "--batch", "50", "--budget", "30", "--seed", "3"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert set(data) == {"model", "batch", "ops_forward", "ratio", "rows", "matrix", "indexed"}
    assert data["batch"] == 50 and data["model"] == "logistic"
    for row in data["rows"]:
        assert set(row) == {"method", "status", "ops", "compile_s", "run_s", "max_rel_diff"}


def test_table_states_the_ratio_against_the_cheap_gradient_bound():
    run = subprocess.run([sys.executable, "-m", "backpropc", "compare", str(ROOT / "examples" / "logistic.py"),
                          "--batch", "20", "--budget", "30"], capture_output=True, text=True)
    assert run.returncode == 0 and "Baur-Strassen" in run.stdout and "naive_cse" in run.stdout


def test_op_count_agrees_with_a_hand_count():
    # L = (w*x + b)**2: forward w*x, +b, **2 = 3 ops.
    # Backward: z_bar = 2*z (1), w_bar = sum(z_bar*x) (2), b_bar = sum(z_bar) (1), sum(L) (1) = 5.
    compiled = bp.compile((w * x + b) ** 2, wrt=[w, b], inputs=[x], name="square")
    assert compiled.ops == {"forward": 3, "value_and_grad": 8}
    # L = sin(w)*exp(w): forward sin, exp, * = 3 ops. Backward: w_bar = sum(cos(w)*e + L), since
    # sin(w)*exp(w) is L itself: cos, *, +, sum = 4; sum(L) = 1.
    compiled = bp.compile(sp.sin(w) * sp.exp(w), wrt=[w], name="product")
    assert compiled.ops == {"forward": 3, "value_and_grad": 8}
    shared = sp.sin(w + x) + (w + x) ** 2  # w + x once in a DAG, twice in the printed tree
    assert tree_ops(shared) == 5 and dag_ops(shared) == 4


def _walked_ops(e):
    """The printed tree's operations, by really visiting every node (only for small trees)."""
    from backpropc.opcount import _sympy_cost
    return sum(_sympy_cost(node) for node in sp.preorder_traversal(e))


def test_memoised_tree_size_agrees_with_the_printed_tree():
    e = x
    for k in range(8):
        e = sp.sin(w * e + e)  # each level uses the previous one twice
    loss = (bp.sigmoid(e) - y) ** 2 + sp.Piecewise((e, e > 0), (0, True))
    for expr in (e, loss, sp.diff(loss, w)):
        assert tree_ops(expr) == _walked_ops(expr)
    assert tree_ops(e) > 2 ** 8 and dag_ops(e) == 3 * 8


def test_matrix_model_is_compared_with_its_written_out_expansion():
    result = bp.compare(runpy.run_path(str(ROOT / "examples" / "vectorised_mlp.py"))["model"],
                        batch=20, budget=60)
    assert result.matrix
    assert [r.status for r in result.rows] == ["ok", "ok", "ok"]
    assert all(r.max_rel_diff < 1e-10 for r in result.rows)
    assert "matrix operations" in result.format()
