"""LatencyModel: estimator behaviour, group-aware split, persistence and refusal of bad model files."""

import json

import numpy as np
import pytest
from sklearn.base import clone

from autotune.costmodel import META_FILE, MODEL_FILE, LatencyModel
from autotune.errors import ModelFileError
from autotune.hardware import load_hardware


def _data(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 4)).astype(np.float32)
    y = np.exp(3 * X[:, 0] - 2 * X[:, 1] + X[:, 2] * X[:, 3]) * 0.1
    groups = np.arange(n) // 5
    return X, y, groups


def _small(**kw):
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
    with pytest.raises(ValueError, match="empty"):
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
    m.save(tmp_path, {"hardware": hw.name, "hardware_hash": hw.hash, "feature_version": 7})
    assert (tmp_path / MODEL_FILE).read_bytes()[:1] == b"{"  # UBJSON object, not a pickle
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["versions"]["xgboost"] and meta["n_features"] == 4
    back = LatencyModel.load(tmp_path, hw, feature_version=7)
    assert np.array_equal(back.predict(X), m.predict(X))
    assert not list(tmp_path.glob("*.tmp"))


def test_load_refuses_other_hardware_schema_and_corruption(tmp_path):
    hw, other = load_hardware("mlu100"), load_hardware("edge4")
    X, y, g = _data()
    m = _small().fit(X, y, groups=g)
    m.save(tmp_path, {"hardware": hw.name, "hardware_hash": hw.hash, "feature_version": 7})
    with pytest.raises(ModelFileError, match="trained for hardware 'mlu100'.*make train HW=edge4"):
        LatencyModel.load(tmp_path, other, feature_version=7)
    with pytest.raises(ModelFileError, match="feature schema v7.*v8"):
        LatencyModel.load(tmp_path, hw, feature_version=8)
    (tmp_path / MODEL_FILE).write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="corrupted"):
        LatencyModel.load(tmp_path, hw, feature_version=7)
    (tmp_path / META_FILE).write_text("{not json")
    with pytest.raises(ModelFileError, match="corrupted"):
        LatencyModel.load(tmp_path, hw)
    with pytest.raises(ModelFileError, match="no trained model"):
        LatencyModel.load(tmp_path / "missing", hw)
