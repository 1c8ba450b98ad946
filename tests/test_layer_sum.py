"""The layer-sum prior: its columns add up over layers, its fit recovers known constants, and a model
with it fits, saves, loads and refuses what it cannot read."""

import json

import numpy as np
import pytest
from test_features import _net  # a small network of every layer class but matmul

from autotune.costmodel.features import (
    FEATURE_NAMES,
    LAYER_CLASSES,
    LAYER_SUM,
    get_featurizer,
    layer_classes,
    layer_sum_columns,
)
from autotune.costmodel.layer_sum import LayerSumFit, fit_layer_sum
from autotune.costmodel.model import REPEAT_BELOW, REPEATS, LatencyModel
from autotune.costmodel.model_io import META_FILE, meta_checksum
from autotune.errors import ModelFileError
from autotune.hardware.config import load_hardware
from autotune.ir.tables import GroupBatch

HW = load_hardware("mlu100")
PER_CLASS = 6 * len(LAYER_CLASSES)


def _columns(groups, ks):
    batch = GroupBatch.build(groups)
    gid = np.arange(len(groups))
    return layer_sum_columns(batch, gid, np.asarray(ks), HW.datasheet)


def test_layer_classes_tell_convolutions_apart():
    g = _net()
    L = GroupBatch.build([g.group(0, len(g))]).layers
    names = [LAYER_CLASSES[c] for c in layer_classes(L)]
    assert names[:4] == ["convkxk", "dwconv", "conv1x1", "eltwise"] and names[4] == "pool" and names[-1] == "fc"


def test_per_class_columns_add_up_over_layers_and_scale_with_cores():
    g = _net()
    whole = g.group(0, len(g))
    singles = [g.group(i, i + 1) for i in range(len(g))]
    for k in (1, 4):
        A = _columns([whole] + singles, [k] * (len(g) + 1))
        assert np.allclose(A[0, :PER_CLASS], A[1:, :PER_CLASS].sum(0), rtol=1e-9)
        assert A[0, LAYER_SUM.index("ls_launch")] == pytest.approx(1e-3)
    one, four = _columns([whole, whole], [1, 4])
    mac_k, mac = LAYER_SUM.index("ls_convkxk_mac_k"), LAYER_SUM.index("ls_convkxk_mac")
    assert one[mac_k] == pytest.approx(4 * four[mac_k]) and one[mac] == pytest.approx(four[mac]) and one[mac] > 0
    assert one[LAYER_SUM.index("ls_matmul_mac")] == 0  # no matmul in the group


def test_the_layersum_featurizer_is_the_datasheet_rows_plus_the_layer_sum():
    g = _net()
    batch = GroupBatch.build([g.group(0, 3), g.group(2, 6)])
    gid, ks = np.array([0, 1, 1]), np.array([2, 2, 8])
    X = get_featurizer("layersum").batch(batch, gid, ks, HW)
    assert X.shape == (3, len(FEATURE_NAMES) + len(LAYER_SUM))
    assert np.array_equal(X[:, :len(FEATURE_NAMES)], get_featurizer("datasheet").batch(batch, gid, ks, HW))
    assert get_featurizer("layersum").batch(batch, gid[:0], ks[:0], HW).shape == (0, X.shape[1])


def test_fit_recovers_known_constants_and_stays_non_negative():
    rng = np.random.default_rng(0)
    A = rng.random((400, len(LAYER_SUM))) * (rng.random((400, len(LAYER_SUM))) < 0.3)
    A[:, LAYER_SUM.index("ls_launch")] = 1e-3
    true = np.where(rng.random(len(LAYER_SUM)) < 0.5, rng.random(len(LAYER_SUM)) * 3, 0.0)
    true[LAYER_SUM.index("ls_launch")] = 20.0
    y = A @ true
    fit = fit_layer_sum(A, y)
    assert min(fit.coef) >= 0
    assert np.allclose(fit.predict_ms(A), y, rtol=1e-6)
    # a negative truth cannot be fitted: the constants stay at zero, never below
    bad = fit_layer_sum(A, np.maximum(y - 0.5 * A[:, 0], 1e-3))
    assert min(bad.coef) >= 0 and bad.floor_ms > 0


def test_fit_refuses_wrong_shapes_and_json_roundtrips():
    with pytest.raises(ValueError, match="columns"):
        fit_layer_sum(np.ones((3, 4)), np.ones(3))
    fit = LayerSumFit(tuple(float(i) for i in range(len(LAYER_SUM))), 0.01)
    assert LayerSumFit.from_dict(json.loads(json.dumps(fit.to_dict()))) == fit
    with pytest.raises(ValueError, match="non-negative"):
        LayerSumFit((-1.0,) + fit.coef[1:], 0.01)
    with pytest.raises(ValueError, match="other columns"):
        LayerSumFit.from_dict({**fit.to_dict(), "columns": list(reversed(LAYER_SUM))})


def _measured_rows(n_groups=60, seed=0):
    """Rows of one network's candidate groups at two core counts, with latencies that are a layer sum."""
    g = _net()
    rng = np.random.default_rng(seed)
    spans = [(i, j) for i in range(len(g)) for j in range(i + 1, len(g) + 1)]
    groups = [g.group(*spans[int(s)]) for s in rng.integers(0, len(spans), n_groups)]
    ks = np.tile([1, 4], n_groups)
    gid = np.repeat(np.arange(n_groups), 2)
    X = get_featurizer("layersum").batch(GroupBatch.build(groups), gid, ks, HW)
    A = X[:, len(FEATURE_NAMES):].astype(np.float64)
    coef = np.zeros(len(LAYER_SUM))
    coef[[LAYER_SUM.index(c) for c in ("ls_convkxk_mac_k", "ls_conv1x1_mac_k", "ls_dwconv_bytes", "ls_launch")]] = \
        [3.0, 2.0, 5.0, 10.0]
    return X, A @ coef * np.exp(rng.normal(0, 0.02, len(A))), gid


def test_a_model_with_the_layer_sum_prior_fits_saves_and_loads(tmp_path):
    X, y, gid = _measured_rows()
    m = LatencyModel(prior="layersum", featurizer="layersum", n_estimators=50, n_jobs=1).fit(X, y, groups=gid)
    assert m.prior_ == "layersum" and m.layer_sum_ is not None and m.calibration_ is None
    assert np.median(np.abs(m.prior_predict(X) / y - 1)) < 0.05  # the prior alone finds the sum
    m.save(tmp_path, {"hardware": HW.name, "hardware_hash": HW.hash})
    back = LatencyModel.load(tmp_path, HW)
    assert back.layer_sum_ == m.layer_sum_ and np.array_equal(back.predict(X), m.predict(X))
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["layer_sum"] = None
    meta["meta_sha256"] = meta_checksum(meta)
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="layer-sum fit"):
        LatencyModel.load(tmp_path, HW)


def test_the_layer_sum_prior_needs_its_featurizer():
    X, y, gid = _measured_rows(20)
    with pytest.raises(ValueError, match="featurizer='layersum'"):
        LatencyModel(prior="layersum", n_estimators=5).fit(X[:, :len(FEATURE_NAMES)], y, groups=gid)


def test_a_blend_averages_the_layer_sum_model_with_trees_on_the_datasheet_estimate(tmp_path):
    X, y, gid = _measured_rows()
    kw = dict(prior="layersum", featurizer="layersum", n_estimators=40, n_jobs=1, random_state=1)
    m = LatencyModel(blend="datasheet", **kw).fit(X, y, groups=gid)
    alone = LatencyModel(**kw).fit(X, y, groups=gid)
    other = LatencyModel(**{**kw, "prior": "datasheet", "featurizer": "datasheet"}).fit(X[:, :len(FEATURE_NAMES)], y,
                                                                                         groups=gid)
    assert [b.kind for b in m.members_] == ["blend"] and m.combine_ == "mean"
    assert np.allclose(m.predict(X), np.sqrt(alone.predict(X) * other.predict(X[:, :len(FEATURE_NAMES)])), rtol=1e-5)
    m.save(tmp_path, {"hardware": HW.name, "hardware_hash": HW.hash})
    back = LatencyModel.load(tmp_path, HW)
    assert np.array_equal(back.predict(X), m.predict(X)) and back.combine_ == "mean"
    assert json.loads((tmp_path / META_FILE).read_text())["members"][0]["calibration"] is None


def test_repeats_average_fits_with_other_seeds_and_round_trip(tmp_path):
    """repeats=3 on a blended layer-sum model: the model's own two predictors plus the two of each
    refit with the next seeds, all weighing alike; the mean of three separately fitted models in
    log; what predict_own answers is the first fit alone (its validation split scores it honestly);
    repeats=0 fits REPEATS on few rows; saved with each refit's layer-sum fit and loaded to the
    same predictions; a member's layer-sum columns out of range are refused."""
    X, y, gid = _measured_rows()
    kw = dict(prior="layersum", featurizer="layersum", n_estimators=40, n_jobs=1, blend="datasheet")
    m = LatencyModel(repeats=3, random_state=5, **kw).fit(X, y, groups=gid)
    assert [b.kind for b in m.members_] == ["blend"] + ["repeat"] * 4 and m.combine_ == "mean"
    assert all(b.weight == pytest.approx(1 / 6) for b in m.members_)
    fits = [LatencyModel(random_state=s, **kw).fit(X, y, groups=gid) for s in (5, 6, 7)]
    logs = np.log(np.stack([f.predict(X) for f in fits]))
    assert np.ptp(logs, axis=0).max() > 1e-3  # the seeds' fits differ
    assert np.allclose(np.log(m.predict(X)), logs.mean(0), atol=1e-5)
    assert np.allclose(m.predict_own(X), fits[0].predict(X), rtol=1e-6)
    m.save(tmp_path, {"hardware": HW.name, "hardware_hash": HW.hash})
    back = LatencyModel.load(tmp_path, HW)
    assert back.repeats == 3 and np.array_equal(back.predict(X), m.predict(X))
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["members"][1]["layer_sum"] is not None and meta["members"][2].get("layer_sum") is None
    auto = LatencyModel(repeats=0, **kw).fit(X, y, groups=gid)  # few rows: REPEATS fits
    assert len(X) < REPEAT_BELOW and [b.kind for b in auto.members_] == ["blend"] + ["repeat"] * 2 * (REPEATS - 1)
    assert auto.repeats_for(len(X)) == REPEATS and auto.repeats_for(REPEAT_BELOW) == 1 and m.repeats_for(10**6) == 3
    meta["members"][1]["columns"][0] = X.shape[1] + 5
    meta["meta_sha256"] = meta_checksum(meta)
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="repeat member is malformed"):
        LatencyModel.load(tmp_path, HW)


def test_refit_grows_every_predictor_again_on_every_row_and_keeps_the_splits_figures(tmp_path):
    """refit=True: the validation figures (MAE, tail, the split's predictions) are the split fit's,
    exactly as without it; the model's trees, the blend's and each repeat's are grown again on every
    row (more rounds, by the rows' ratio), so the validation rows are learnt and predicted closer;
    a bag is not refitted; the refitted model saves and loads to the same predictions."""
    X, y, gid = _measured_rows(80)
    kw = dict(prior="layersum", featurizer="layersum", n_estimators=60, n_jobs=1, blend="datasheet", repeats=2,
              random_state=3, early_stopping_rounds=5)
    split = LatencyModel(**kw).fit(X, y, groups=gid)
    full = LatencyModel(refit=True, **kw).fit(X, y, groups=gid)
    assert full.val_mae_log_ == split.val_mae_log_ and full.val_q90_log_ == split.val_q90_log_
    assert np.array_equal(full.val_pred_, split.val_pred_)
    tr, va = split.split(len(X), gid)
    assert 0 < len(va) < len(X)
    for a, b in zip([split.booster_] + [m.booster for m in split.members_],
                    [full.booster_] + [m.booster for m in full.members_]):
        assert b.num_boosted_rounds() == max(1, round(a.num_boosted_rounds() * len(X) / len(tr)))
    err = [np.mean(np.abs(np.log(m.predict_own(X[va]) / y[va]))) for m in (split, full)]
    assert err[1] < err[0]
    full.save(tmp_path, {"hardware": HW.name, "hardware_hash": HW.hash})
    back = LatencyModel.load(tmp_path, HW)
    assert back.refit and np.array_equal(back.predict(X), full.predict(X))
