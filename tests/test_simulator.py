"""Simulator properties that a real multi-core NPU shows (DESIGN.md, simulator items 1-5)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autotune.device.simulator import breakdown, dram_bw_bytes_per_us, roofline_ms, simulate
from autotune.errors import ConfigError
from autotune.frontends import zoo
from autotune.frontends.study_layers import conv_chain, size_for_macs
from autotune.hardware.config import load_hardware
from autotune.ir.graph import Graph, GraphBuilder, Layer, make_layer
from autotune.ir.tables import GroupBatch
from autotune.planning import strategies

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
    assert np.array_equal(G.weight_elems, [sum(lyr.weight_elems for lyr in g.layers) for g in groups])
    assert np.array_equal(G.n_layers, [len(g) for g in groups])
    # flat rows: the group's layers in order, gid and first_row consistent
    r = 0
    for k, g in enumerate(groups[:300]):
        assert b.layers.macs[G.first_row[k]] == g.layers[0].macs and (b.gid[r:r + len(g)] == k).all()
        assert list(b.layers.out_elems[r:r + len(g)]) == [lyr.out_elems for lyr in g.layers]
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


def test_noise_is_seeded_with_the_configured_spread_and_a_heavy_tail():
    g = conv_chain(64, 28)
    n = 20000
    grp = [g.group(0, 1)] * n
    cores = [4] * n
    clean = simulate(grp, cores, HW)
    n1 = simulate(grp, cores, HW, noise=True, seed=1)
    n2 = simulate(grp, cores, HW, noise=True, seed=1)
    n3 = simulate(grp, cores, HW, noise=True, seed=2)
    assert np.array_equal(n1, n2) and not np.array_equal(n1, n3)
    nz = HW.device.noise
    log_ratio = np.log(n1 / clean)
    mad = 1.4826 * np.median(np.abs(log_ratio - np.median(log_ratio)))
    assert mad == pytest.approx(nz.sigma, rel=0.1)  # the bulk: log-normal with the configured spread
    # the tail: slowdowns far beyond the bulk, about as often as the outlier model says
    t = 8 * nz.sigma
    expected = nz.outlier_rate * (1 + t / nz.outlier_scale) ** -2  # Lomax(2) survival at t / scale
    tail = (log_ratio > np.log1p(t)).mean()
    assert 0.5 * expected < tail < 2 * expected and log_ratio.max() > np.log1p(nz.outlier_scale)
    assert (log_ratio < -6 * nz.sigma).mean() < 1e-3  # never faster than the bulk allows
    quiet = HW.updated({"device.noise": {"sigma": 0.0}})
    assert np.array_equal(simulate(grp[:10], cores[:10], quiet, noise=True), clean[:10])


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
        stream_ms = wbytes / dram_bw_bytes_per_us(np.array([k]), HW, HW.device)[0] / 1e3
        parts = breakdown(g.group(0, 1), k, HW)
        assert stream_ms <= parts["total"] < 1.05 * stream_ms + (parts["launch"] + parts["sync"])


def test_sync_and_launch_come_from_the_config():
    g = conv_chain(32, 14, 5)
    for k in K:
        p = breakdown(g.group(0, 5), k, HW)
        d = HW.device
        assert p["sync"] * 1e3 == pytest.approx(5 * (d.layer_overhead_us + d.sync_us(k)))
        assert p["launch"] * 1e3 == pytest.approx(d.launch_us + d.dispatch_us_per_core * k)


def test_slower_hardware_is_slower():
    """Halving DRAM bandwidth or the clock never speeds anything up."""
    slow_mem = HW.updated({"datasheet.dram_gbps": HW.dram_gbps / 2,
                           "device.dma_gbps_per_core": HW.device.dma_gbps_per_core / 2})
    slow_clk = HW.updated({"datasheet.clock_ghz": HW.clock_ghz / 2})
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
    none = strategies.run("none", g, HW).predicted_ms
    best = strategies.run("oracle", g, HW).predicted_ms
    assert 3.6 <= none / best <= 7.9


# -- effects with no closed form in datasheet terms (DESIGN.md, simulator item 6) -----------------
def _without(effect: str):
    return HW.updated({f"device.{effect}": None})


def test_tile_choice_makes_latency_step_with_the_map_size():
    """Latency per output row jumps where the rows cross a tile multiple, not smoothly."""
    def per_row(hw):
        sizes = np.arange(8, 200)
        graphs = [conv_chain(64, int(s)) for s in sizes]
        lat = simulate([g.group(0, 1) for g in graphs], [1] * len(graphs), hw)
        return lat / sizes

    steps = per_row(HW)[1:] / per_row(HW)[:-1]
    smooth = per_row(_without("tiling"))
    assert steps.max() > 1.1  # one more row costs a whole partial tile
    assert (smooth[1:] / smooth[:-1]).max() < 1.05


def test_dram_contention_makes_per_core_bandwidth_fall_faster_than_1_over_k():
    ks = np.array(K, dtype=float)
    bw = dram_bw_bytes_per_us(ks, HW, HW.device)
    onset = HW.device.contention.onset_cores
    beyond = ks >= 2 * onset
    assert beyond.any() and (bw[beyond] < bw[ks == onset][0]).all()  # the total falls, so per core < 1/k
    free = dram_bw_bytes_per_us(ks, HW, _without("contention").device)
    assert (bw <= free).all() and (free[beyond] == free.max()).all()
    # a weight stream (batch-1 fc, DRAM-bound) gets slower on many cores
    b = GraphBuilder("fc")
    b.fc(b.input("x", (1, 4096)), 4096)
    g = b.build().group(0, 1)
    lat = simulate([g] * len(K), K, HW)
    assert lat[-1] > lat[K.index(int(onset))]


def test_power_limit_makes_compute_bound_work_gain_less_than_2x_from_16_to_32_cores():
    g = conv_chain(256, 16, 4, batch=8).group(0, 4)  # 4 fused 3x3 convs: weights shared, maps on chip
    def gain(hw):
        lat = simulate([g, g], [16, 32], hw)
        return lat[0] / lat[1]
    assert gain(HW) < 1.8 and gain(_without("power")) > 1.9
    assert breakdown(g, 32, HW)["throttle"] > breakdown(g, 16, HW)["throttle"] >= 0


def test_long_heterogeneous_groups_reload_descriptors():
    b = GraphBuilder("mixed")
    x = b.input("x", (1, 64, 28, 28))
    for i in range(16):  # every layer different: widths grow, kernels alternate
        x = b.conv(x, 64 + 16 * i, 1 + 2 * (i % 2))
    mixed = b.build()
    same = conv_chain(64, 28, 16)  # the same layer 16 times: one descriptor, repeats loop
    assert breakdown(mixed.group(0, 16), 4, HW)["reload"] > 0
    assert breakdown(mixed.group(0, 3), 4, HW)["reload"] == 0
    assert breakdown(same.group(0, 16), 4, HW)["reload"] == 0
    assert breakdown(mixed.group(0, 16), 4, _without("descriptors"))["reload"] == 0


def test_channel_strides_that_alias_the_banks_conflict():
    """A windowed conv whose channel vector spans a multiple of the bank count's bank words is
    slower per MAC than one whose stride is coprime with it."""
    bk = HW.device.banks
    words = int(round(bk.count))  # aliases every bank
    aliased = int(words * bk.width_bytes / HW.dtype_bytes)
    coprime = int((words + 1) * bk.width_bytes / HW.dtype_bytes)  # words + 1 shares no factor
    def per_mac(c, hw):
        g = conv_chain(c, 28)
        return breakdown(g.group(0, 1), 1, hw)["total"] / g.total_macs
    assert breakdown(conv_chain(aliased, 28).group(0, 1), 1, HW)["banks"] > 0
    assert breakdown(conv_chain(coprime, 28).group(0, 1), 1, HW)["banks"] == 0
    assert per_mac(aliased, HW) > 1.1 * per_mac(coprime, HW)
    assert per_mac(aliased, _without("banks")) < 1.05 * per_mac(coprime, _without("banks"))


def test_a_config_without_a_device_section_is_refused_clearly():
    measured = HW.updated({"device": None})
    with pytest.raises(ConfigError, match="no device: section"):
        simulate([conv_chain(8, 8).group(0, 1)], [1], measured)


@pytest.mark.parametrize("preset", ["mlu100", "edge4"])
def test_the_simulated_device_never_reads_the_cost_models_own_columns(preset):
    """A device is a black box to the cost model and the reverse: a column added for the features
    (`act_ops`, the fused activations' element ops) must not move what the simulator measures."""
    from dataclasses import replace

    from autotune.device.base import Simulator

    hw = load_hardware(preset)
    g = zoo.build("resnet34")  # repeated blocks: layers of one kind in a group
    groups = [g.group(i, min(i + w, len(g))) for i in range(0, len(g) - 1, 5) for w in (1, 6, 16)]
    batch = GroupBatch.build(groups)
    gidx = np.repeat(np.arange(len(groups)), len(hw.core_counts))
    cores = np.tile(np.asarray(hw.core_counts), len(groups))
    dev = Simulator(hw)
    before = dev.measure_batch(batch, gidx, cores)
    rng = np.random.default_rng(0)
    noisy = replace(batch, layers=replace(batch.layers, act_ops=rng.random(len(batch.layers.act_ops)) * 1e6),
                    stack=replace(batch.stack, act_ops=rng.random(len(batch.stack.act_ops)) * 1e6))
    assert np.array_equal(dev.measure_batch(noisy, gidx, cores), before)
