"""Feature rows: schema, agreement with the graph's own numbers, batching invariance."""

import numpy as np

from autotune.features import CORE_FEATURES, FEATURE_NAMES, GROUP_FEATURES, HW_FEATURES, featurize
from autotune.graph import GraphBuilder
from autotune.hardware import load_hardware

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
        assert _col(X, "n_dwconv")[r] == sum(l.depthwise for l in grp.layers)
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
