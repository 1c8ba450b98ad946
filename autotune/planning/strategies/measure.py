"""`learned+measure`: the learned plan refined by at most `measure_budget` device measurements
(autotune/planning/refine.py); registered here, counted by the registry."""

from __future__ import annotations

from autotune.planning.planner import Plan
from autotune.planning.refine import measured_plan
from autotune.planning.strategies import Context, register_strategy


@register_strategy("learned+measure", needs_model=True, may_measure=True)
def learned_measure(ctx: Context) -> Plan:
    """The learned plan, refined with at most `measure_budget` device measurements."""

    device = ctx.cost("device", seed=int(ctx.options.get("measure_seed", 0)))
    return measured_plan(ctx.graph, ctx.hw, ctx.model, int(ctx.options.get("measure_budget", 0)), device)
