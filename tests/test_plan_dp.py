"""Planner: DP optimality against brute force, legality, baselines, JSON, linear cost."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autotune.device.simulator import simulate
from autotune.frontends import zoo
from autotune.hardware.config import load_hardware
from autotune.ir.graph import GraphBuilder
from autotune.planning import planner, strategies
from autotune.planning.costs import CostSource, simulator_cost

HW = load_hardware("mlu100")


def _random_graph(data):
    c = data.draw(st.sampled_from([8, 16, 33, 64, 128]))
    s = data.draw(st.sampled_from([4, 14, 28, 56]))
    b = GraphBuilder("r")
    x = b.input("x", (1, c, s, s))
    skip = x
    for _ in range(data.draw(st.integers(2, 7))):
        op = data.draw(st.sampled_from(["conv", "conv", "pool", "add", "opaque"]))
        if op == "conv":
            x = b.conv(x, data.draw(st.sampled_from([8, 32, 48, 128])), data.draw(st.sampled_from([1, 3])))
        elif op == "pool" and b.shape(x)[2] >= 2:
            x = b.pool(x, 2)
        elif op == "add" and b.shape(skip) == b.shape(x):
            x = b.eltwise([x, skip])
        elif op == "opaque":
            x = b.add("opaque", [x], None, shape=b.shape(x))
        else:
            x = b.add("act", [x], None, mode="relu")
        if data.draw(st.booleans()):
            skip = x
    return b.build()


def brute_force(g, hw):
    """Minimum simulated latency over every partition into legal groups and every core count."""
    n = len(g.order)
    best = np.inf
    for cuts in itertools.product([0, 1], repeat=n - 1):
        bounds = [0] + [k + 1 for k, c in enumerate(cuts) if c] + [n]
        spans = list(zip(bounds, bounds[1:]))
        if any(j - i > hw.max_fusion for i, j in spans):
            continue
        if any(j - i > 1 and any(lyr.op == "opaque" for lyr in g.order[i:j]) for i, j in spans):
            continue
        total = 0.0
        for i, j in spans:
            ks = hw.core_counts
            total += simulate([g.group(i, j)] * len(ks), ks, hw).min()
        best = min(best, total)
    return best


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_dp_equals_brute_force(data):
    hw = HW.updated({"datasheet.max_fusion": data.draw(st.integers(2, 4))})
    g = _random_graph(data)
    p = planner.plan(g, hw, cost="oracle")
    assert p.predicted_ms == pytest.approx(brute_force(g, hw), rel=1e-9)
    planner.verify(p, g, hw)
    assert p.device_ms == pytest.approx(p.predicted_ms, rel=1e-9)


def test_plan_covers_every_layer_once_and_respects_the_rules():
    g = zoo.build("googlenet")
    p = planner.plan(g, HW, cost="oracle")
    names = [n for grp in p.groups for n in grp.layers]
    assert names == [lyr.name for lyr in g.order]
    assert all(len(grp.layers) <= HW.max_fusion for grp in p.groups)
    assert all(grp.cores in HW.core_counts for grp in p.groups)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_oracle_beats_every_baseline(name):
    g = zoo.build(name)
    oracle = planner.verify(strategies.run("oracle", g, HW), g, HW).device_ms
    for s in ("none", "cores-only", "fuse-max", "dlfusion", "greedy", "analytic"):
        p = planner.verify(strategies.run(s, g, HW), g, HW)
        assert oracle <= p.device_ms * (1 + 1e-9), s
    none = planner.verify(strategies.run("none", g, HW), g, HW)
    assert all(grp.cores == 1 and len(grp.layers) == 1 for grp in none.groups)
    assert none.device_ms / oracle > 3


def test_plan_json_has_the_design_keys_and_round_trips():
    g = zoo.build("resnet18")
    p = planner.verify(planner.plan(g, HW, cost="oracle"), g, HW)
    d = json.loads(json.dumps(p.to_dict()))
    assert set(d) == {"model", "hardware", "hardware_hash", "batch", "strategy", "predicted_ms", "device_ms",
                      "groups"}
    assert set(d["groups"][0]) == {"span", "candidate_id", "layers", "cores", "predicted_ms", "device_ms"}
    assert d["groups"][0]["span"] == [0, len(d["groups"][0]["layers"])]
    assert d["hardware_hash"] == HW.hash and d["model"] == "resnet18"
    back = planner.Plan.from_dict(d, g)
    assert back.to_dict() == d
    old = json.loads(json.dumps(d).replace('"device_ms"', '"simulated_ms"'))  # a plan file from before the rename
    assert planner.Plan.from_dict(old, g).to_dict() == d


def test_deterministic():
    g = zoo.build("squeezenet1_1")
    assert planner.plan(g, HW, cost="oracle").to_dict() == planner.plan(g, HW, cost="oracle").to_dict()


def test_cost_source_sees_all_pairs_in_one_batch_linear_in_layers():
    for n in (20, 40):
        b = GraphBuilder("c")
        x = b.input("x", (1, 16, 8, 8))
        for _ in range(n):
            x = b.conv(x, 16, 3)
        g = b.build()
        calls = []
        sim = simulator_cost(HW)
        inner = sim.fn
        sim.fn = lambda bt, gi, k, calls=calls, inner=inner: (calls.append(len(gi)), inner(bt, gi, k))[1]
        planner.dp_plan(g, HW, sim, "oracle")
        L, K = HW.max_fusion, len(HW.core_counts)
        assert calls == [sum(min(j, L) for j in range(1, n + 1)) * K]


def test_learned_strategy_never_simulates():
    class Fake:
        def predict(self, X):
            return np.ones(len(X))

    g = zoo.build("alexnet")
    p = strategies.run("learned", g, HW, model=Fake())
    assert p.device_calls == 0 and len(p.groups) >= 1


class _ConstantModel:
    """A stand-in learned model: every (group, cores) pair costs its core count in ms."""

    def predict(self, X):
        from autotune.costmodel.features import FEATURE_NAMES

        return X[:, FEATURE_NAMES.index("cores")].astype(float)


def test_device_calls_are_counted_truthfully():
    from autotune.frontends.study_layers import study_grid

    g = zoo.build("squeezenet1_1")
    grid = len(study_grid()[1]) * len(HW.core_counts)
    # without a model, baselines measure on the device: dlfusion's study map counts too
    p = strategies.run("dlfusion", g, HW)
    assert p.device_calls == grid + len(p.groups)
    assert strategies.run("none", g, HW).device_calls == len(g)
    # with a model, nothing but the oracle touches the device
    model = _ConstantModel()
    for name in strategies.names():
        p = strategies.run(name, g, HW, model=model)
        assert (p.device_calls > 0) == (name == "oracle"), name
    assert planner.plan(g, HW, model).device_calls == 0 and planner.plan(g, HW, cost="analytic").device_calls == 0
    assert planner.plan(g, HW, cost="oracle").device_calls > 0


def test_plan_needs_a_model_or_a_named_cost_source():
    from autotune.errors import AutotuneError

    g = zoo.build("squeezenet1_1")
    with pytest.raises(AutotuneError, match="needs a trained model"):
        planner.plan(g, HW)
    with pytest.raises(AutotuneError, match="unknown cost source"):
        planner.plan(g, HW, cost="magic")
    p = planner.plan(g, HW, _ConstantModel())
    assert p.strategy == "learned" and all(grp.cores == 1 for grp in p.groups)


def test_analytic_plans_from_the_datasheet_alone():
    g = zoo.build("resnet18")
    p = strategies.run("analytic", g, HW.updated({"device": None}))  # no device needed
    assert p.strategy == "analytic" and p.device_calls == 0
    assert [n for grp in p.groups for n in grp.layers] == [lyr.name for lyr in g.order]


class _AnalyticModel:
    """A poor stand-in learned model: the datasheet estimate, 20% low on 32 cores."""

    val_mae_log_ = 0.05

    def predict(self, X):
        from autotune.costmodel.features import FEATURE_NAMES, PRIOR_FEATURE

        ms = np.exp(X[:, FEATURE_NAMES.index(PRIOR_FEATURE)].astype(float))
        return np.where(X[:, FEATURE_NAMES.index("cores")] == 32, 0.8 * ms, ms)


@pytest.mark.parametrize("budget", [0, 7, 30, 90])
def test_learned_plus_measure_stays_in_budget_and_fixes_what_the_model_gets_wrong(budget):
    g = zoo.build("resnet18")
    model = _AnalyticModel()
    learned = planner.verify(strategies.run("learned", g, HW, model=model), g, HW)
    p = planner.verify(strategies.run("learned+measure", g, HW, model=model, measure_budget=budget), g, HW)
    from autotune.planning.refine import MEASURE_REPEATS

    assert p.device_calls <= budget and p.device_calls % MEASURE_REPEATS == 0
    assert [n for grp in p.groups for n in grp.layers] == [lyr.name for lyr in g.order]
    def shape(plan):
        return [(grp.layers, grp.cores) for grp in plan.groups]

    if budget == 0:
        assert shape(p) == shape(learned) and p.device_calls == 0
    if budget >= 30:
        assert p.device_calls > 0 and p.device_ms < 0.98 * learned.device_ms  # measurements corrected it
    again = strategies.run("learned+measure", g, HW, model=model, measure_budget=budget)
    assert shape(again) == shape(p)  # seeded: the same measurements, the same plan


def test_measurement_noise_alone_does_not_move_a_good_plan():
    """With the device's own costs as the model, measuring only adds noise: the plan must not get worse."""
    class _Exact:
        val_mae_log_ = 0.01

    g = zoo.build("squeezenet1_1")
    oracle = strategies.run("oracle", g, HW)
    exact = CostSource("exact", simulator_cost(HW).fn, measures=False)
    from autotune.planning.costs import device_cost
    from autotune.planning.refine import measured_plan

    p = measured_plan(g, HW, _Exact(), 60, device_cost(HW, seed=3), cost=exact)
    planner.verify(p, g, HW)
    assert p.device_ms <= oracle.predicted_ms * 1.002


def test_a_new_strategy_is_one_function_and_the_registry_counts_its_device_use():
    from autotune.errors import AutotuneError
    from autotune.planning.planner import fixed_plan

    @strategies.register_strategy("every-layer-on-8", may_measure=True)
    def every_layer_on_8(ctx):
        """Each layer alone on 8 cores, costed on the device."""
        n = len(ctx.graph.order)
        return fixed_plan(ctx.graph, ctx.hw, [(i, i + 1) for i in range(n)], [8] * n, "x", ctx.cost("oracle"))

    @strategies.register_strategy("sneaky")
    def sneaky(ctx):
        """Declares no device use, then asks for the device."""
        return planner.dp_plan(ctx.graph, ctx.hw, ctx.cost("oracle"), "sneaky")

    try:
        g = zoo.build("squeezenet1_1")
        p = strategies.run("every-layer-on-8", g, HW)
        assert p.strategy == "every-layer-on-8" and p.device_calls == len(g)  # counted by the registry
        assert all(grp.cores == 8 for grp in p.groups) and p.plan_s > 0
        with pytest.raises(AutotuneError, match="never measures"):
            strategies.run("sneaky", g, HW)
        with pytest.raises(AutotuneError, match="unknown strategy"):
            strategies.run("nope", g, HW)
        with pytest.raises(AutotuneError, match="needs a trained model"):
            strategies.run("learned", g, HW)
    finally:
        strategies.unregister_strategy("every-layer-on-8")
        strategies.unregister_strategy("sneaky")


def test_a_factory_without_a_docstring_registers_with_an_empty_summary():
    from autotune.planning import costs

    @strategies.register_strategy("undocumented-strategy")
    def undocumented(ctx):
        return planner.dp_plan(ctx.graph, ctx.hw, ctx.cost("analytic"), "undocumented-strategy")

    @costs.register_cost("undocumented-cost")
    def undocumented_cost(hw, model=None, seed=0):
        return costs.make_cost("analytic", hw)

    try:
        assert strategies.get("undocumented-strategy").doc == ""
        assert costs._COSTS["undocumented-cost"].doc == ""
        assert costs.make_cost("undocumented-cost", HW).name == "analytic"
    finally:
        strategies.unregister_strategy("undocumented-strategy")
        costs._COSTS.pop("undocumented-cost")


class _ContentModel:
    """A stand-in learned model whose cost depends on each row's every feature (a fixed projection),
    counting the rows it is asked to predict."""

    rows = 0

    def predict(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.rows += len(X)
        w = np.random.default_rng(7).standard_normal(X.shape[1])
        return 0.1 + np.abs(np.sin(np.log1p(np.abs(X)) @ w))


def test_baselines_plan_the_same_on_predictions_made_already_and_predict_only_what_they_lack():
    from autotune.planning.costs import make_cost, memo_cost

    g = zoo.build("resnet18")
    model = _ContentModel()
    si, sj = planner.spans(g, HW)
    table = planner.cost_table(g, HW, make_cost("learned", HW, model), si, sj)
    rows = planner.span_index(si, sj)
    for name in ("none", "cores-only", "fuse-max", "dlfusion", "greedy"):
        fresh = strategies.run(name, g, HW, model=model)
        model.rows = 0
        memo = strategies.run(name, g, HW, model=model, search=memo_cost(HW, model, g, rows, table))
        assert [(q.i, q.j, q.cores) for q in memo.groups] == [(q.i, q.j, q.cores) for q in fresh.groups], name
        assert memo.predicted_ms == pytest.approx(fresh.predicted_ms, rel=1e-12), name
        # DLFusion's rule asks for its study grid, other graphs than the network: predicted, not looked up
        assert (model.rows > 0) == (name == "dlfusion"), (name, model.rows)
        assert memo.device_calls == 0


def test_a_baseline_refuses_a_device_as_its_search_cost():
    from autotune.errors import AutotuneError

    g = zoo.build("alexnet")
    with pytest.raises(AutotuneError, match="search option"):
        strategies.run("greedy", g, HW, model=_ContentModel(), search=simulator_cost(HW))


def test_a_measured_table_refuses_layers_of_another_graph_in_one_line():
    """DLFusion's rule times a study grid of its own; a network's measured table cannot stand in
    for it (the grid's stacked positions would be looked up as the network's spans)."""
    from autotune.device.base import MeasuredTable
    from autotune.errors import AutotuneError

    g = zoo.build("alexnet")
    si, sj = planner.spans(g, HW)
    t = planner.cost_table(g, HW, simulator_cost(HW), si, sj)
    table = MeasuredTable(g.name, {(int(i), int(j)): t[r] for r, (i, j) in enumerate(zip(si, sj))}, "alexnet.csv")
    greedy = strategies.run("greedy", g, HW, table=table)  # the network's own spans: looked up
    assert greedy.device_calls > 0
    with pytest.raises(AutotuneError, match="holds alexnet's candidates only") as err:
        strategies.run("dlfusion", g, HW, table=table)
    assert "\n" not in str(err.value)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 9), st.integers(1, 4), st.integers(0, 2**31 - 1), st.data())
def test_best_covers_of_a_window_equal_brute_force(n, maxlen, seed, data):
    """The forward pass from any start: each m's least cover of [start, m) by spans of at most
    `maxlen` layers, and the spans it names rebuild that cover."""
    spans_ = sorted(((i, j) for j in range(1, n + 1) for i in range(max(0, j - maxlen), j)), key=lambda s: (s[1], s[0]))
    si, sj = np.array([s[0] for s in spans_]), np.array([s[1] for s in spans_])
    cost = np.random.default_rng(seed).uniform(0.1, 3.0, len(si))
    start = data.draw(st.integers(0, n - 1))
    stop = data.draw(st.integers(start, n))
    best, arg = planner.best_covers(si, sj, cost, start, stop)
    price = {(int(i), int(j)): float(c) for i, j, c in zip(si, sj, cost)}
    for m in range(start, stop + 1):
        inside = range(start + 1, m)
        covers = [[start, *cuts, m] for r in range(m - start) for cuts in itertools.combinations(inside, r)]
        legal = [sum(price[(a, b)] for a, b in zip(p[:-1], p[1:])) for p in covers
                 if all(b - a <= maxlen for a, b in zip(p[:-1], p[1:]))] or [0.0]
        assert best[m] == pytest.approx(min(legal))
        total, b = 0.0, m
        while b > start:
            total += cost[arg[b]]
            b = int(si[arg[b]])
        assert b == start and total == pytest.approx(best[m])
