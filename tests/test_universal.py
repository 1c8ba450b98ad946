"""One model for a family of parts: the family's ranges and draws, the family dataset, the universal
model (zero-shot on parts it never saw, warning outside its family) and few-shot adaptation."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from autotune.cli import main
from autotune.costmodel.features import FEATURE_NAMES, UNIVERSAL_EXTRA, get_featurizer
from autotune.costmodel.model import LatencyModel
from autotune.costmodel.probes import PROBE_LABELS, probe_pairs
from autotune.costmodel.universal import load_universal, read_family_dataset, train_universal
from autotune.errors import ConfigError, DatasetError, ModelFileError
from autotune.hardware.config import dump_hardware, load_hardware, parse_hardware, preset_names
from autotune.hardware.family import load_family, parse_family
from autotune.synth.adapt_labels import adapt_for
from autotune.synth.family_labels import run_family
from autotune.synth.pipeline import run


def load_hardware_dict(d: dict):
    return parse_hardware(d, "family.json")


@pytest.fixture(scope="module")
def family():
    return load_family("family")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, family):
    """A small family dataset (6 datasheets x 2 devices) and a universal model trained on it."""
    root = tmp_path_factory.mktemp("universal")
    run_family(family, root / "data", devices=6, budget=12 * 900, seed=0, jobs=1, siblings=2)
    train_universal(root / "data", root / "models" / "universal", n_estimators=150, early_stopping_rounds=20)
    return root


def test_the_family_has_a_range_for_every_datasheet_and_device_value(family):
    hw = load_hardware("mlu100")
    paths = {r.path for r in family.ranges}

    def leaves(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield prefix + k

    wanted = set(leaves(hw.model_dump(include={"datasheet", "device"}), "")) - {"datasheet.core_counts"}
    assert wanted <= paths


def test_draws_are_valid_configs_inside_the_family_and_differ_by_seed(family):
    a, b = family.draw(8, seed=0), family.draw(8, seed=1)
    for hw in a + b:
        assert family.outside(hw) == []
        assert hw.core_counts == [2**i for i in range(len(hw.core_counts))] and hw.core_counts[-1] == hw.cores
        assert hw.device is not None and hw.device.dma_gbps_per_core * hw.cores >= hw.dram_gbps  # per-core DMA x 2.5..6
    assert not {h.hash for h in a} & {h.hash for h in b}
    assert [h.hash for h in family.draw(8, seed=0)] == [h.hash for h in a]  # seeded
    # the draw spans the family: edge and datacenter parts both appear
    cores = [h.cores for h in family.draw(32, seed=0)]
    assert min(cores) <= 4 and max(cores) >= 32


def test_presets_lie_in_the_family_and_the_cpu_does_not(family):
    for name in ("mlu100", "npu16", "edge4"):
        assert family.outside(load_hardware(name)) == []
    out = family.outside(load_hardware("cpu"))
    assert any(s.startswith("dtype_bytes=4") for s in out)


def test_family_is_not_a_hardware_preset():
    assert "family" not in preset_names()
    with pytest.raises(ConfigError, match="hardware family"):
        load_hardware("family")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(extra=1), "'extra': unknown field"),
    (lambda d: d["datasheet"].update(clock_ghz={"min": 2.0, "max": 1.0}), "min 2 is above max 1"),
    (lambda d: d["datasheet"].update(dram_gbps={"min": 0.0, "max": 1.0, "log": True}), "log range needs min > 0"),
    (lambda d: d["datasheet"].pop("vector_lanes"), "vector_lanes"),
    (lambda d: d["device"].update(launch_us={"min": 1, "max": 2, "per": "moons"}), "per must be one of"),
    (lambda d: d["device"].update(launch_us=5), "expected a range"),
    (lambda d: d["datasheet"].update(cores={"choices": []}), "non-empty list"),
    (lambda d: d["datasheet"].update(cores={"choices": [0]}), "must be at least 1, got 0"),
    (lambda d: d["datasheet"].update(cores={"choices": [4, -2, 8]}), "must be at least 1, got -2"),
    (lambda d: d["datasheet"].update(cores={"min": 0.4, "max": 64}), "must be at least 1, got 0.4"),
])
def test_a_bad_family_is_one_clear_error(family, edit, message):
    spec = json.loads(json.dumps(family.spec))
    edit(spec)
    with pytest.raises(ConfigError, match=message):
        parse_family(spec, "bad.yaml")


@pytest.mark.slow
def test_universal_features_add_the_datasheet_scale(trained):
    f = get_featurizer("universal")
    assert list(f.names) == FEATURE_NAMES + UNIVERSAL_EXTRA
    fd = read_family_dataset(trained / "data")
    hw, data = fd.devices[0]
    from autotune.costmodel.universal import device_rows

    X, y = device_rows(data, hw)
    share = X[:, list(f.names).index("hw_core_share")]
    assert np.allclose(share, data.rows["cores"].to_numpy() / hw.cores)
    assert len(y) == len(X) == 900


@pytest.mark.slow
def test_family_dataset_lists_its_devices_and_refuses_tampering(trained, tmp_path):
    m = json.loads((trained / "data" / "family.json").read_text())
    assert len(m["devices"]) == 6 and m["labels"] == 12 * 900
    fd = read_family_dataset(trained / "data")
    assert len({hw.hash for hw, _ in fd.devices}) == 6
    with pytest.raises(DatasetError, match="family.json missing"):
        read_family_dataset(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(trained / "data", copy)
    m["devices"][0]["config"]["datasheet"]["clock_ghz"] = 9.0
    (copy / "family.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="does not match its recorded hash"):
        read_family_dataset(copy)


@pytest.mark.slow
def test_siblings_measure_a_datasheets_rows_on_other_devices_and_the_target_is_their_mean(trained, family):
    from autotune.costmodel.universal import family_rows

    m = json.loads((trained / "data" / "family.json").read_text())
    fd = read_family_dataset(trained / "data")
    for e, (hw, data), sib in zip(m["devices"], fd.devices, fd.siblings):
        (s,) = e["siblings"]
        other = load_hardware_dict(s["config"])
        assert other.datasheet_hash == hw.datasheet_hash and other.hash != hw.hash  # device values redrawn
        assert family.outside(other) == [] and sib.shape == (len(data.rows), 1)
        y = data.rows["latency_ms"].to_numpy()
        assert not np.allclose(sib[:, 0], y)  # another device measures other times for the same rows
    X, y, y_mean, dev = family_rows(fd)
    first = dev == 0
    assert np.allclose(y_mean[first], (y[first] + fd.siblings[0][:, 0]) / 2)
    # the datasheets' siblings differ from each other (each datasheet draws its own)
    devs = [load_hardware_dict(e["siblings"][0]["config"]).device for e in m["devices"]]
    assert len({d.launch_us for d in devs}) == len(devs)


@pytest.mark.slow
def test_a_damaged_or_stale_siblings_file_is_one_clear_error(trained, tmp_path):
    import pyarrow.parquet as pq

    copy = tmp_path / "copy"
    shutil.copytree(trained / "data", copy)
    first = json.loads((copy / "family.json").read_text())["devices"][0]["folder"]
    path = copy / first / "siblings.parquet"
    t = pq.read_table(path)
    pq.write_table(t.replace_schema_metadata({"autotune": json.dumps({"dataset_digest": "x", "siblings": []})}), path)
    with pytest.raises(DatasetError, match="measures other rows or other siblings"):
        read_family_dataset(copy)
    path.write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match="damaged"):
        read_family_dataset(copy)
    path.unlink()
    with pytest.raises(DatasetError, match="siblings.parquet is missing"):
        read_family_dataset(copy)


def test_siblings_need_sobol_sampling_and_a_family(family, tmp_path):
    with pytest.raises(DatasetError, match="--sampling sobol"):
        run_family(family, tmp_path / "a", devices=2, budget=2 * 2 * 400, siblings=2, sampling="active")
    with pytest.raises(DatasetError, match="at least 1"):
        run_family(family, tmp_path / "b", devices=2, budget=800, siblings=0)
    assert main(["synth", "--hw", "edge4", "--siblings", "2", "--out", str(tmp_path / "c")]) == 2


@pytest.mark.slow
def test_other_settings_are_refused_without_force(trained, family):
    with pytest.raises(DatasetError, match="other settings"):
        run_family(family, trained / "data", devices=5, budget=10 * 900, seed=0, siblings=2)


@pytest.mark.slow
def test_universal_model_plans_a_part_it_never_saw_and_warns_outside_its_family(trained, family):
    folder = trained / "models" / "universal"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["universal"] and meta["family"]["hash"] == family.hash and len(meta["train_devices"]) == 12
    assert meta["siblings"] == 2 and meta["labels"] == 12 * 900
    held = family.draw(1, seed=99)[0]
    assert held.hash not in meta["train_devices"]
    model, outside = load_universal(folder, held)
    assert outside == []
    _, outside = load_universal(folder, load_hardware("cpu"))
    assert outside
    # a one-part loader refuses nothing here, but a one-part model is not universal
    with pytest.raises(ModelFileError, match="not as a universal model"):
        one = trained / "one"
        LatencyModel(n_estimators=5).fit(np.random.rand(20, len(FEATURE_NAMES)), np.random.rand(20) + 0.1).save(
            one, {"hardware": "x", "hardware_hash": "y"})
        load_universal(one, held)


@pytest.mark.slow
def test_cli_zero_shot_tune_and_eval(trained, tmp_path, capsys):
    held = tmp_path / "held.yaml"
    held.write_text(dump_hardware(load_family("family").draw(1, seed=42, prefix="cli")[0]))
    models = str(trained / "models")
    plan = tmp_path / "plan.json"
    assert main(["tune", "--hw", str(held), "--model", "resnet18", "--cost", "universal", "--models-dir", models,
                 "--out", str(plan)]) == 0
    assert "no labels from this part" in capsys.readouterr().out
    assert json.loads(plan.read_text())["cost_model"] == "universal"
    assert main(["eval", "--hw", str(held), "--cost", "universal", "--models-dir", models, "--models",
                 "resnet18,mobilenet_v2", "--json", str(tmp_path / "e.json"), "--plot", str(tmp_path / "e.png")]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    assert all(m["regret"] >= -1e-9 for m in res["models"])
    assert main(["tune", "--hw", "cpu", "--model", "resnet18", "--cost", "universal", "--models-dir", models]) == 0
    assert "outside the universal model's family" in capsys.readouterr().err
    # the part's own model is still the default cost, and says how to make it
    assert main(["tune", "--hw", str(held), "--model", "resnet18", "--models-dir", models]) == 2
    assert main(["synth", "--hw", "edge4", "--hw-family", "family"]) == 2
    assert main(["synth", "--hw-family", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_adapt_improves_on_the_universal_model_and_plain_tune_uses_it(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # adapt labels into data/<part>.adapt/
    fam = load_family("family")
    hw = fam.draw(1, seed=77, prefix="adapt")[0]
    yaml_path = tmp_path / "part.yaml"
    yaml_path.write_text(dump_hardware(hw))
    models = trained / "models"
    out = tmp_path / "adapted"
    assert main(["adapt", "--hw", str(yaml_path), "--budget", "400", "--models-dir", str(models),
                 "--out", str(out)]) == 0
    adapted = LatencyModel.load(out, hw)  # a one-part model now: loads for this part only
    assert adapted.meta_["labels"] == 400 and adapted.meta_["adapted_from"]["family_hash"] == fam.hash
    # by default its labels are spread: each synthetic group measured once, at one core count
    (manifest,) = (tmp_path / "data").glob("*.adapt/manifest.json")
    m = json.loads(manifest.read_text())
    ids = pd.concat([pd.read_parquet(manifest.parent / shard)["group_id"] for shard in m["shards"]])
    assert m["sampling"] == "spread" and len(ids) == ids.nunique() == 400 - PROBE_LABELS
    # its validation error (what tune-time measurement trusts it to) is its own on this part
    assert adapted.val_mae_log_ == pytest.approx(adapted.meta_["adapt"]["cv_mae_log_adapted"])
    with pytest.raises(ModelFileError, match="trained for hardware"):
        LatencyModel.load(out, load_hardware("mlu100"))
    # on fresh groups of this part, the adapted model errs less than the universal one
    run(hw, tmp_path / "fresh", 1800, seed=5, zoo_models=[])
    from autotune.costmodel.universal import device_rows
    from autotune.data.dataset import read_dataset

    X, y = device_rows(read_dataset(tmp_path / "fresh", hw), hw)
    universal, _ = load_universal(models / "universal", hw)
    err_u = np.mean(np.abs(np.log(universal.predict(X) / y)))
    err_a = np.mean(np.abs(np.log(adapted.predict(X) / y)))
    assert err_a < err_u
    # the budget began with the probes, and the model averages its own prediction with two members in
    # log: the probed member and the scratch member (a one-part model on the labels alone)
    info = adapted.meta_["adapt"]
    assert info["probed"] is not None and info["scratch"] is not None
    assert [m.kind for m in adapted.members_] == ["probed", "scratch"]
    # inverse-variance weights: a smaller cross-validated error weighs more, and the shares add to 1
    maes = [info["cv_mae_log_adapted"], info["probed"]["cv_mae_log"], info["scratch"]["cv_mae_log"]]
    ws = [1 - sum(m.weight for m in adapted.members_)] + [m.weight for m in adapted.members_]
    assert all(0 < w < 1 for w in ws) and sum(ws) == pytest.approx(1)
    assert np.argsort(ws).tolist() == np.argsort(maes)[::-1].tolist()
    logs = [m.log_predict(X, adapted._parts(X)) for m in adapted.members_]
    alone = copy.copy(adapted)
    alone.members_ = []
    logs.insert(0, np.log(alone.predict(X)))
    from autotune.costmodel.members import consensus

    together = np.log(adapted.predict(X))
    assert np.allclose(together, consensus(np.asarray(ws), np.vstack(logs)), atol=1e-5)
    # between the members, and their weighted mean wherever they agree within the consensus scale
    stack = np.vstack(logs)
    assert ((stack.min(0) - 1e-6 <= together) & (together <= stack.max(0) + 1e-6)).all()
    agree = np.ptp(stack, axis=0) < 0.05
    assert agree.any() and np.allclose(together[agree], sum(w * v for w, v in zip(ws, logs))[agree], atol=1e-5)
    # members that err differently: together they err less than one of them picked at random
    assert err_a < np.mean([np.mean(np.abs(v - np.log(y))) for v in logs])
    # plain tune (the part's own model) now plans with the adapted model
    assert main(["tune", "--hw", str(yaml_path), "--model", "resnet18", "--models-dir", str(tmp_path)]) == 2
    (tmp_path / "m").mkdir()
    (out).rename(tmp_path / "m" / "part")
    assert main(["tune", "--hw", str(yaml_path), "--model", "resnet18", "--models-dir", str(tmp_path / "m")]) == 0


@pytest.mark.slow
def test_adapt_needs_labels_a_real_part_cannot_simulate(trained, tmp_path, capsys):
    assert main(["adapt", "--hw", "cpu", "--budget", "50", "--models-dir", str(trained / "models"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "--data" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adapt.ubj", "probe.ubj"])
def test_adaptation_and_probe_trees_ship_with_the_model_and_a_damaged_file_is_refused(trained, tmp_path, name):
    folder = trained / "models" / "universal"
    hw = load_family("family").draw(1, seed=5)[0]
    model, _ = load_universal(folder, hw)
    assert model.adapt_trees_ is not None and model.meta_["adapt_trees"]["fit_sizes"] == [50, 200, 1000]
    assert model.probe_trees_ is not None and model.probe_trees_.num_features() == model.n_features_in_ + PROBE_LABELS
    dest = tmp_path / "universal"
    shutil.copytree(folder, dest)
    (dest / name).write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match=f"{name} is corrupted"):
        load_universal(dest, hw)


@pytest.mark.slow
def test_every_device_of_the_draw_runs_the_same_probes_as_its_siblings(trained):
    fd = read_family_dataset(trained / "data")
    assert fd.probes is not None and len(fd.probes) == len(fd.devices)
    for (hw, _), ms in zip(fd.devices, fd.probes):
        assert ms.shape == (2, PROBE_LABELS) and (ms > 0).all()  # the datasheet's device and its sibling
        batch, gidx, cores = probe_pairs(hw)
        ks = set(cores.tolist())  # one core, every core, and one in between where the part has one
        assert len(gidx) == PROBE_LABELS and min(ks) == 1 and max(ks) == hw.cores
        assert len(ks) == min(3, len(hw.core_counts)) and ks <= set(hw.core_counts)
        assert not np.allclose(ms[0], ms[1])  # other device values, other latencies
    # the probes are the same kernels on any part of a datasheet (sized by it), and fixed: re-made alike
    hw = fd.devices[0][0]
    a, b = probe_pairs(hw), probe_pairs(hw)
    assert np.array_equal(a[0].groups.n_layers, b[0].groups.n_layers) and np.array_equal(a[2], b[2])
    # probe trees learned what the probes say: departures from the universal model explained better
    v = LatencyModel.load(trained / "models" / "universal").meta_["probe_trees"]["validation"]
    assert v["mae_log"] < v["mae_log_without_probes"]


@pytest.fixture(scope="module")
def adapted_folder(trained, tmp_path_factory):
    """A part adapted with 100 labels: (its config, the folder)."""
    tmp = tmp_path_factory.mktemp("adapted")
    hw = load_family("family").draw(1, seed=78, prefix="adapt")[0]
    universal, _ = load_universal(trained / "models" / "universal", hw)
    res = adapt_for(hw, universal, 100, tmp / "data", tmp / "m", seed=0)
    assert res["labels"] == 100 and res["probed"] is not None and "24 of them probes" in res["source"]
    return hw, tmp / "m"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["member.ubj", "member_probe.ubj", "member_scratch.ubj"])
def test_a_damaged_member_is_refused(adapted_folder, tmp_path, name):
    hw, folder = adapted_folder
    model = LatencyModel.load(folder, hw)
    assert [m.kind for m in model.members_] == ["probed", "scratch"]
    dest = tmp_path / "m"
    shutil.copytree(folder, dest)
    (dest / name).write_bytes(b"\x00" * 8)
    with pytest.raises(ModelFileError, match=f"{name} is corrupted"):
        LatencyModel.load(dest, hw)


@pytest.mark.slow
def test_an_adapted_model_reads_back_its_members_and_predicts_alike(adapted_folder, tmp_path):
    hw, folder = adapted_folder
    model = LatencyModel.load(folder, hw)
    X = model.featurize_batch(*probe_pairs(hw), hw)
    dest = tmp_path / "m"
    model.save(dest, {k: v for k, v in model.meta_.items() if k in ("hardware", "hardware_hash", "adapt")})
    assert np.allclose(LatencyModel.load(dest, hw).predict(X), model.predict(X))
    # a member kind this autotune does not know is one clear error, not a silent drop
    shutil.rmtree(dest)
    shutil.copytree(folder, dest)
    meta = json.loads((dest / "meta.json").read_text())
    meta["members"][1]["kind"] = "oracle"
    from autotune.costmodel.model_io import meta_checksum

    meta["meta_sha256"] = meta_checksum(meta)
    (dest / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="unknown member kind 'oracle'"):
        LatencyModel.load(dest, hw)


def _refit_rows(model, hw):
    """Feature rows of the probe kernels and latencies 30% above the model's: something to refit on."""
    batch, gidx, cores = probe_pairs(hw)
    X = model.featurize_batch(batch, gidx, cores, hw)
    return X, model.predict(X) * 1.3, gidx


@pytest.mark.slow
def test_a_refit_universal_model_keeps_nothing_of_what_it_was(trained):
    hw = load_family("family").draw(1, seed=5, prefix="refit")[0]
    model, _ = load_universal(trained / "models" / "universal", hw)
    assert model.adapt_trees_ is not None and model.probe_trees_ is not None and model.meta_["universal"]
    from autotune.costmodel.model_io import PROVENANCE

    assert set(PROVENANCE) <= set(model.meta_)  # the universal model's meta.json, as train's
    X, y, groups = _refit_rows(model, hw)
    model.fit(X, y, groups=groups)
    assert model.meta_ == {} and model.adapt_trees_ is None and model.probe_trees_ is None and model.members_ == []
    fresh = LatencyModel(**model.get_params()).fit(X, y, groups=groups)
    assert np.array_equal(model.predict(X), fresh.predict(X))


@pytest.mark.slow
def test_a_refit_adapted_model_drops_its_members(adapted_folder):
    hw, folder = adapted_folder
    model = LatencyModel.load(folder, hw)
    assert len(model.members_) == 2
    from autotune.costmodel.model_io import PROVENANCE

    assert set(PROVENANCE) <= set(model.meta_) and model.meta_["adapt"]["kind"]  # adapt's meta.json, as train's
    X, y, groups = _refit_rows(model, hw)
    model.fit(X, y, groups=groups)
    assert model.members_ == [] and model.meta_ == {}
    assert np.array_equal(model.predict(X), LatencyModel(**model.get_params()).fit(X, y, groups=groups).predict(X))


@pytest.mark.slow
def test_a_map_roofline_refit_moves_from_its_prior_only_as_far_as_labels_say(trained):
    from autotune.costmodel.calibration import fit_roofline
    from autotune.costmodel.universal import device_rows

    folder = trained / "models" / "universal"
    fd = read_family_dataset(trained / "data")
    hw, data = fd.devices[0]
    model, _ = load_universal(folder, hw)
    X, y = device_rows(data, hw)
    parts = model._parts(X)
    prior = model.calibration_
    # a prior that costs everything: the constants stay where the family put them
    stiff = fit_roofline({k: v[:60] for k, v in parts.items()}, y[:60] * 1e3, prior=prior, prior_weight=1e4)
    j = [int(np.argmin(np.abs(np.log2(prior.cores) - np.log2(k)))) for k in stiff.cores]
    assert np.allclose(stiff.launch, np.asarray(prior.launch)[j], rtol=1e-2)
    # adapt's weight (REFIT_PRIOR_WEIGHT) lets 600 labels pull it to this part: better on its other
    # groups than the prior
    from autotune.costmodel.universal import refit_roofline

    fit = refit_roofline(model, parts, y, np.arange(600), seed=0)
    rest = {k: v[600:] for k, v in parts.items()}

    def err(f):
        return np.mean(np.abs(np.log(f.predict_us(rest) / 1e3 / y[600:])))

    assert err(fit) < err(prior)


@pytest.mark.slow
def test_adapt_spends_measurements_from_a_dataset_when_given_one(trained, tmp_path, capsys):
    hw = load_family("family").draw(1, seed=31, prefix="measured")[0]
    yaml_path = tmp_path / "part.yaml"
    yaml_path.write_text(dump_hardware(hw))
    run(hw, tmp_path / "profile", 900, seed=3, zoo_models=[])  # stands in for an imported profile
    out = tmp_path / "adapted"
    assert main(["adapt", "--hw", str(yaml_path), "--budget", "300", "--data", str(tmp_path / "profile"),
                 "--models-dir", str(trained / "models"), "--out", str(out)]) == 0
    assert "measured, from" in capsys.readouterr().out
    assert LatencyModel.load(out, hw).meta_["labels"] == 300  # the first 300 of its 900 labels
    # a dataset of another part is refused, naming the hardware
    other = load_family("family").draw(1, seed=32, prefix="other")[0]
    (tmp_path / "other.yaml").write_text(dump_hardware(other))
    argv = ["adapt", "--hw", str(tmp_path / "other.yaml"), "--budget", "300", "--data", str(tmp_path / "profile"),
            "--models-dir", str(trained / "models"), "--out", str(tmp_path / "adapted2")]
    assert main(argv) == 2
    assert "labelled for hardware" in capsys.readouterr().err
    # and the first part's adapted model is not replaced by another part's without --force
    assert main([*argv[:-1], str(out)]) == 2
    assert f"holds a model for {hw.name!r}" in capsys.readouterr().err


@pytest.mark.slow
def test_a_measured_part_can_run_the_probes_too(trained, tmp_path, capsys):
    """export-groups --probes -> measure -> import-profile -> adapt --data: the probes are found by
    id, spent first, and give the adapted model its probed member, as on a simulated part."""
    from autotune.synth.measure import measure
    from autotune.synth.profiles import export_groups, import_profile, write_profile

    hw = load_family("family").draw(1, seed=33, prefix="measured")[0]
    yaml_path = tmp_path / "part.yaml"
    yaml_path.write_text(dump_hardware(hw))
    export_groups(hw, tmp_path / "groups", 40, seed=2, probes=True)
    frame, _ = measure(tmp_path / "groups", "simulator", hw, seed=4)
    assert len(frame) == 40 * len(hw.core_counts) + PROBE_LABELS  # probes at their own core counts only
    write_profile(tmp_path / "m.csv", frame)
    import_profile(tmp_path / "m.csv", hw, tmp_path / "data", groups=tmp_path / "groups")
    out = tmp_path / "adapted"
    assert main(["adapt", "--hw", str(yaml_path), "--budget", "60", "--data", str(tmp_path / "data"),
                 "--models-dir", str(trained / "models"), "--out", str(out)]) == 0
    assert f"{PROBE_LABELS} of them probes" in capsys.readouterr().out
    model = LatencyModel.load(out, hw)
    assert model.meta_["labels"] == 60 and model.members_[0].kind == "probed"
    # the residuals are the measured probes' against the universal model, in probe_pairs' order
    universal, _ = load_universal(trained / "models" / "universal", hw)
    batch, gidx, cores = probe_pairs(hw)
    have = frame.set_index(["group_id", "cores"])["latency_ms"]
    ms = np.array([have[(f"probe-{g}", int(k))] for g, k in zip(gidx, cores)])
    assert np.allclose(model.members_[0].residuals, np.log(ms / universal.predict_batch(batch, gidx, cores, hw)))


def test_members_consensus_is_their_mean_when_they_agree_and_bounds_a_stray():
    """Members within the scale average by weight; one far off moves the result no further than a
    member at the scale would, however far it strays."""
    from autotune.costmodel.members import CONSENSUS_SCALE, consensus

    w = np.array([0.4, 0.35, 0.25])
    close = np.array([[0.0, 1.0], [0.02, 1.03], [-0.03, 0.98]])
    assert np.allclose(consensus(w, close), (w[:, None] * close).sum(0))
    for stray in (1.0, 5.0, 50.0):
        ls = np.array([[0.0], [0.01], [stray]])
        mu = consensus(w, ls)[0]
        assert 0.0 < mu < 0.01 + CONSENSUS_SCALE * w[2] / (w[0] + w[1]) + 1e-9
        assert mu < (w[:, None] * ls).sum(0)[0]
    assert np.allclose(consensus(np.array([1.0]), np.array([[0.3, -2.0]])), [0.3, -2.0])


@pytest.mark.slow
def test_a_universal_model_from_older_features_says_how_to_remake_it(trained, tmp_path):
    from autotune.costmodel.model_io import meta_checksum

    dest = tmp_path / "universal"
    shutil.copytree(trained / "models" / "universal", dest)
    meta = json.loads((dest / "meta.json").read_text())
    meta["featurizer"]["version"] -= 100
    meta["meta_sha256"] = meta_checksum(meta)
    (dest / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"this autotune computes v\d+; retrain it \(make universal"):
        load_universal(dest, load_hardware("mlu100"))
