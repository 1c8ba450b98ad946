"""Simulator properties that a real multi-core NPU shows (DESIGN.md, simulator items 1-5)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autotune import zoo
from autotune.graph import Graph, GraphBuilder, Layer, make_layer
from autotune.hardware import load_hardware, parse_hardware
from autotune.planner import run_strategy
from autotune.simulator import breakdown, roofline_ms, simulate
from autotune.study import conv_chain, size_for_macs
from autotune.tables import GroupBatch

HW = load_hardware("mlu100")
K = list(HW.core_counts)


def _split_graph() -> Graph:
    """A layer with two outputs, one consumed inside a short group and one read far later."""
    x = (1, 16, 8, 8)
    split = Layer("split", "opaque", ("x",), ("a", "b"), (x,), (x, x))
    conv = make_layer("conv", "conv", ["a"], [x], out_channels=16, kernel=3, pads=1)
    add = make_layer("add", "eltwise", ["conv", "b"], [x, x])
    add2 = make_layer("add2", "eltwise", ["add", "b", "b"], [x, x, x])
    return Graph("split", [split, conv, add, add2], {"x": x})


def test_group_batch_matches_group_boundaries_brute_force():
    """GroupBatch's boundary sizes equal graph.py's Group.inputs/outputs/internal for every span."""
    graphs = [zoo.build("resnet50"), zoo.build("googlenet"), zoo.build("mobilenet_v2"), _split_graph()]
    groups = [g.group(i, j) for g in graphs for i in range(len(g)) for j in range(i + 1, min(len(g), i + 8) + 1)]
    order = np.random.default_rng(0).permutation(len(groups))  # graphs interleaved in the batch
    groups = [groups[k] for k in order]
    b = GroupBatch.build(groups)

    def elems(d):
        return sum(math.prod(s) for s in d.values())

    G = b.groups
    assert np.array_equal(G.in_elems, [elems(g.inputs) for g in groups])
    assert np.array_equal(G.out_elems, [elems(g.outputs) for g in groups])
    assert np.array_equal(G.internal_elems, [elems(g.internal) for g in groups])
    assert np.array_equal(G.max_internal_elems, [max([math.prod(s) for s in g.internal.values()] or [0])
                                                 for g in groups])
    assert np.array_equal(G.macs, [g.macs for g in groups])
    assert np.array_equal(G.weight_elems, [sum(l.weight_elems for l in g.layers) for g in groups])
    assert np.array_equal(G.n_layers, [len(g) for g in groups])
    # flat rows: the group's layers in order, gid and first_row consistent
    r = 0
    for k, g in enumerate(groups[:300]):
        assert b.layers.macs[G.first_row[k]] == g.layers[0].macs and (b.gid[r:r + len(g)] == k).all()
        assert list(b.layers.out_elems[r:r + len(g)]) == [l.out_elems for l in g.layers]
        r += len(g)


def best_k(graph, hw=HW):
    g = graph.group(0, len(graph))
    lat = simulate([g] * len(hw.core_counts), hw.core_counts, hw)
    return hw.core_counts[int(lat.argmin())], lat


def test_best_core_count_grows_with_op_count():
    best = []
    for macs in np.logspace(5, 10.5, 10):
        best.append(best_k(conv_chain(64, size_for_macs(macs, 64)))[0])
    assert best[0] <= 2 and best[1] <= 2  # tiny layers: one or two cores
    assert best[-1] >= 16  # big layers: 16-32 cores
    assert all(b >= a for a, b in zip(best, best[1:]))  # non-decreasing


def test_unaligned_channels_waste_compute():
    def ms_per_mac(c):
        g = conv_chain(c, 56)
        return breakdown(g.group(0, 1), 1, HW)["compute"] / g.total_macs

    assert ms_per_mac(33) > 1.3 * ms_per_mac(32)  # 33 channels pad to 64 lanes
    assert ms_per_mac(64) == pytest.approx(ms_per_mac(32), rel=0.05)


def test_depthwise_uses_a_small_fraction_of_the_array():
    b = GraphBuilder("dw")
    x = b.input("x", (1, 256, 56, 56))
    b.dwconv(x, 3)
    dw = b.build()
    dense = conv_chain(256, 56)
    dw_rate = dw.total_macs / simulate([dw.group(0, 1)], [1], HW)[0]
    dense_rate = dense.total_macs / simulate([dense.group(0, 1)], [1], HW)[0]
    assert dw_rate < dense_rate / 8


def test_fusing_small_layers_is_much_faster():
    n = 8
    chain = conv_chain(32, 14, n)
    solo = n * best_k(conv_chain(32, 14))[1].min()
    fused = best_k(chain)[1].min()
    assert solo / fused > 2.5
    parts = breakdown(chain.group(0, n), 1, HW)
    apart = sum(breakdown(chain.group(i, i + 1), 1, HW)["launch"] for i in range(n))
    assert parts["launch"] < apart / (n - 1)  # one launch instead of n


def test_fusion_loses_when_intermediates_overflow_on_chip_memory():
    big = conv_chain(256, 112, 4)  # 6.4 MB intermediates
    solo = 4 * best_k(conv_chain(256, 112))[1].min()
    fused_lat = best_k(big)[1]
    assert fused_lat.min() > 0.98 * solo
    parts = breakdown(big.group(0, 4), 32, HW)
    assert parts["spill"] > 0 and parts["halo"] > 0


def test_fusion_loses_when_layers_want_different_core_counts():
    b = GraphBuilder("mixed")
    x = b.input("x", (1, 256, 56, 56))
    y = b.conv(x, 256, 3, name="big")  # wants many cores
    b.fc(b.gpool(y, name="gap"), 1000, name="fc")  # wants one
    g = b.build()
    ks = HW.core_counts
    apart = sum(simulate([g.group(i, i + 1)] * len(ks), ks, HW).min() for i in range(3))
    big_alone = simulate([g.group(0, 1)] * len(ks), ks, HW)
    # the tail's fixed costs on many cores keep the fused group from being free
    fused = simulate([g.group(0, 3)] * len(ks), ks, HW)
    assert ks[int(big_alone.argmin())] >= 16
    assert fused.min() < apart  # fusion still pays here through launches, ...
    tiny = conv_chain(8, 4, 4)
    t_fused = simulate([tiny.group(0, 4)] * len(ks), ks, HW)
    assert t_fused[-1] > 1.2 * t_fused.min()  # ... but tiny fused layers on 32 cores lose to few cores


def _random_group(data):
    c = data.draw(st.sampled_from([1, 3, 8, 17, 32, 64, 100, 256]))
    s = data.draw(st.sampled_from([1, 2, 7, 14, 28, 56]))
    b = GraphBuilder("r")
    x = b.input("x", (1, c, s, s))
    for _ in range(data.draw(st.integers(1, 5))):
        op = data.draw(st.sampled_from(["conv", "dw", "pool", "add"]))
        if op == "conv":
            x = b.conv(x, data.draw(st.sampled_from([4, 16, 33, 64, 128])), data.draw(st.sampled_from([1, 3, 5])))
        elif op == "dw":
            x = b.dwconv(x, 3)
        elif op == "pool" and b.shape(x)[2] >= 2:
            x = b.pool(x, 2)
        else:
            x = b.eltwise([x, b.conv(x, b.shape(x)[1], 1)])
    g = b.build()
    return g.group(0, len(g))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_never_below_roofline(data):
    grp = _random_group(data)
    lat = simulate([grp] * len(K), K, HW)
    # never below k cores' MAC peak, nor the boundary bytes at DRAM bandwidth
    assert (lat >= roofline_ms([grp] * len(K), HW, K) * (1 - 1e-9)).all()
    assert (lat > 0).all()


def test_deterministic_and_breakdown_adds_up():
    g = conv_chain(64, 28, 3)
    grp = g.group(0, 3)
    a = simulate([grp] * 6, K, HW)
    b = simulate([grp] * 6, K, HW)
    assert np.array_equal(a, b)
    for k, ms in zip(K, a):
        parts = breakdown(grp, k, HW)
        assert parts["total"] == pytest.approx(ms, rel=1e-9)
        assert all(v >= 0 for v in parts.values())


def test_noise_is_seeded_and_has_the_configured_spread():
    g = conv_chain(64, 28)
    grp = [g.group(0, 1)] * 4000
    cores = [4] * 4000
    clean = simulate(grp, cores, HW)
    n1 = simulate(grp, cores, HW, noise=True, seed=1)
    n2 = simulate(grp, cores, HW, noise=True, seed=1)
    n3 = simulate(grp, cores, HW, noise=True, seed=2)
    assert np.array_equal(n1, n2) and not np.array_equal(n1, n3)
    ratio = n1 / clean
    assert ratio.mean() == pytest.approx(1.0, abs=0.005)
    assert ratio.std() == pytest.approx(HW.label_noise, rel=0.1)


def test_rejects_core_counts_the_hardware_cannot_run():
    g = conv_chain(8, 8)
    with pytest.raises(ValueError, match="core count 3"):
        simulate([g.group(0, 1)], [3], HW)
    with pytest.raises(ValueError, match="2 groups but 1"):
        simulate([g.group(0, 1)] * 2, [1], HW)


def test_presets_lead_to_different_best_core_counts():
    g = conv_chain(64, size_for_macs(3e8, 64))
    picks = {name: best_k(g, load_hardware(name))[0] for name in ("mlu100", "edge4", "npu16")}
    assert len(set(picks.values())) >= 2


def test_vector_ops_split_by_elements():
    """An eltwise add on a map with fewer rows than cores still spreads over all cores."""
    b = GraphBuilder("add")
    x = b.input("x", (1, 1024, 4, 4))
    b.eltwise([x, x])
    g = b.build().group(0, 1)
    c1, c32 = (breakdown(g, k, HW)["compute"] for k in (1, 32))
    assert c1 == pytest.approx(32 * c32, rel=0.01)


def test_weights_stream_once_when_the_input_fits_on_chip():
    """A batch-1 fc is bound by reading its weights once (4096x4096 fp16 = 32 MiB >> on-chip)."""
    b = GraphBuilder("fc")
    b.fc(b.input("x", (1, 4096)), 4096)
    g = b.build()
    wbytes = g.order[0].weight_elems * HW.dtype_bytes
    for k in (1, 32):
        stream_ms = wbytes / min(HW.dram_gbps, k * HW.dma_gbps_per_core) / 1e6
        parts = breakdown(g.group(0, 1), k, HW)
        assert stream_ms <= parts["total"] < 1.05 * stream_ms + (parts["launch"] + parts["sync"])


def test_sync_and_launch_come_from_the_config():
    g = conv_chain(32, 14, 5)
    for k in K:
        p = breakdown(g.group(0, 5), k, HW)
        assert p["sync"] * 1e3 == pytest.approx(5 * (HW.layer_overhead_us + HW.sync_us(k)))
        assert p["launch"] * 1e3 == pytest.approx(HW.launch_us + HW.dispatch_us_per_core * k)


def test_slower_hardware_is_slower():
    """Halving DRAM bandwidth or the clock never speeds anything up."""
    slow_mem = parse_hardware({**HW.model_dump(), "dram_gbps": HW.dram_gbps / 2,
                               "dma_gbps_per_core": HW.dma_gbps_per_core / 2})
    slow_clk = parse_hardware({**HW.model_dump(), "clock_ghz": HW.clock_ghz / 2})
    groups = [conv_chain(c, s, n).group(0, n) for c in (16, 64, 256) for s in (7, 56) for n in (1, 3)]
    pairs = [g for g in groups for _ in K]
    cores = K * len(groups)
    base = simulate(pairs, cores, HW)
    assert (simulate(pairs, cores, slow_mem) >= base).all()
    assert (simulate(pairs, cores, slow_clk) >= base).all()


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet50", "googlenet", "mobilenet_v1", "mobilenet_v2"])
def test_speedup_over_no_optimisation_is_in_dlfusions_range(name):
    """DLFusion reports 3.6x-7.9x over no optimisation (every layer alone on one core) on the MLU100."""
    g = zoo.build(name)
    none = run_strategy("none", g, HW).predicted_ms
    best = run_strategy("oracle", g, HW).predicted_ms
    assert 3.6 <= none / best <= 7.9
