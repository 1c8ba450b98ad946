"""Planning strategies as small plug-ins, and the registry that runs them and counts device use.

A strategy is a function `fn(ctx) -> Plan` registered with `@register_strategy(name, ...)`,
declaring whether it needs a trained model and whether it may measure on the device. It asks the
context for cost sources (`ctx.cost("learned")`, `ctx.cost("oracle")`, ...); the registry, not the
strategy, counts every pair those sources measure and reports it as the plan's `device_calls`, and
refuses a measuring source to a strategy that declared it does not measure.

Adding a strategy is one new file in this package plus a test: every module of the package is
imported, in name order, when the package is; docs/architecture.md walks through it.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autotune.errors import AutotuneError
from autotune.hardware.config import HardwareConfig
from autotune.ir.graph import Graph
from autotune.planning.costs import CostSource, make_cost, table_cost
from autotune.planning.planner import Plan


@dataclass(frozen=True)
class Strategy:
    name: str
    fn: Callable[[Context], Plan]
    needs_model: bool
    may_measure: bool
    doc: str


@dataclass
class Context:
    """What a strategy plans with: the graph, the hardware, the model (if any), options, and cost
    sources made through `cost`, which the registry counts."""

    strategy: Strategy
    graph: Graph
    hw: HardwareConfig
    model: Any = None
    options: dict = field(default_factory=dict)
    sources: list[CostSource] = field(default_factory=list)

    def cost(self, name: str, seed: int = 0) -> CostSource:
        src = make_cost(name, self.hw, self.model, seed)
        if src.measures and not self.strategy.may_measure:
            raise AutotuneError(f"strategy {self.strategy.name!r} declares it never measures on the device, "
                                f"but asked for cost source {name!r}")
        self.sources.append(src)
        return src

    def device_cost(self) -> CostSource:
        """The noise-free device: a measured table of the network when the options hold one
        (`table`, a costs.MeasuredTable), else the simulator; every pair counted."""
        table = self.options.get("table")
        if table is None:
            return self.cost("oracle")
        if not self.strategy.may_measure:
            raise AutotuneError(f"strategy {self.strategy.name!r} declares it never measures on the device, "
                                "but asked for the measured table")
        src = table_cost(table, self.hw, self.graph)
        self.sources.append(src)
        return src

    def search_cost(self) -> CostSource:
        """The cost a searching baseline uses: the learned model when there is one (equal knowledge
        with `learned`; the `search` option's source when the caller has its predictions already,
        costs.memo_cost), else the device (every pair counted)."""
        if self.model is None:
            return self.device_cost()
        search = self.options.get("search")
        if search is None:
            return self.cost("learned")
        if search.measures:
            raise AutotuneError(f"the search option of strategy {self.strategy.name!r} must be a model's cost, "
                                f"not the device's ({search.name})")
        self.sources.append(search)
        return search


_STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, needs_model: bool = False, may_measure: bool = False):
    """Decorator: register `fn(ctx) -> Plan` as strategy `name`."""
    def deco(fn: Callable[[Context], Plan]) -> Callable[[Context], Plan]:
        if name in _STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        _STRATEGIES[name] = Strategy(name, fn, needs_model, may_measure, (fn.__doc__ or "").strip().partition("\n")[0])
        return fn
    return deco


def unregister_strategy(name: str) -> None:
    """Forget a strategy (for tests that add one for a while)."""
    del _STRATEGIES[name]


def names() -> list[str]:
    """Registered strategies, in registration order."""
    return list(_STRATEGIES)


def get(name: str) -> Strategy:
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise AutotuneError(f"unknown strategy {name!r}; choose one of: {', '.join(_STRATEGIES)}") from None


def run(name: str, graph: Graph, hw: HardwareConfig, model=None, **options) -> Plan:
    """Plan `graph` with strategy `name`; the plan's `device_calls` counts every device measurement
    of the cost sources it used, and `plan_s` its planning time."""
    st = get(name)
    if st.needs_model and model is None:
        raise AutotuneError(f"the {name} strategy needs a trained model")
    ctx = Context(st, graph, hw, model, options)
    t0 = time.perf_counter()
    p = st.fn(ctx)
    p.plan_s = time.perf_counter() - t0
    p.device_calls = sum(src.sim_pairs for src in ctx.sources if src.measures)
    p.strategy = name
    return p


# the strategies: every module of this package, registered on import
for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
