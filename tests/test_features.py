"""Feature rows: schema, agreement with the graph's own numbers, batching invariance."""

import numpy as np

from autotune.costmodel.features import CORE_FEATURES, FEATURE_NAMES, GROUP_FEATURES, HW_FEATURES, featurize
from autotune.hardware.config import load_hardware
from autotune.ir.graph import GraphBuilder

HW = load_hardware("mlu100")


def _net():
    b = GraphBuilder("net")
    x = b.input("x", (1, 33, 56, 56))
    a = b.conv(x, 64, 3, name="c1")
    d = b.dwconv(a, 3, name="dw")
    p = b.conv(d, 64, 1, act="", name="pw")
    s = b.eltwise([a, p], name="add")
    q = b.pool(s, 2, name="pool")
    b.fc(b.gpool(q, name="gap"), 10, name="fc")
    return b.build()


def _col(X, name):
    return X[:, FEATURE_NAMES.index(name)]


def test_schema_is_one_ordered_unique_list():
    assert FEATURE_NAMES == GROUP_FEATURES + CORE_FEATURES + HW_FEATURES
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_values_agree_with_the_graph():
    g = _net()
    groups = [g.group(i, j) for i in range(len(g)) for j in range(i + 1, len(g) + 1)]
    X = featurize(groups, [4] * len(groups), HW)
    assert X.shape == (len(groups), len(FEATURE_NAMES)) and X.dtype == np.float32
    assert np.isfinite(X).all()
    for r, grp in enumerate(groups):
        assert _col(X, "n_layers")[r] == len(grp)
        assert np.isclose(10 ** _col(X, "log_macs")[r] - 1, grp.macs, rtol=1e-4)
        b_in = sum(np.prod(s) for s in grp.inputs.values()) * HW.dtype_bytes
        assert np.isclose(10 ** _col(X, "log_in_bytes")[r] - 1, b_in, rtol=1e-4)
        assert _col(X, "n_dwconv")[r] == sum(lyr.depthwise for lyr in grp.layers)
    assert (_col(X, "cores") == 4).all() and (_col(X, "hw_cores") == 32).all()


def test_unaligned_channels_show_in_alignment_feature():
    g = _net()
    X = featurize([g.group(0, 1)], [1], HW)  # 33 input channels on a 32-wide array
    assert _col(X, "align_waste")[0] > 1.5


def test_core_features_change_with_cores_and_rows_independent_of_batching():
    g = _net()
    groups = [g.group(0, 3), g.group(1, 5), g.group(0, 3)]
    ks = [1, 8, 32]
    X = featurize(groups, ks, HW)
    assert _col(X, "log_macs_per_core")[0] > _col(X, "log_macs_per_core")[2]
    one = np.vstack([featurize([gr], [k], HW) for gr, k in zip(groups, ks)])
    assert np.array_equal(X, one)


def test_hardware_parameters_enter_the_row():
    g = _net()
    a = featurize([g.group(0, 2)], [4], load_hardware("mlu100"))
    b = featurize([g.group(0, 2)], [4], load_hardware("edge4"))
    assert _col(a, "hw_dram_gbps")[0] != _col(b, "hw_dram_gbps")[0]


# -- the device boundary: features read the graph and the datasheet only ---------------------------
def _device_numbers(d: dict, prefix: str = "device") -> list[str]:
    """Dotted paths of every number in a device section."""
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _device_numbers(v, f"{prefix}.{k}")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(f"{prefix}.{k}")
    return out


def test_feature_rows_do_not_change_with_any_device_value():
    g = _net()
    groups = [g.group(i, j) for i in range(len(g)) for j in range(i + 1, len(g) + 1)]
    ks = [HW.core_counts[(i * 5) % len(HW.core_counts)] for i in range(len(groups))]
    base = featurize(groups, ks, HW)
    dump = HW.model_dump()["device"]
    paths = _device_numbers(dump)
    assert len(paths) >= 15  # launch, DMA, barrier, tiling, contention, power, descriptors, banks, noise
    for path in paths:
        node = dump
        for p in path.split(".")[1:]:
            node = node[p]
        value = node * 1.7 if isinstance(node, float) else node + 1
        if path.endswith(("dma_exposed", "buffer_fraction", "min_fill", "loss_per_doubling", "sigma",
                          "outlier_rate")):
            value = node / 2  # bounded shares stay in range
        changed = HW.updated({path: value})
        assert changed.hash != HW.hash
        assert np.array_equal(featurize(groups, ks, changed), base), path
    for section in ("tiling", "contention", "power", "descriptors", "banks"):
        assert np.array_equal(featurize(groups, ks, HW.updated({f"device.{section}": None})), base), section
    assert np.array_equal(featurize(groups, ks, HW.updated({"device": None})), base)  # a measured part
    assert np.array_equal(featurize(groups, ks, HW.datasheet), base)


def test_model_side_modules_never_import_the_simulator():
    import subprocess
    import sys

    modules = ("autotune.costmodel.features, autotune.hardware.analytic, autotune.costmodel.model, "
               "autotune.costmodel.calibration, autotune.planning.planner, autotune.data.dataset, "
               "autotune.costmodel.training, autotune.planning.evaluation, autotune.planning.costs, "
               "autotune.planning.strategies, autotune.planning.refine, autotune.ir.ops")
    code = (f"import sys; import {modules}; "
            "print('autotune.device.simulator' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_only_the_simulator_reads_the_device_section():
    from pathlib import Path

    import autotune

    root = Path(autotune.__file__).parent
    import re

    attr = re.compile(r"(?<!autotune)\.device\b")  # the section, not `.devices` nor the autotune.device package
    imports = re.compile(r"^\s*(from|import)\s.*$", re.M)  # `from autotune.device... import` is the seam, not a read

    def code(p):
        return imports.sub("", p.read_text()).replace("`hw.device`", "")

    readers = {str(p.relative_to(root)) for p in root.rglob("*.py")
               if attr.search(code(p)) or "require_device" in code(p)}
    # the simulator plays the device, device/base.py hands it out and synth/measure.py refuses a part
    # without one; the studies measure it (like DLFusion's study on the chip)
    assert readers <= {"device/simulator.py", "device/base.py", "hardware/config.py", "synth/measure.py",
                       "studies/dlfusion_study.py", "studies/effects_study.py"}, readers
    model_side = {"costmodel/features.py", "hardware/analytic.py", "costmodel/calibration.py", "costmodel/model.py",
                  "planning/planner.py", "data/dataset.py", "costmodel/training.py", "planning/evaluation.py",
                  "ir/tables.py", "ir/graph.py", "planning/costs.py", "planning/refine.py",
                  "planning/strategies/dp.py", "planning/strategies/baselines.py", "planning/strategies/measure.py"}
    assert not readers & model_side


def test_datasheet_estimate_is_a_lower_bound_on_compute_and_sane():
    """The analytic estimate's compute never beats the MAC peak of k cores."""
    from autotune.hardware.analytic import estimate, roofline_ms
    from autotune.ir.tables import GroupBatch

    g = _net()
    groups = [g.group(i, j) for i in range(len(g)) for j in range(i + 1, len(g) + 1)]
    for k in HW.core_counts:
        e = estimate(GroupBatch.build(groups), np.arange(len(groups)), np.full(len(groups), k), HW.datasheet)
        peak = np.array([gr.macs for gr in groups]) / (k * HW.macs_per_cycle * HW.clock_ghz * 1e3)
        assert (e.compute_us >= peak * (1 - 1e-9)).all() and (e.total_us > 0).all()
        assert (e.total_us / 1e3 >= roofline_ms(groups, HW.datasheet, [k] * len(groups)) * (1 - 1e-9)).all()


def test_tile_counts_follow_weights_against_on_chip_memory():
    """An fc layer whose weights dwarf the on-chip memory is cut into one tile per output-channel
    tile of the MAC array, a 1/k share per core; a small layer fits in one tile; more on-chip
    memory never means more tiles."""
    from autotune.hardware.analytic import split_what_ifs
    from autotune.ir.tables import GroupBatch

    b = GraphBuilder("fcnet")
    x = b.input("x", (1, 9216))
    b.fc(b.fc(x, 4096, name="big"), 8, name="small")
    g = b.build()
    ds = HW.datasheet
    ctiles = int(np.ceil(4096 / ds.mac_array.co))
    assert 9216 * 4096 * ds.dtype_bytes / ctiles > ds.onchip_bytes  # one channel tile's weights overflow
    batch = GroupBatch.build([g.group(0, 1), g.group(1, 2), g.group(0, 2)])
    ks = [k for k in HW.core_counts if k <= ctiles]
    for k in ks:
        what = split_what_ifs(batch, np.arange(3), np.full(3, k), ds)
        for policy in ("rows", "chan"):
            big, small, both = what[policy].tiles
            assert big == np.ceil(ctiles / k) and small == 1 and both == big + small
    bigger = ds.model_copy(update={"onchip_kib": ds.onchip_kib * 64})
    few = split_what_ifs(batch, np.arange(3), np.ones(3, dtype=int), bigger)["chan"].tiles
    many = split_what_ifs(batch, np.arange(3), np.ones(3, dtype=int), ds)["chan"].tiles
    assert (few <= many).all() and few[0] < many[0]


def test_tiles_are_powers_of_two_and_the_last_ones_padding_is_counted():
    from autotune.hardware.analytic import tile_counts

    ds = HW.datasheet
    one = np.ones(1)
    n, pad = tile_counts(np.array([17.0, 16.0, 40.0]), one.repeat(3), np.zeros(3), ds)  # every extent fits
    assert n.tolist() == [2, 1, 2] and np.allclose(pad, [32 / 17, 1.0, 64 / 40])
    n, pad = tile_counts(np.array([24.0]), np.array([ds.onchip_bytes / 2 / 5]), np.zeros(1), ds)  # 5 units fit
    assert n.tolist() == [6] and np.allclose(pad, 1.0)  # tiles of 4
    n, pad = tile_counts(np.array([7.0]), np.array([ds.onchip_bytes * 4.0]), np.zeros(1), ds)  # nothing fits
    assert n.tolist() == [7] and np.allclose(pad, 1.0)
    # what stays resident takes at most half of the tile budget
    n_held, _ = tile_counts(np.array([64.0]), np.array([ds.onchip_bytes / 64]), np.array([1e12]), ds)
    n_free, _ = tile_counts(np.array([64.0]), np.array([ds.onchip_bytes / 64]), np.zeros(1), ds)
    assert n_free.tolist() == [2] and n_held.tolist() == [4]


def test_features_of_a_large_frame_are_the_same_computed_over_processes(monkeypatch):
    """compute_features splits a frame above PARALLEL_ROWS by group over processes: same rows, same order."""
    import json

    import pandas as pd

    from autotune.costmodel import feature_cache
    from autotune.frontends.synthetic import generate
    from autotune.ir.graph import graph_to_dict

    hw = load_hardware("mlu100")
    graphs = generate(40, hw, seed=2)
    rows = [(f"g{k}", json.dumps(graph_to_dict(g)), c) for k, g in enumerate(graphs) for c in hw.core_counts[::2]]
    frame = pd.DataFrame(rows, columns=["group_id", "group_json", "cores"]).sample(frac=1.0, random_state=0)
    alone = feature_cache.compute_features(frame, hw, jobs=1)
    monkeypatch.setattr(feature_cache, "PARALLEL_ROWS", 10)
    assert np.array_equal(feature_cache.compute_features(frame, hw, jobs=2), alone)


def _zoo_rows(names, shuffle=True):
    from autotune.synth.pipeline import zoo_frame

    hw = load_hardware("mlu100")
    frame = zoo_frame(hw, names)
    return hw, frame.sample(frac=1.0, random_state=0) if shuffle else frame


def test_zoo_rows_featurize_as_their_networks_spans_as_rebuilt_groups_do():
    """zoo.parquet's rows are read as spans of their network (the planner's batch), not rebuilt one by
    one from JSON: the same rows to the bit, shuffled, two networks and both featurizers."""
    from autotune.costmodel import feature_cache
    from autotune.costmodel.features import get_featurizer

    hw, frame = _zoo_rows(["resnet18", "mobilenet_v2"])
    for name in ("datasheet", "layersum"):
        f = get_featurizer(name)
        assert feature_cache._zoo_features(frame, hw, f) is not None
        assert np.array_equal(feature_cache.compute_features(frame, hw, featurizer=name),
                              feature_cache._features(frame, hw, f))


def test_zoo_rows_whose_json_disagrees_with_the_network_are_rebuilt_from_json():
    """A zoo row whose span no longer matches its network's layers (a zoo.parquet from another
    version of the network) is caught by the check, and every group is rebuilt from its JSON."""
    from autotune.costmodel import feature_cache
    from autotune.costmodel.features import get_featurizer
    from autotune.frontends import zoo

    f = get_featurizer("datasheet")
    hw, frame = _zoo_rows(["resnet18"], shuffle=False)
    good = feature_cache._zoo_features(frame, hw, f)
    assert good is not None
    inside = frame["j"].to_numpy() < len(zoo.build("resnet18").order)
    moved = frame[inside].assign(i=frame["i"] + 1, j=frame["j"] + 1)  # every span one layer on, still in range
    assert feature_cache._zoo_features(moved, hw, f) is None
    assert np.array_equal(feature_cache.compute_features(moved, hw), good[inside])
    assert feature_cache._zoo_features(frame.assign(model="no_such_net"), hw, f) is None
    assert feature_cache._zoo_features(frame.drop(columns="i"), hw, f) is None


def test_activation_math_tells_apart_layers_of_the_same_shape():
    """A SiLU epilogue (Llama's gate_proj) and none (its up_proj) on the same fc: measured apart on a
    black box by half, so the rows, the memory keys and the distinct contents must tell them apart
    (the layer kinds a device may read stay as they were: tests/test_simulator.py)."""
    from autotune.costmodel.features import get_featurizer
    from autotune.costmodel.memory import row_keys
    from autotune.ir.ops import ELEMENT_OPS, element_ops
    from autotune.ir.tables import GroupBatch

    assert element_ops("") == 0 and element_ops("relu") == 1 and element_ops("some_new_act") == 1
    assert ELEMENT_OPS["silu"] > ELEMENT_OPS["sigmoid"] > ELEMENT_OPS["relu"] and ELEMENT_OPS["gelu"] > 1
    b = GraphBuilder("mlp")
    x = b.input("x", (1, 128, 256))
    gate = b.fc(x, 512, act="silu", name="gate")
    up = b.fc(x, 512, name="up")
    b.add("act", [b.eltwise([gate, up], mode="mul", name="mul")], "sig", mode="sigmoid")
    g = b.build()
    L = {lyr.name: lyr for lyr in g.group(0, len(g)).layers}
    assert L["gate"].act_ops == 5 * 128 * 512 and L["up"].act_ops == 0
    assert L["sig"].act_ops == 0 and L["sig"].vector_ops == 128 * 512  # a standalone activation: its vector_ops
    assert L["gate"].vector_ops == L["up"].vector_ops  # what a device is handed stays as it was
    groups = [g.group(0, 1), g.group(1, 2)]
    X = featurize(groups, [4, 4], HW)
    assert _col(X, "log_act_ops")[0] > 0 == _col(X, "log_act_ops")[1]
    assert row_keys(X)[0] != row_keys(X)[1]
    batch = GroupBatch.build(groups)
    assert len(batch.distinct()[0]) == 2
    ls = get_featurizer("layersum").batch(batch, np.arange(2), np.array([4, 4]), HW)
    vec = [n for n in get_featurizer("layersum").names if n.startswith("ls_fc_vec")]
    names = list(get_featurizer("layersum").names)
    assert all(ls[0, names.index(n)] > ls[1, names.index(n)] == 0 for n in vec)


def test_layers_per_core_is_the_pipeline_split_rules_load():
    """A third split rule, the group's layers pipelined over the cores: layers per core, the same
    for a group at any core count and batch, falling as cores are added."""
    g = _net()
    groups = [g.group(0, 5), g.group(1, 3), g.group(0, 5)]
    ks = [1, 4, 32]
    X = featurize(groups, ks, HW)
    assert np.allclose(_col(X, "layers_per_core"), [5 / 1, 2 / 4, 5 / 32])
    one = np.vstack([featurize([gr], [k], HW) for gr, k in zip(groups, ks)])
    assert np.array_equal(_col(X, "layers_per_core"), _col(one, "layers_per_core"))
