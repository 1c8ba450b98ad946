"""autotune: choose layer fusion and core counts for DNNs on multi-core accelerators from a learned cost model.

The front door::

    from autotune import load_hardware, load_graph, LatencyModel, plan, evaluate

    hw = load_hardware("mlu100")                     # a preset name or a YAML file
    graph = load_graph("resnet50")                   # a zoo name or an .onnx file
    model = LatencyModel.load("models/mlu100", hw)   # refuses a model made for other hardware
    p = plan(graph, hw, model)                       # the DP optimum under the model; no device use
    p_analytic = plan(graph, hw, cost="analytic")    # other cost sources by keyword
    scores = evaluate(graph, hw, model)              # every strategy, scored on the device

Names load on first use, so `import autotune` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "load_hardware": "hardware.config", "HardwareConfig": "hardware.config",
    "load_graph": "frontends.loader", "Graph": "ir.graph", "GraphBuilder": "ir.graph",
    "LatencyModel": "costmodel.model",
    "plan": "planning.planner", "verify": "planning.planner", "Plan": "planning.planner",
    "evaluate": "planning.evaluation", "run_eval": "planning.evaluation",
    "CostSource": "planning.costs", "register_cost": "planning.costs",
    "register_strategy": "planning.strategies", "run_strategy": "planning.strategies",
    "AutotuneError": "errors",
}
_RENAMED = {"run_strategy": "run"}

__all__ = [
    "AutotuneError", "CostSource", "Graph", "GraphBuilder", "HardwareConfig", "LatencyModel", "Plan", "evaluate",
    "load_graph", "load_hardware", "plan", "register_cost", "register_strategy", "run_eval", "run_strategy", "verify",
]

if TYPE_CHECKING:
    from autotune.costmodel.model import LatencyModel
    from autotune.errors import AutotuneError
    from autotune.frontends.loader import load_graph
    from autotune.hardware.config import HardwareConfig, load_hardware
    from autotune.ir.graph import Graph, GraphBuilder
    from autotune.planning.costs import CostSource, register_cost
    from autotune.planning.evaluation import evaluate, run_eval
    from autotune.planning.planner import Plan, plan, verify
    from autotune.planning.strategies import register_strategy
    from autotune.planning.strategies import run as run_strategy


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'autotune' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), _RENAMED.get(name, name))
    globals()[name] = value
    return value
