"""The library's front door: `from autotune import ...`, plan() without the device, and library
modules that neither print nor tell users to run make (the CLI does that)."""

import ast
from pathlib import Path

import numpy as np
import pytest

import autotune
from autotune import AutotuneError, evaluate, load_graph, load_hardware, plan

HW = load_hardware("mlu100")
ROOT = Path(autotune.__file__).parent


class _Ones:
    """A stand-in regressor on the datasheet features: every pair costs 1 ms."""

    def predict(self, X):
        return np.ones(len(X))


def test_every_public_name_imports():
    from autotune import LatencyModel  # noqa: F401 - the import is the test

    for name in autotune.__all__:
        assert getattr(autotune, name) is not None
    with pytest.raises(AttributeError):
        autotune.no_such_name  # noqa: B018


def test_plan_takes_the_model_positionally_and_never_touches_the_device(monkeypatch):
    import autotune.device.simulator as sim

    def refuse(*a, **k):
        raise AssertionError("the simulator was called")

    monkeypatch.setattr(sim, "simulate", refuse)
    monkeypatch.setattr(sim, "simulate_batch", refuse)
    g = load_graph("resnet18")
    p = plan(g, HW, _Ones())
    assert p.strategy == "learned" and p.device_calls == 0
    assert sum(grp.j - grp.i for grp in p.groups) == len(g)
    assert plan(g, HW, cost="analytic").device_calls == 0
    with pytest.raises(AutotuneError, match="needs a trained model"):
        plan(g, HW)


def test_plan_with_the_oracle_counts_its_device_calls():
    g = load_graph("alexnet")
    p = plan(g, HW, cost="oracle")
    assert p.device_calls > 0 and p.strategy == "oracle"


def test_evaluate_without_a_model_scores_the_model_free_strategies():
    g = load_graph("alexnet")
    out = evaluate(g, HW)
    assert "learned" not in out and {"none", "oracle", "analytic"} <= set(out)
    assert out["oracle"]["ms"] <= min(v["ms"] for v in out.values()) + 1e-9  # the optimum on the device


def _library_files():
    return [p for p in ROOT.rglob("*.py") if "cli" not in p.relative_to(ROOT).parts]


def test_library_modules_never_print():
    printing = []
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                printing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not printing, printing


def test_only_the_cli_mentions_make():
    mentions = [str(p.relative_to(ROOT)) for p in _library_files() if "`make " in p.read_text()]
    assert not mentions, mentions
