"""Synthetic generator and labelling pipeline: determinism, validity, coverage, resume, refusal, dask, CLI."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autotune.cli import main as cli_main
from autotune.costmodel.feature_cache import dataset_features
from autotune.costmodel.features import FEATURE_NAMES, featurize
from autotune.data.dataset import ROW_COLUMNS, file_digest, read_dataset
from autotune.device.simulator import simulate
from autotune.errors import DatasetError
from autotune.frontends import zoo
from autotune.frontends.synthetic import STRUCTURES, describe, extract, generate, generate_range
from autotune.hardware.config import load_hardware
from autotune.ir.graph import graph_from_dict, graph_to_dict
from autotune.synth.pipeline import run, zoo_frame

HW = load_hardware("mlu100")
K = len(HW.core_counts)


@pytest.fixture(scope="module")
def sample():
    return generate(300, HW, seed=7)


def _dicts(graphs):
    return [graph_to_dict(g) for g in graphs]


# -- generator --------------------------------------------------------------------------------
def test_generator_is_deterministic_and_seeded(sample):
    assert _dicts(generate(300, HW, seed=7)) == _dicts(sample)
    other = _dicts(generate(300, HW, seed=8))
    assert sum(a != b for a, b in zip(other, _dicts(sample))) > 250
    # any sub-range is the same graphs, so shards can be built independently
    assert _dicts(generate_range(300, HW, 7, 120, 160)) == _dicts(sample[120:160])


def test_graphs_are_valid_standalone_groups(sample):
    for g in sample:
        back = graph_from_dict(json.loads(json.dumps(graph_to_dict(g))))  # validates shapes and edges
        assert [lyr.name for lyr in back.order] == [lyr.name for lyr in g.order]
        assert 1 <= len(g) <= HW.max_fusion
        assert all(d >= 1 for lyr in g.order for s in lyr.in_shapes + lyr.out_shapes for d in s)
        grp = g.group(0, len(g))
        assert grp.outputs and grp.inputs and set(grp.outputs) == set(g.outputs)


def test_coverage_of_the_knobs(sample):
    layers = [lyr for g in sample for lyr in g.order]
    macs = np.array([g.total_macs for g in sample], dtype=float)
    m = macs[macs > 0]
    assert m.min() < 1e5 and m.max() > 1e10
    # op count roughly log-uniform over 1e4..1e11: every decade holds a fair share of the MAC groups
    dec = np.histogram(np.log10(m), bins=np.arange(4, 12))[0] / len(m)
    assert dec.min() > 0.05, dec
    convs = [lyr for lyr in layers if lyr.op == "conv" and not lyr.depthwise and lyr.attrs.groups == 1]
    co = HW.mac_array.co
    assert any(lyr.out_channels % co for lyr in convs if lyr.out_channels > co)  # unaligned, not just small
    assert any(lyr.out_channels % co == 0 for lyr in convs)
    assert any(lyr.depthwise for lyr in layers)
    assert any(lyr.op == "conv" and 1 < lyr.attrs.groups < lyr.in_channels for lyr in layers)  # grouped
    assert {lyr.attrs.kernel[0] for lyr in layers if lyr.op == "conv"} >= {1, 3, 5, 7}
    assert any(lyr.op in ("conv", "pool") and lyr.attrs.stride[0] == 2 for lyr in layers)
    assert {"pool", "eltwise", "fc", "matmul", "concat", "softmax", "gpool", "deconv", "layout", "norm"} <= \
        {lyr.op for lyr in layers}
    assert any(lyr.op == "conv" and len(lyr.in_shape) == 3 for lyr in layers)  # 1-D convolutions
    assert {lyr.attrs.mode for lyr in layers if lyr.op == "norm"} == {"layer", "rms"}
    chans = [max(lyr.in_channels, lyr.out_channels) for lyr in layers]
    assert min(chans) <= 4 and max(chans) >= 2048 and max(chans) <= 4096
    hs = [lyr.out_shape[2] for lyr in layers if len(lyr.out_shape) == 4 and lyr.spec.channels_first]
    assert min(hs) == 1 and max(hs) >= 200 and max(hs) <= 448
    kinds = {describe(g) for g in sample}
    assert {s for _, s in kinds} == set(STRUCTURES)
    assert {src for src, _ in kinds} == {"layer", "block", "slice"}
    assert set(range(1, HW.max_fusion + 1)) <= {len(g) for g in sample}
    # mid-block slices: a residual add reading a boundary tensor, groups with several outputs
    assert any(lyr.op == "eltwise" and len(set(lyr.inputs) & set(g.inputs)) for g in sample for lyr in g.order
               if describe(g)[0] == "slice")
    assert any(len(g.outputs) > 1 for g in sample)


def test_extracted_slice_matches_the_group_in_place():
    """A standalone slice has the same features and latency as the same group inside its network,
    so synthetic slices teach the model exactly what the planner will ask."""
    for name in ("resnet50", "googlenet", "mobilenet_v2"):
        g = zoo.build(name)
        n = len(g)
        spans = [(i, min(n, i + L)) for i in range(0, n, 7) for L in (1, 3, 6, 11, 16)]
        inplace = [g.group(i, j) for i, j in spans]
        alone = [extract(g, i, j) for i, j in spans]
        alone = [a.group(0, len(a)) for a in alone]
        cores = np.repeat(HW.core_counts, len(spans))
        np.testing.assert_array_equal(featurize(inplace * K, cores, HW), featurize(alone * K, cores, HW))
        np.testing.assert_allclose(simulate(inplace * K, cores, HW), simulate(alone * K, cores, HW), rtol=1e-12)


# -- pipeline ---------------------------------------------------------------------------------
def _read(folder):
    m = json.loads((Path(folder) / "manifest.json").read_text())
    return pd.concat([pd.read_parquet(Path(folder) / s) for s in m["shards"]], ignore_index=True)


def _bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def _run(folder, **kw):
    kw.setdefault("budget", 90 * K)
    kw.setdefault("seed", 3)
    return run(HW, folder, progress=False, zoo_models=kw.pop("zoo_models", []), shard_groups=40, **kw)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    _run(folder)
    return folder


def test_rows_labels_and_columns(base):
    m = json.loads((base / "manifest.json").read_text())
    assert m["hardware_hash"] == HW.hash and m["seed"] == 3 and m["budget"] == 90 * K
    assert m["shards"] == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    assert m["shard_rows"] == [40 * K, 40 * K, 10 * K] and m["rows"] == 90 * K
    df = _read(base)
    assert len(df) == 90 * K and list(df.columns[:5]) == ROW_COLUMNS
    assert not set(FEATURE_NAMES) - {"cores", "n_layers"} & set(df.columns)  # measurements, not features
    assert (df["source"] == "simulator").all()
    assert {"group_id", "group_json", "cores", "latency_ms", "macs", "max_channels", "structure"} <= set(df.columns)
    assert m["shard_digests"] == [file_digest(base / s) for s in m["shards"]]
    assert all(sorted(v) == list(HW.core_counts) for v in df.groupby("group_id")["cores"].apply(list))
    assert df["group_id"].nunique() == 90
    # the JSON is the group: rebuilding it gives (up to measurement noise) the latency
    first = df.drop_duplicates("group_id").head(30)
    graphs = [graph_from_dict(json.loads(s)) for s in first["group_json"]]
    grp = [g.group(0, len(g)) for g in graphs]
    rows = df[df["group_id"].isin(first["group_id"])]
    clean = simulate([x for x in grp for _ in range(K)], rows["cores"].to_numpy(), HW)
    ratio = rows["latency_ms"].to_numpy() / clean
    sigma = HW.device.noise.sigma
    assert np.median(np.abs(np.log(ratio))) < 2 * sigma and ratio.std() > sigma / 3 and (ratio > 0.8).all()
    assert first["macs"].tolist() == [float(g.total_macs) for g in graphs]


def test_features_are_computed_at_training_time_and_cached(base, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(base, folder)
    ds = read_dataset(folder, HW)
    X, Xz = dataset_features(ds, HW)
    assert X.shape == (90 * K, len(FEATURE_NAMES)) and Xz is None
    cache = sorted(p.name for p in (folder / "features").iterdir())
    assert cache == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    # the same rows as featurising the groups directly, and read back from the cache unchanged
    grp = [graph_from_dict(json.loads(s)) for s in ds.rows["group_json"]]
    direct = featurize([g.group(0, len(g)) for g in grp], ds.rows["cores"].to_numpy(), HW)
    np.testing.assert_array_equal(X, direct)
    stamp = {p.name: p.stat().st_mtime_ns for p in (folder / "features").iterdir()}
    np.testing.assert_array_equal(dataset_features(read_dataset(folder, HW), HW)[0], X)
    assert stamp == {p.name: p.stat().st_mtime_ns for p in (folder / "features").iterdir()}
    # a corrupted cache file is recomputed, not trusted
    (folder / "features" / "shard-00001.parquet").write_bytes(b"PAR1 junk")
    np.testing.assert_array_equal(dataset_features(read_dataset(folder, HW), HW)[0], X)


def test_same_seed_same_bytes_other_seed_differs(base, tmp_path):
    _run(tmp_path / "again")
    assert _bytes(tmp_path / "again") == _bytes(base)
    _run(tmp_path / "other", seed=4)
    a, b = _read(base), _read(tmp_path / "other")
    assert not np.array_equal(a["latency_ms"].to_numpy(), b["latency_ms"].to_numpy())
    assert (a["group_json"] != b["group_json"]).mean() > 0.9


def test_resume_after_a_crash_gives_the_same_dataset(base, tmp_path):
    folder = tmp_path / "crashed"
    _run(folder)
    (folder / "manifest.json").unlink()
    (folder / "shard-00001.parquet").unlink()
    (folder / ".shard-00002.parquet.x1y2.tmp").write_bytes(b"half a shard")
    (folder / "shard-00000.parquet").write_bytes(b"PAR1 truncated")  # corrupt: must be remade
    m = _run(folder)
    assert m["labelled_shards"] == 2
    assert _bytes(folder) == _bytes(base)  # the stray .tmp is gone too


def test_other_settings_are_refused_unless_forced(base, tmp_path):
    folder = tmp_path / "mixed"
    _run(folder)
    before = _bytes(folder)
    for kw in ({"seed": 4}, {"budget": 120 * K}):
        with pytest.raises(DatasetError) as err:
            _run(folder, **kw)
        msg = str(err.value)
        assert "\n" not in msg and "--force" in msg and next(iter(kw)) in msg
    (folder / "manifest.json").unlink()  # shards alone still carry their settings
    with pytest.raises(DatasetError):
        _run(folder, seed=4)
    assert {k: v for k, v in _bytes(folder).items() if k != "manifest.json"} == \
        {k: v for k, v in before.items() if k != "manifest.json"}
    m = _run(folder, seed=4, force=True)
    assert m["seed"] == 4 and _bytes(folder) == _bytes(_run_other(tmp_path))


def _run_other(tmp_path):
    _run(tmp_path / "fresh4", seed=4)
    return tmp_path / "fresh4"


def test_parallel_jobs_equal_serial(base, tmp_path):
    _run(tmp_path / "j2", jobs=2)
    assert _bytes(tmp_path / "j2") == _bytes(base)


@pytest.mark.slow
def test_dask_cluster_equals_local(base, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1", protocol="tcp",
                                  dashboard_address=None) as cluster:
        _run(tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert _bytes(tmp_path / "dask") == _bytes(base)


def test_zoo_rows_and_coverage_plot(tmp_path):
    from autotune.cli.plots import plot_coverage
    from autotune.planning.planner import candidates

    m = _run(tmp_path / "z", budget=40 * K, zoo_models=["alexnet"])
    plot_coverage(tmp_path / "z", tmp_path / "cov.png", "coverage")
    z = pd.read_parquet(tmp_path / "z" / "zoo.parquet")
    g = zoo.build("alexnet")
    cands = candidates(g, HW)
    assert m["zoo"]["rows"] == len(z) == len(cands) * K
    assert {"model", "i", "j", "group_id", "group_json", "cores", "latency_ms", "source"} <= set(z.columns)
    pairs = [g.group(i, j) for i, j in zip(z["i"], z["j"])]
    np.testing.assert_allclose(z["latency_ms"], simulate(pairs, z["cores"].to_numpy(), HW))  # noise-free
    assert (tmp_path / "cov.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_zoo_frame_group_json_rebuilds_the_candidate():
    z = zoo_frame(HW, ["squeezenet1_1"]).drop_duplicates("group_id").sample(20, random_state=0)
    g = zoo.build("squeezenet1_1")
    for _, r in z.iterrows():
        alone = graph_from_dict(json.loads(r["group_json"]))
        assert [lyr.name for lyr in alone.order] == g.group(r["i"], r["j"]).names


def test_a_budget_cuts_the_last_group_at_its_first_core_counts(tmp_path):
    m = _run(tmp_path / "b", budget=40 * K + 3)
    df = _read(tmp_path / "b")
    assert m["labels"] == len(df) == 40 * K + 3 == sum(m["shard_rows"])
    last = df[df["group_id"] == df["group_id"].iloc[-1]]
    assert list(last["cores"]) == HW.core_counts[:3]


def test_a_part_whose_values_give_no_finite_latency_is_refused_and_nothing_written(tmp_path):
    """A schema-valid but absurd datasheet value (a clock of 1e-300 GHz) makes latencies past any
    kernel's: synth says so in one line and leaves no dataset behind."""
    from autotune.errors import ConfigError
    from autotune.hardware.config import parse_hardware

    d = json.loads(json.dumps(HW.model_dump(mode="json")))
    d["datasheet"]["clock_ghz"] = 1e-300
    with pytest.raises(ConfigError, match="no positive number below"):
        run(parse_hardware(d, "absurd"), tmp_path / "d", budget=4 * K, seed=0)
    assert not (tmp_path / "d" / "manifest.json").exists()


# -- spread sampling --------------------------------------------------------------------------
def test_spread_sampling_measures_each_group_once_at_balanced_core_counts(base, tmp_path):
    m = _run(tmp_path / "s", budget=90 * K + 1, sampling="spread")
    df = _read(tmp_path / "s")
    assert m["sampling"] == "spread" and m["labels"] == len(df) == 90 * K + 1 == sum(m["shard_rows"])
    assert m["shard_rows"] == [40] * (90 * K // 40) + [(90 * K + 1) % 40]
    assert df["group_id"].is_unique  # K times the distinct groups of a sobol dataset with this budget
    counts = df["cores"].value_counts()
    assert set(counts.index) == set(HW.core_counts) and counts.max() - counts.min() <= 1
    # the same Sobol groups as `sobol` sampling, in the same order, one core count each
    sobol = _read(base).drop_duplicates("group_id")
    n = len(sobol)
    assert list(df["group_id"][:n]) == list(sobol["group_id"])
    assert list(df["group_json"][:n]) == list(sobol["group_json"])
    row = df.iloc[7]
    g = graph_from_dict(json.loads(row["group_json"]))
    assert row["latency_ms"] == pytest.approx(simulate([g.group(0, len(g))], [row["cores"]], HW)[0], rel=0.5)


def test_spread_core_counts_depend_on_the_group_index_only():
    from autotune.synth.pipeline import spread_cores

    ks = [1, 2, 4, 8, 16]
    whole = np.concatenate(spread_cores(ks, 3, 0, 23))
    assert np.array_equal(np.concatenate(spread_cores(ks, 3, 6, 17)), whole[6:17])  # any shard split
    assert all(sorted(whole[b:b + 5]) == ks for b in range(0, 20, 5))  # each block of K: each count once
    assert not np.array_equal(np.concatenate(spread_cores(ks, 4, 0, 23)), whole)  # seeded


# -- active sampling --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def active(tmp_path_factory):
    folder = tmp_path_factory.mktemp("active")
    m = _run(folder, budget=200, sampling="active")
    return folder, m


@pytest.mark.slow
def test_active_sampling_spends_exactly_its_budget_in_rounds(active):
    from autotune.synth.active import ROUNDS, round_sizes

    folder, m = active
    df = _read(folder)
    assert m["sampling"] == "active" and m["labels"] == len(df) == 200
    assert m["shard_rows"] == round_sizes(200, K) and len(m["shards"]) == ROUNDS + 1
    per_group = df.groupby("group_id")["cores"].nunique()
    first = pd.read_parquet(folder / m["shards"][0])
    assert (first.groupby("group_id")["cores"].nunique() == K).all()  # the space-filling round: every core count
    assert (per_group < K).any()  # later rounds measure only where it pays
    assert not df.duplicated(["group_id", "cores"]).any()
    assert (df["kind"] != "zoo").all() and not df["group_id"].str.contains(":").any()  # never a zoo group
    # labels are the device's: a rebuilt group simulates to its label up to noise
    row = df.iloc[-1]
    g = graph_from_dict(json.loads(row["group_json"]))
    assert row["latency_ms"] == pytest.approx(simulate([g.group(0, len(g))], [row["cores"]], HW)[0], rel=0.5)


@pytest.mark.slow
def test_active_sampling_is_deterministic_and_resumes(active, tmp_path):
    folder, m = active
    again = tmp_path / "again"
    _run(again, budget=200, sampling="active")
    assert _bytes(again) == _bytes(folder)
    (again / "manifest.json").unlink()
    (again / m["shards"][3]).unlink()
    (again / m["shards"][4]).write_bytes(b"PAR1 cut")
    m2 = _run(again, budget=200, sampling="active")
    assert m2["labelled_shards"] == 2 and _bytes(again) == _bytes(folder)


def test_active_sampling_refuses_a_budget_too_small_to_start(tmp_path):
    from autotune.synth.active import min_budget

    with pytest.raises(DatasetError, match="too small for active sampling"):
        _run(tmp_path / "tiny", budget=min_budget(K) - 1, sampling="active")
    assert not (tmp_path / "tiny" / "manifest.json").exists()


# -- command line -----------------------------------------------------------------------------
@pytest.mark.parametrize("argv, word", [(["--hw", "no_such_npu"], "no_such_npu"), (["--budget", "0"], "budget"),
                                        (["--jobs", "0"], "jobs")])
def test_cli_errors_are_one_line_exit_2(argv, word, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = cli_main(["synth", "--out", str(tmp_path / "d"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and word in err and "Traceback" not in err
    assert not (tmp_path / "d" / "manifest.json").exists()

