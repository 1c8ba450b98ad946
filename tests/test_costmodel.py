"""LatencyModel: estimator behaviour, group-aware split, persistence and refusal of bad model files."""

import json

import numpy as np
import pytest
from sklearn.base import clone

from autotune.costmodel.model import LatencyModel
from autotune.costmodel.model_io import META_FILE, MODEL_FILE
from autotune.errors import ModelFileError
from autotune.hardware.config import load_hardware


def _data(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 4)).astype(np.float32)
    y = np.exp(3 * X[:, 0] - 2 * X[:, 1] + X[:, 2] * X[:, 3]) * 0.1
    groups = np.arange(n) // 5
    return X, y, groups


def _small(**kw):
    kw.setdefault("prior", "none")
    return LatencyModel(n_estimators=200, early_stopping_rounds=20, n_jobs=1, **kw)


def test_learns_a_smooth_function():
    X, y, g = _data()
    m = _small().fit(X, y, groups=g)
    Xt, yt, _ = _data(400, seed=1)
    rel = np.abs(m.predict(Xt) / yt - 1)
    assert np.median(rel) < 0.10  # trees approximate a smooth surface from 1.5k points
    assert m.predict(Xt).shape == (400,)


def test_sklearn_conventions():
    m = _small(max_depth=4)
    assert m.get_params()["max_depth"] == 4
    c = clone(m)
    assert c.get_params() == m.get_params() and not hasattr(c, "booster_")


def test_split_keeps_groups_on_one_side():
    X, y, g = _data()
    tr, va = _small().split(len(X), g)
    assert set(g[tr]).isdisjoint(set(g[va]))
    assert len(tr) + len(va) == len(X)


def test_same_seed_same_model():
    X, y, g = _data()
    a = _small(random_state=3).fit(X, y, groups=g).predict(X)
    b = _small(random_state=3).fit(X, y, groups=g).predict(X)
    assert np.array_equal(a, b)


def test_rejects_empty_and_nonpositive_targets():
    with pytest.raises(ValueError, match="0 sample"):
        _small().fit(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValueError, match="positive"):
        _small().fit(np.ones((10, 3)), -np.ones(10))


def test_predict_checks_feature_count():
    X, y, g = _data()
    m = _small().fit(X, y, groups=g)
    with pytest.raises(ValueError, match="4 features"):
        m.predict(np.zeros((3, 5)))


def test_save_load_roundtrip_without_pickle(tmp_path):
    hw = load_hardware("mlu100")
    X, y, g = _data()
    m = _small().fit(X, y, groups=g)
    m.save(tmp_path, {"hardware": hw.name, "hardware_hash": hw.hash})
    assert (tmp_path / MODEL_FILE).read_bytes()[:1] == b"{"  # UBJSON object, not a pickle
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["versions"]["xgboost"] and meta["n_features"] == 4
    assert meta["featurizer"]["name"] == "datasheet" and meta["prior"] == "none"
    back = LatencyModel.load(tmp_path, hw)
    assert np.array_equal(back.predict(X), m.predict(X))
    assert not list(tmp_path.glob("*.tmp"))


def test_load_reads_extra_trees_and_a_refit_keeps_nothing_of_the_loaded_model(tmp_path):
    import hashlib

    from autotune.costmodel.model_io import EXTRA_TREES

    hw = load_hardware("mlu100")
    X, y, g = _data()
    m = _small().fit(X, y, groups=g)
    extra = bytes(_small().fit(X, y * 2, groups=g).booster_.save_raw(raw_format="ubj"))
    file = EXTRA_TREES["adapt_trees"]
    m.save(tmp_path, {"hardware": hw.name, "hardware_hash": hw.hash, "marker": 1,
                      "adapt_trees": {"file": file, "sha256": hashlib.sha256(extra).hexdigest()}}, {file: extra})
    back = LatencyModel.load(tmp_path, hw)
    assert back.adapt_trees_ is not None and back.probe_trees_ is None and back.meta_["marker"] == 1
    back.fit(X, y * 3, groups=g)
    assert back.adapt_trees_ is None and back.members_ == [] and back.meta_ == {}
    fresh = LatencyModel(**back.get_params()).fit(X, y * 3, groups=g)
    assert np.array_equal(back.predict(X), fresh.predict(X))
    (tmp_path / file).write_bytes(b"\x00" * 8)  # extra trees are checked like the model's own
    with pytest.raises(ModelFileError, match=f"{file} is corrupted"):
        LatencyModel.load(tmp_path, hw)


def _rewrite_meta(folder, **changes):
    from autotune.costmodel.model_io import meta_checksum

    meta = json.loads((folder / META_FILE).read_text())
    meta.update(changes)
    meta["meta_sha256"] = meta_checksum(meta)
    (folder / META_FILE).write_text(json.dumps(meta))
    return meta


def test_load_refuses_other_hardware_featurizer_and_corruption(tmp_path):
    hw, other = load_hardware("mlu100"), load_hardware("edge4")
    X, y, g = _data()
    m = _small().fit(X, y, groups=g)
    m.save(tmp_path, {"hardware": hw.name, "hardware_hash": hw.hash})
    with pytest.raises(ModelFileError, match="trained for hardware 'mlu100'.*autotune train --hw edge4"):
        LatencyModel.load(tmp_path, other)
    good = json.loads((tmp_path / META_FILE).read_text())
    version = good["featurizer"]["version"]
    _rewrite_meta(tmp_path, featurizer={**good["featurizer"], "version": version - 1})
    with pytest.raises(ModelFileError, match=f"datasheet features v{version - 1}, this autotune computes v{version}"):
        LatencyModel.load(tmp_path, hw)
    _rewrite_meta(tmp_path, featurizer={**good["featurizer"], "name": "other"})
    with pytest.raises(ModelFileError, match="featurizer 'other'"):
        LatencyModel.load(tmp_path, hw)
    _rewrite_meta(tmp_path, featurizer=good["featurizer"], prior="magic")
    with pytest.raises(ModelFileError, match="no valid prior"):
        LatencyModel.load(tmp_path, hw)
    _rewrite_meta(tmp_path, prior=good["prior"])
    LatencyModel.load(tmp_path, hw)
    (tmp_path / MODEL_FILE).write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="corrupted"):
        LatencyModel.load(tmp_path, hw)
    (tmp_path / META_FILE).write_text("{not json")
    with pytest.raises(ModelFileError, match="corrupted"):
        LatencyModel.load(tmp_path, hw)
    with pytest.raises(ModelFileError, match="no trained model"):
        LatencyModel.load(tmp_path / "missing", hw)


# -- the calibrated prior ------------------------------------------------------------------------
def _roofline_rows(n=3000, seed=0):
    """Feature rows whose latency follows a roofline with known constants, 2% noise and 2% outliers."""
    from autotune.costmodel.calibration import COLUMNS

    rng = np.random.default_rng(seed)
    ks = rng.choice([1, 2, 4, 8], n).astype(float)
    cc = 10 ** rng.uniform(0, 3, n)
    cr = cc * rng.uniform(0.8, 1.2, n)
    dc = 10 ** rng.uniform(0, 3, n)
    dr = dc * rng.uniform(1, 4, n)
    # distinct dense convs, other MAC layers and other layers, and repeats: a kernel's program
    dconv, dlite, dother, repeats = (rng.integers(0, m, n).astype(float) for m in (5, 4, 6, 4))
    dother += (dconv + dlite + dother + repeats) == 0
    layers = dconv + dlite + dother + repeats
    tc = np.floor(10 ** rng.uniform(0, 3, n) / ks)  # on-chip tiles of the busiest core
    tr = np.floor(tc * rng.uniform(0.5, 2, n))
    truth = {"launch": 20.0, "layer": 1.5, "bandwidth": {1: 2.0, 2: 1.5, 4: 1.0, 8: 1.0}, "overlap": 0.3,
             "tile_us": 0.7, "capacity": 11.0, "reload_us": 15.0}
    # a program memory of 11 units (3 per dense conv, 2 per other MAC layer, 1 per other, 1/4 per
    # repeat) reloads in whole steps
    units = 3 * dconv + 2 * dlite + dother + 0.25 * repeats
    reload = truth["reload_us"] * np.maximum(np.ceil(units / truth["capacity"]) - 1, 0)
    bw = np.array([truth["bandwidth"][int(k)] for k in ks])
    rows_split = ks >= 4  # the device splits by rows on 4+ cores
    C = np.where(rows_split, cr, cc) + truth["tile_us"] * np.where(rows_split, tr, tc)
    D = np.where(rows_split, dr, dc) * bw
    y_us = truth["launch"] + layers * truth["layer"] + reload + np.maximum(C, D) + truth["overlap"] * np.minimum(C, D)
    y_us *= np.exp(rng.normal(0, 0.02, n)) * np.where(rng.random(n) < 0.02, 3.0, 1.0)
    cols = {"log_compute_rows_us": np.log10(cr + 1), "log_compute_chan_us": np.log10(cc + 1),
            "log_bytes_rows_us": np.log10(dr + 1), "log_bytes_chan_us": np.log10(dc + 1),
            "n_layers": layers, "cores": ks, "log_tiles_rows": np.log10(tr + 1), "log_tiles_chan": np.log10(tc + 1),
            "n_distinct": dconv + dlite + dother, "n_distinct_conv": dconv, "n_distinct_lite": dlite,
            "hw_cores": np.full(n, 8.0)}
    X = np.column_stack([cols.get(c, np.zeros(n)) for c in COLUMNS]).astype(np.float32)
    return X, y_us / 1e3, list(COLUMNS), truth


def test_calibrated_prior_recovers_the_device_constants_despite_outliers():
    from autotune.costmodel.calibration import columns_to_parts, fit_roofline

    X, y, names, truth = _roofline_rows()
    fit = fit_roofline(columns_to_parts(X, {c: i for i, c in enumerate(names)}), y * 1e3)
    assert fit.cores == [1.0, 2.0, 4.0, 8.0]
    assert np.allclose(fit.launch, truth["launch"], rtol=0.15) and np.allclose(fit.layer, truth["layer"], rtol=0.2)
    assert np.allclose(fit.bandwidth, [truth["bandwidth"][k] for k in (1, 2, 4, 8)], rtol=0.1)
    assert fit.split[0] < 0.2 and fit.split[-1] > 0.8 and fit.overlap == pytest.approx(truth["overlap"], abs=0.1)
    assert fit.tile_us == pytest.approx(truth["tile_us"], rel=0.2)
    # whole reloads of an 11-unit program memory: steps, their cost and where they fall
    assert fit.reload_step > 0.9 and fit.reload_us == pytest.approx(truth["reload_us"], rel=0.2)
    assert np.allclose(np.array(fit.program) * truth["capacity"], [3, 2, 1, 0.25], rtol=0.15, atol=0.1)


@pytest.mark.parametrize("with_prior", [False, True])
def test_batches_of_perturbed_vectors_change_no_bit_of_the_fit(with_prior):
    """The Jacobian's perturbed vectors, evaluated on all rows in batches, give the fit that one
    vector per pass (scipy's own '2-point' differences) gives, with a prior as without."""
    from autotune.costmodel.calibration import columns_to_parts, fit_roofline

    X, y, names, _ = _roofline_rows(n=240, seed=3)
    parts = columns_to_parts(X, {c: i for i, c in enumerate(names)})
    prior = fit_roofline(parts, y * 1e3, max_rows=80, seed=1) if with_prior else None
    batched = fit_roofline(parts, y * 1e3, prior=prior, differences="whole").to_dict()
    assert fit_roofline(parts, y * 1e3, prior=prior, differences="plain").to_dict() == batched


def test_differences_on_each_core_counts_own_rows_fit_as_well():
    """Each core count's constants moved on its rows alone (the faster way on many rows) fits as
    well as every constant on every row. Not to the bit: numpy's exp and log may take another
    path for a row at another place, and constants the labels leave free drift with that."""
    from autotune.costmodel.calibration import columns_to_parts, fit_roofline

    X, y, names, _ = _roofline_rows(n=600, seed=3)
    parts = columns_to_parts(X, {c: i for i, c in enumerate(names)})
    logs = [np.log(fit_roofline(parts, y * 1e3, differences=d).predict_us(parts)) for d in ("whole", "split")]
    assert np.allclose(logs[0], logs[1], rtol=0, atol=2e-3)


def test_an_unknown_way_of_differences_is_refused():
    from autotune.costmodel.calibration import columns_to_parts, fit_roofline

    X, y, names, _ = _roofline_rows(n=40, seed=3)
    with pytest.raises(ValueError, match="differences 'central'"):
        fit_roofline(columns_to_parts(X, {c: i for i, c in enumerate(names)}), y * 1e3, differences="central")


@pytest.fixture
def roofline_featurizer():
    from autotune.costmodel.calibration import COLUMNS
    from autotune.costmodel.features import Featurizer, register_featurizer, unregister_featurizer

    f = register_featurizer(Featurizer("roofline-test", 1, tuple(COLUMNS), batch=None))
    yield f
    unregister_featurizer(f.name)


def test_latency_model_with_calibrated_prior_saves_and_loads_without_pickle(tmp_path, roofline_featurizer):
    X, y, names, _ = _roofline_rows()
    m = LatencyModel(n_estimators=100, early_stopping_rounds=10, n_jobs=1, featurizer=roofline_featurizer.name).fit(
        X, y, groups=np.arange(len(y)))
    assert m.prior_ == "calibrated"  # "auto": the featurizer has the roofline's columns
    rel = np.abs(m.predict(X) / y - 1)
    assert np.median(rel) < 0.03 and np.median(np.abs(m.prior_predict(X) / y - 1)) < 0.05
    hw = load_hardware("mlu100")
    m.save(tmp_path, {"hardware": hw.name, "hardware_hash": hw.hash})
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["calibration"]["cores"] == [1.0, 2.0, 4.0, 8.0] and meta["prior"] == "calibrated"
    back = LatencyModel.load(tmp_path, hw)
    assert np.array_equal(back.predict(X), m.predict(X))
    edited = {k: v for k, v in meta.items() if k != "calibration"}
    (tmp_path / META_FILE).write_text(json.dumps(edited))
    with pytest.raises(ModelFileError, match="checksum does not match"):  # an edit is caught
        LatencyModel.load(tmp_path, hw)
    from autotune.costmodel.model_io import meta_checksum

    edited["meta_sha256"] = meta_checksum(edited)  # a consistent but incomplete meta.json
    (tmp_path / META_FILE).write_text(json.dumps(edited))
    with pytest.raises(ModelFileError, match="calibration"):
        LatencyModel.load(tmp_path, hw)


def test_load_refuses_a_consistent_meta_json_with_impossible_values(tmp_path, roofline_featurizer):
    """Edited with its checksum made to match: a best iteration past the trees, a calibration that
    is not finite, the same part's name with another config are each one clear line."""
    hw = load_hardware("mlu100")
    X, y, _, _ = _roofline_rows()
    m = LatencyModel(n_estimators=30, n_jobs=1, featurizer=roofline_featurizer.name).fit(X, y,
                                                                                        groups=np.arange(len(y)))
    m.save(tmp_path, {"hardware": hw.name, "hardware_hash": hw.hash})
    good = json.loads((tmp_path / META_FILE).read_text())
    for it in (10**9, -5):
        _rewrite_meta(tmp_path, best_iteration=it)
        with pytest.raises(ModelFileError, match=f"best_iteration {it} is not one of the"):
            LatencyModel.load(tmp_path, hw)
    cal = json.loads(json.dumps(good["calibration"]))
    cal["split"][0] = float("nan")
    _rewrite_meta(tmp_path, best_iteration=good["best_iteration"], calibration=cal)
    with pytest.raises(ModelFileError, match="calibration value is not finite"):
        LatencyModel.load(tmp_path, hw)
    _rewrite_meta(tmp_path, calibration=good["calibration"], hardware_hash="deadbeef")
    with pytest.raises(ModelFileError, match="another version of 'mlu100'.*a datasheet or device value changed"):
        LatencyModel.load(tmp_path, hw)


def test_unknown_prior_and_featurizer_are_refused():
    X, y, g = _data()
    with pytest.raises(ValueError, match="'prior' parameter"):
        LatencyModel(n_estimators=5, prior="magic").fit(X, y, groups=g)
    with pytest.raises(ValueError, match="unknown featurizer 'magic'"):
        LatencyModel(n_estimators=5, featurizer="magic").fit(X, y, groups=g)
    with pytest.raises(ValueError, match="featurizer 'datasheet' makes"):
        LatencyModel(n_estimators=5, prior="calibrated").fit(X, y, groups=g)


def test_passes_scikit_learns_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    failed = check_estimator(LatencyModel(n_estimators=20, early_stopping_rounds=5, n_jobs=1),
                             on_fail=None)
    bad = [f"{r['check_name']}: {r['exception']}" for r in failed if r["status"] == "failed"]
    assert not bad, "\n".join(bad)


def test_calibration_saved_before_power_share_and_steps_loads_as_it_predicted():
    from autotune.costmodel.calibration import COLUMNS, RooflineFit, columns_to_parts
    from autotune.hardware.analytic import STRIDE_CLASSES

    X, y, names, _ = _roofline_rows(n=200)
    parts = columns_to_parts(X, {c: i for i, c in enumerate(names)})
    ks = [1.0, 2.0, 4.0, 8.0]
    old = {"cores": ks, "split": [0.5] * 4, "bandwidth": [1.0] * 4, "compute": [1.0] * 4, "launch": [20.0] * 4,
           "layer": [1.0] * 4, "overlap": 0.3, "reread": 1.0, "spill": 1.0, "power_cores": 2.0, "power_exp": 0.5,
           "tile_us": 0.5, "pad": 0.5, "stride": [0.02] * len(STRIDE_CLASSES),
           "program": [0.3, 0.2, 0.1, 0.02], "reload_us": 10.0}
    fit = RooflineFit.from_dict(old)
    assert fit.power_share == pytest.approx(2.0 / 8.0) and fit.reload_step == 0.0
    # a budget of 2 of the part's 8 cores, as before; the program reloads in proportion to its excess
    assert "hw_cores" in COLUMNS and np.all(parts["hw_cores"] == 8.0)
    back = RooflineFit.from_dict(fit.to_dict())
    assert np.array_equal(back.predict_us(parts), fit.predict_us(parts))


@pytest.mark.slow
def test_bags_average_bootstrap_members_and_round_trip(tmp_path, roofline_featurizer):
    """bags=3: the model and two members fitted to bootstrap draws of the groups, predicting their
    mean log; saved as XGBoost files named in meta.json and loaded to the same predictions; a
    member file of no allowed name is refused before anything is read."""
    X, y, _, _ = _roofline_rows(1200)
    groups = np.arange(len(y)) // 3
    m = LatencyModel(n_estimators=60, early_stopping_rounds=10, n_jobs=1, bags=3,
                     featurizer=roofline_featurizer.name).fit(X, y, groups=groups)
    assert [b.kind for b in m.members_] == ["bagged", "bagged"]
    assert all(b.weight == pytest.approx(1 / 3) for b in m.members_)
    parts = m._parts(X)
    logs = np.vstack([m.booster_.inplace_predict(X, iteration_range=(0, m.best_iteration_ + 1),
                                                 base_margin=m._margin(X))]
                     + [b.log_predict(X, parts) for b in m.members_])
    assert np.ptp(logs, axis=0).max() > 0  # the draws differ
    assert np.allclose(np.log(m.predict(X)), logs.mean(0))
    single = LatencyModel(n_estimators=60, early_stopping_rounds=10, n_jobs=1, bags=1,
                          featurizer=roofline_featurizer.name).fit(X, y, groups=groups)
    assert single.members_ == []
    hw = load_hardware("mlu100")
    m.save(tmp_path, {"hardware": hw.name, "hardware_hash": hw.hash})
    assert (tmp_path / "member_bag1.ubj").is_file() and (tmp_path / "member_bag2.ubj").is_file()
    assert np.array_equal(LatencyModel.load(tmp_path, hw).predict(X), m.predict(X))
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["combine"] == "mean"  # the ensemble's rule is recorded, not guessed again
    _rewrite_meta(tmp_path, combine="median")
    with pytest.raises(ModelFileError, match="no valid rule to combine its members"):
        LatencyModel.load(tmp_path, hw)
    meta["members"][0]["file"] = "../model.ubj"
    _rewrite_meta(tmp_path, combine="mean", members=meta["members"])
    with pytest.raises(ModelFileError, match="no allowed form"):
        LatencyModel.load(tmp_path, hw)


def test_novelty_flags_kernels_unlike_the_training_data(tmp_path):
    """A model remembers where its labels lie (standardised COVERAGE_FEATURES of its groups): rows
    like them have novelty near 1 and none is outside; a row far beyond every label is outside,
    and the feature it exceeds is named. The record survives a save and load."""
    from autotune.costmodel.features import COVERAGE_FEATURES, FEATURE_NAMES

    rng = np.random.default_rng(0)
    n = 600
    X = rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)
    y = np.exp(X[:, 0] * 0.3) + 0.1
    m = LatencyModel(n_estimators=30, early_stopping_rounds=5, n_jobs=1, prior="none").fit(
        X, y, groups=np.arange(n))
    assert m.coverage_ is not None and m.coverage_["features"] == COVERAGE_FEATURES
    like = X[:50]
    far = X[:1].copy()
    col = FEATURE_NAMES.index("log_macs")
    far[0, col] = 40.0
    assert np.median(m.novelty(like)) < 2.0 and m.novelty(far)[0] > 10
    mask, counts = m.outside(np.vstack([like, far]))
    assert mask[-1] and mask[:-1].sum() <= 3 and counts == {"log_macs": 1}
    hw = load_hardware("mlu100")
    m.save(tmp_path, {"hardware": hw.name, "hardware_hash": hw.hash})
    back = LatencyModel.load(tmp_path, hw)
    assert np.allclose(back.novelty(np.vstack([like, far])), m.novelty(np.vstack([like, far])), rtol=1e-3)
    _rewrite_meta(tmp_path, coverage={"features": ["nope"], "points": [[0.0]]})
    assert LatencyModel.load(tmp_path, hw).novelty(far) is None  # a malformed record is ignored
