"""Fuzzing the files the tool reads: every cut of an ONNX file, cuts and bit flips of a model and
of a dataset's shards. Each must be refused with a clear error (or, for ONNX, import the very
same graph); none may crash or be used silently. And a killed `synth` leaves no workers behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from autotune.errors import AutotuneError, DatasetError, ModelFileError
from autotune.hardware.config import load_hardware
from autotune.ir.graph import GraphBuilder, graph_to_dict

HW = load_hardware("mlu100")


def _tiny():
    b = GraphBuilder("tiny")
    x = b.input("x", (1, 8, 16, 16))
    y = b.conv(x, 16, 3, name="c1")
    z = b.pool(y, 2, name="p")
    w = b.conv(z, 16, 1, name="c2")
    b.fc(b.gpool(b.eltwise([z, w], name="add"), name="gap"), 10, name="fc")
    return b.build()


@pytest.mark.slow
def test_onnx_cut_at_every_byte_is_refused_or_the_same_graph(tmp_path):
    from autotune.frontends.onnx_export import export_onnx
    from autotune.frontends.onnx_import import load_onnx

    src = tmp_path / "tiny.onnx"
    export_onnx(_tiny(), src)
    data = src.read_bytes()
    ref = json.dumps(graph_to_dict(load_onnx(str(src))), sort_keys=True)
    cut = tmp_path / "cut.onnx"
    outcomes = {"refused": 0, "same": 0}
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                g = load_onnx(str(cut))
        except AutotuneError:
            outcomes["refused"] += 1
            continue
        assert json.dumps(graph_to_dict(g), sort_keys=True) == ref, f"a cut at byte {n} imported another graph"
        outcomes["same"] += 1
    assert sum(outcomes.values()) == len(data) and outcomes["refused"] > 0.9 * len(data)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from autotune.costmodel.training import train
    from autotune.synth.pipeline import run

    root = tmp_path_factory.mktemp("fuzz")
    run(HW, root / "data", 600 * len(HW.core_counts), 5, progress=False, zoo_models=[])
    train(HW, root / "data", root / "model", n_estimators=40)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["cut", "flip"])
def test_model_file_cuts_and_flips_are_refused(trained, tmp_path, mode):
    from autotune.costmodel.model import LatencyModel
    from autotune.costmodel.model_io import MODEL_FILE

    data = (trained / "model" / MODEL_FILE).read_bytes()
    rng = np.random.default_rng(0 if mode == "cut" else 1)
    for pos in sorted(rng.choice(len(data), 20, replace=False)):
        shutil.rmtree(tmp_path / "m", ignore_errors=True)
        shutil.copytree(trained / "model", tmp_path / "m")
        if mode == "cut":
            bad = data[:pos]
        else:
            bad = bytearray(data)
            bad[pos] ^= 1 << int(rng.integers(8))
            bad = bytes(bad)
        (tmp_path / "m" / MODEL_FILE).write_bytes(bad)
        with pytest.raises(ModelFileError, match="corrupted"):
            LatencyModel.load(tmp_path / "m", HW)


@pytest.mark.slow
def test_shard_bit_flips_are_refused_by_train_and_remade_by_synth(trained, tmp_path):
    from autotune.data.dataset import read_dataset
    from autotune.synth.pipeline import run

    shard = trained / "data" / "shard-00001.parquet"
    data = shard.read_bytes()
    rng = np.random.default_rng(2)
    for pos in sorted(rng.choice(len(data), 10, replace=False)):
        ws = tmp_path / f"d{pos}"
        shutil.copytree(trained / "data", ws)
        bad = bytearray(data)
        bad[pos] ^= 1 << int(rng.integers(8))
        (ws / shard.name).write_bytes(bytes(bad))
        with pytest.raises(DatasetError, match="corrupted"):
            read_dataset(ws, HW)
        (ws / "manifest.json").unlink()  # as a killed run leaves it: resume must not trust the shard
        m = run(HW, ws, 600 * len(HW.core_counts), 5, progress=False, zoo_models=[])
        assert m["labelled_shards"] == 1 and (ws / shard.name).read_bytes() == data


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux's")
def test_killing_synth_ends_its_workers(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "autotune", "synth", "--budget", str(40000 * 6), "--jobs", "2",
                             "--out", str(tmp_path / "d")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def children() -> list[int]:
        out = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == proc.pid:
                        out.append(int(p.name))
                except (OSError, ValueError, IndexError):
                    pass
        return out

    deadline = time.time() + 60
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.2)
        workers = children()
    assert len(workers) >= 2, "synth did not start its workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    def running(w: int) -> bool:
        try:
            return Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.time() + 10
    while time.time() < deadline and any(running(w) for w in workers):
        time.sleep(0.2)
    alive = [w for w in workers if running(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived their parent"
