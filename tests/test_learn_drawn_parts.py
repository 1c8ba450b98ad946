"""The learn loop on parts drawn from the hardware family, with core-count lists no preset has (not
powers of two, as some SDKs offer) and short fusion limits: our simulator plays each part, the loop
sees its datasheet only. Whatever the datasheet, the loop spends its budget and plans every
network within the part's rules, ahead of no optimisation and near the part's optimum."""

from __future__ import annotations

import itertools

import pytest

from autotune.frontends.loader import load_graph
from autotune.hardware.family import load_family
from autotune.planning.evaluation import run_eval
from autotune.planning.planner import plan
from autotune.synth.measure import measure
from autotune.synth.plan_labels import learn_part
from autotune.synth.profiles import write_profile

pytestmark = pytest.mark.slow
NETS = ["squeezenet1_1", "mobilenet_v2"]


def _drawn(seed: int, fractions: tuple[float, ...], max_fusion: int):
    hw = load_family("family").draw(1, seed=seed, prefix=f"drawn{seed}")[0]
    cores = hw.datasheet.cores
    counts = sorted({max(1, round(cores * f)) for f in fractions})
    sheet = hw.datasheet.model_copy(update={"core_counts": counts, "max_fusion": max_fusion})
    return hw.model_copy(update={"datasheet": sheet})


@pytest.mark.parametrize("seed,fractions,max_fusion", [(1, (0.125, 0.25, 0.375, 0.5, 0.75, 1.0), 5),
                                                       (3, (0.25, 0.5, 0.75, 1.0), 11)])
def test_the_loop_plans_a_drawn_part_within_its_rules(tmp_path, seed, fractions, max_fusion):
    hw = _drawn(seed, fractions, max_fusion)
    calls = itertools.count()

    def timed(folder):  # the part's own tool: fresh timing noise at every call
        frame, _ = measure(folder, "simulator", hw, seed=seed * 1000 + next(calls))
        write_profile(folder / "measured.csv", frame)
        return folder / "measured.csv"

    budget = 20 * len(hw.core_counts) + 60
    res = learn_part(hw.model_copy(update={"device": None}), timed, tmp_path / "work", budget,
                     [load_graph(n) for n in NETS], seed=seed, threads=1)
    assert res.labels == budget
    for net in NETS:  # the plan tune makes: the part's core counts, its fusion limit, every layer once
        g = load_graph(net)
        p = plan(g, hw.model_copy(update={"device": None}), res.model)
        assert all(k.cores in hw.core_counts and len(k.layers) <= max_fusion for k in p.groups)
        assert [name for k in p.groups for name in k.layers] == [layer.name for layer in g.order]
    for m in run_eval(NETS, hw, res.model)["models"]:  # scored on the part itself
        assert m["strategies"]["learned"]["ms"] < m["strategies"]["none"]["ms"]
        assert -1e-9 <= m["regret"] < 0.15, (m["model"], m["regret"])
