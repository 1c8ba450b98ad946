"""The DP on one cost source: `learned` (the model), `analytic` (the datasheet estimate) and
`oracle` (the noise-free device: the exact optimum of this formulation)."""

from __future__ import annotations

from autotune.planning.planner import Plan, dp_plan, sure_plan
from autotune.planning.strategies import Context, register_strategy


@register_strategy("learned", needs_model=True)
def learned(ctx: Context) -> Plan:
    """The DP on the learned model: never touches the device. A model that remembers measured
    kernels prefers them to guesses within its typical error (planner.sure_plan)."""
    return sure_plan(ctx.graph, ctx.hw, ctx.cost("learned"), ctx.model, "learned")


@register_strategy("analytic")
def analytic(ctx: Context) -> Plan:
    """The DP on the datasheet estimate with generic constants: no labels, no device."""
    return dp_plan(ctx.graph, ctx.hw, ctx.cost("analytic"), "analytic")


@register_strategy("oracle", may_measure=True)
def oracle(ctx: Context) -> Plan:
    """The DP on the noise-free device: the limit every other strategy is judged against."""
    return dp_plan(ctx.graph, ctx.hw, ctx.device_cost(), "oracle")
