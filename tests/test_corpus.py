"""Bad input and faults, as a new user meets them: every case ends in one clear line and a
non-zero exit (or a correct recovery), never a traceback, and no file that existed before is
changed or lost.

Each case copies a small workspace (a dataset, a trained model, an ONNX file, a hardware file),
breaks something, runs one `autotune` command in it, and checks the exit code, the words of the
one-line error and that every file that was there before is byte-identical afterwards.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from autotune.cli import main
from autotune.hardware.config import dump_hardware, load_hardware

HW = load_hardware("mlu100")
K = len(HW.core_counts)


# -- the workspace -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from autotune.costmodel.training import train
    from autotune.frontends.onnx_export import export_onnx
    from autotune.frontends.zoo import build
    from autotune.synth.pipeline import run

    root = tmp_path_factory.mktemp("corpus-base")
    run(HW, root / "data" / "mlu100", BUDGET, 3, progress=False, zoo_models=["squeezenet1_1"])
    train(HW, root / "data" / "mlu100", root / "models" / "mlu100", progress=False, n_estimators=60)
    train(HW, root / "data" / "mlu100", root / "other", seed=1, progress=False, n_estimators=60)
    export_onnx(build("squeezenet1_1"), root / "net.onnx")
    (root / "hw.yaml").write_text(dump_hardware(HW))
    return root


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@dataclass
class Case:
    cls: str  # the class of fault, for the counts
    name: str
    argv: list[str]
    code: int = 2
    words: tuple[str, ...] = ()
    setup: object = None  # callable(root) run before the command
    may_change: tuple[str, ...] = ()  # files a correct recovery is allowed to rewrite
    check: object = None  # callable(root) after the command, for recoveries
    env: dict = field(default_factory=dict)
    patch: object = None  # callable(monkeypatch): a fault injected into the code (a kill)


def _edit(path: str, fn):
    def setup(root: Path) -> None:
        p = root / path
        p.write_bytes(fn(p.read_bytes()))
    return setup


def _cut(path: str, frac: float | int):
    return _edit(path, lambda b: b[:int(frac * len(b)) if isinstance(frac, float) else frac])


def _flip(path: str, frac: float):
    def f(b: bytes) -> bytes:
        b = bytearray(b)
        b[int(frac * (len(b) - 1))] ^= 0x20
        return bytes(b)
    return _edit(path, f)


def _json_edit(path: str, fn):
    return _edit(path, lambda b: json.dumps(fn(json.loads(b))).encode())


def _write(path: str, content: bytes | str):
    def setup(root: Path) -> None:
        p = root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def _yaml(changes: dict):
    def setup(root: Path) -> None:
        data = yaml.safe_load(dump_hardware(HW))
        for path, v in changes.items():
            *parents, leaf = path.split(".")
            node = data
            for p in parents:
                node = node[p]
            node[leaf] = v
        (root / "bad.yaml").write_text(yaml.safe_dump(data))
    return setup


def _onnx(name: str, build):
    def setup(root: Path) -> None:
        import onnx

        onnx.save(build(), root / name)
    return setup


def _conv_onnx(x=(1, 3, 8, 8), w=(4, 3, 3, 3), opset=17, **attrs):
    import onnx
    from onnx import TensorProto, helper

    def build():
        t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=list(w))
        attrs.setdefault("pads", [1, 1, 1, 1])
        n = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
        g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [t])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    assert onnx
    return build


def _pool_onnx(**attrs):
    from onnx import TensorProto, helper

    def build():
        n = helper.make_node("MaxPool", ["x"], ["y"], **attrs)
        g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return build


def _hold_lock(path: str):
    """Setup that takes the writer lock of folder `path` (as a second process would) for the case."""
    def setup(root: Path) -> None:
        import fcntl

        target = root / path
        lock = target.parent / f".{target.name}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock, "a+")
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _HELD.append(f)
    return setup


_HELD: list = []
TUNE = ["tune", "--hw", "mlu100", "--model", "squeezenet1_1", "--models-dir", "models"]
TRAIN = ["train", "--hw", "mlu100", "--data", "data/mlu100", "--out", "m2"]
BUDGET = 600 * K  # two shards
SYNTH = ["synth", "--hw", "mlu100", "--budget", str(BUDGET), "--seed", "3", "--out", "data/mlu100"]
M = "models/mlu100/model.ubj"
META = "models/mlu100/meta.json"
SHARD = "data/mlu100/shard-00001.parquet"
MAN = "data/mlu100/manifest.json"


def _cases() -> list[Case]:
    c: list[Case] = []
    # 1. corrupt models: never handed to XGBoost's native loader
    for frac in (0, 1, 7, 100, 0.5, -1):
        cut = frac if frac != -1 else None
        setup = _edit(M, lambda b, n=cut: b[:-1]) if cut is None else _cut(M, cut)
        c.append(Case("model", f"model cut at {frac}", TUNE, words=("model.ubj", "corrupted"), setup=setup))
    for frac in (0.0, 0.1, 0.37, 0.64, 0.99):
        c.append(Case("model", f"model bit flip at {frac}", TUNE, words=("corrupted",), setup=_flip(M, frac)))
    c += [
        Case("model", "meta not JSON", TUNE, words=("meta.json", "corrupted"), setup=_write(META, "{not json")),
        Case("model", "meta a list", TUNE, words=("meta.json", "corrupted"), setup=_write(META, "[1, 2]")),
        Case("model", "meta edited", TUNE, words=("checksum",),
             setup=_json_edit(META, lambda m: {**m, "best_iteration": 1})),
        Case("model", "meta missing", TUNE, words=("no trained model",), setup=lambda r: (r / META).unlink()),
        Case("model", "model missing", TUNE, words=("no trained model",), setup=lambda r: (r / M).unlink()),
        Case("model", "model is a folder", TUNE, words=("model",),
             setup=lambda r: ((r / M).unlink(), (r / M).mkdir())),
    ]
    # 2. model and metadata written apart
    c.append(Case("pair", "model of another training beside this meta", TUNE, words=("does not belong",),
                  setup=lambda r: shutil.copy(r / "other" / "model.ubj", r / M)))
    c.append(Case("pair", "killed between the two renames of a publication", TUNE, code=0,
                  setup=lambda r: (r / "models" / "mlu100").rename(r / "models" / ".mlu100.old-99"),
                  may_change=("models/",), check=lambda r: (r / M).is_file()))
    # 3. corrupt shards
    c += [
        Case("shard", "shard cut short", TRAIN, words=("shard-00001", "corrupted"), setup=_cut(SHARD, 0.6)),
        Case("shard", "shard bit flip", TRAIN, words=("shard-00001", "corrupted"), setup=_flip(SHARD, 0.5)),
        Case("shard", "shard missing", TRAIN, words=("missing shard",), setup=lambda r: (r / SHARD).unlink()),
        Case("shard", "zoo.parquet bit flip", TRAIN, words=("zoo.parquet", "corrupted"),
             setup=_flip("data/mlu100/zoo.parquet", 0.5)),
        Case("shard", "resume after a kill, with a flipped shard", SYNTH, code=0,
             setup=lambda r: ((r / MAN).unlink(), _flip(SHARD, 0.5)(r)), may_change=("data/",),
             check=lambda r: _same_as_base(r, "data/mlu100")),
    ]
    # 4. a manifest is checked, not trusted
    def man(fn):
        return _json_edit(MAN, fn)
    c += [
        Case("manifest", "shard outside the folder", TRAIN, words=("not a shard file name",),
             setup=man(lambda m: {**m, "shards": ["../../../../etc/passwd"] + m["shards"][1:]})),
        Case("manifest", "a shard listed twice", TRAIN, words=("listed twice",),
             setup=man(lambda m: {**m, "shards": m["shards"] + m["shards"][:1],
                                  "shard_rows": m["shard_rows"] + m["shard_rows"][:1],
                                  "shard_digests": m["shard_digests"] + m["shard_digests"][:1],
                                  "rows": m["rows"] + m["shard_rows"][0]})),
        Case("manifest", "zoo.parquet as a training shard", TRAIN, words=("not a shard file name",),
             setup=man(lambda m: {**m, "shards": ["zoo.parquet"] + m["shards"][1:]})),
        Case("manifest", "false total", TRAIN, words=("not the sum",), setup=man(lambda m: {**m, "rows": 5})),
        Case("manifest", "false shard rows", TRAIN, words=("rows", "manifest says"),
             setup=man(lambda m: {**m, "shard_rows": [m["shard_rows"][0] - 1] + m["shard_rows"][1:],
                                  "rows": m["rows"] - 1})),
        Case("manifest", "manifest a list", TRAIN, words=("not a JSON object",), setup=_write(MAN, "[]")),
        Case("manifest", "manifest without shards", TRAIN, words=("shards",),
             setup=man(lambda m: {k: v for k, v in m.items() if k != "shards"})),
        Case("manifest", "manifest garbage", TRAIN, words=("not JSON",), setup=_write(MAN, "\x00\x01")),
        Case("manifest", "shard digest edited", TRAIN, words=("corrupted",),
             setup=man(lambda m: {**m, "shard_digests": ["0" * 16] + m["shard_digests"][1:]})),
    ]
    # 5. one writer at a time; --force never deletes before the new dataset exists
    c += [
        Case("lock", "synth while another writes", SYNTH, words=("another autotune process",),
             setup=_hold_lock("data/mlu100")),
        Case("lock", "train while another writes", TRAIN, words=("another autotune process",),
             setup=_hold_lock("m2")),
        Case("lock", "--force killed mid-way keeps the old dataset", SYNTH[:6] + ["7"] + SYNTH[7:] + ["--force"],
             code=130, words=("interrupted",), patch=_interrupt_at_shard(1), may_change=("data/.mlu100",),
             check=lambda r: (r / "data" / ".mlu100.building" / "shard-00000.parquet").is_file()),
    ]
    # 6. ONNX attributes and dimensions
    tune_onnx = ["tune", "--hw", "mlu100", "--model", "bad.onnx", "--models-dir", "models"]
    for name, build, words in [
        ("stride 0", _conv_onnx(strides=[0, 1]), ("strides",)),
        ("dilation 0", _conv_onnx(dilations=[1, 0]), ("dilations",)),
        ("negative pads", _conv_onnx(pads=[-1, 0, 0, 0]), ("pads",)),
        ("zero dimension", _conv_onnx(x=(1, 3, 0, 8)), ("dimension 2 = 0",)),
        ("negative dimension", _conv_onnx(x=(1, 3, -8, 8)), ("dimension 2 = -8",)),
        ("opset 999", _conv_onnx(opset=999), ("opset 999",)),
        ("channel mismatch", _conv_onnx(x=(1, 5, 8, 8)), ("expects 3 input channels", "has 5")),
        ("1e9 channels", _conv_onnx(x=(1, 10**9, 8, 8), w=(4, 10**9, 1, 1), pads=[0, 0, 0, 0]), ("over",)),
        ("1e9 spatial", _conv_onnx(x=(1, 3, 10**9, 10**9), w=(4, 3, 1, 1), pads=[0, 0, 0, 0]), ("over",)),
        ("pool kernel 0", _pool_onnx(kernel_shape=[0, 2]), ("kernel_shape",)),
        ("pool stride 0", _pool_onnx(kernel_shape=[2, 2], strides=[0, 2]), ("strides",)),
    ]:
        c.append(Case("onnx", name, tune_onnx, words=words, setup=_onnx("bad.onnx", build)))
    c += [
        Case("onnx", "garbage bytes", tune_onnx, words=("not a valid ONNX",), setup=_write("bad.onnx", b"\xff" * 64)),
        Case("onnx", "empty file", tune_onnx, words=("empty",), setup=_write("bad.onnx", b"")),
        Case("onnx", "cut in half", tune_onnx, words=("bad.onnx",),
             setup=lambda r: (r / "bad.onnx").write_bytes((r / "net.onnx").read_bytes()[:5000])),
        Case("onnx", "a folder", tune_onnx, words=("not a file",), setup=lambda r: (r / "bad.onnx").mkdir()),
        Case("onnx", "missing", tune_onnx, words=("no such file",)),
    ]
    # 7. hardware YAML
    study = ["study", "--hw", "bad.yaml", "--out", "r"]
    for name, ch, words in [
        ("infinite bandwidth", {"datasheet.dram_gbps": math.inf}, ("datasheet.dram_gbps",)),
        ("NaN launch", {"device.launch_us": math.nan}, ("device.launch_us",)),
        ("1e23 cores", {"datasheet.cores": 10**23}, ("datasheet.cores",)),
        ("2^63 on-chip", {"datasheet.onchip_kib": 2**63}, ("datasheet.onchip_kib",)),
        ("unknown field", {"device.turbo": True}, ("device.turbo", "unknown field")),
        ("wrong type", {"datasheet.clock_ghz": "fast"}, ("datasheet.clock_ghz",)),
        ("datasheet value in the device section", {"device.cores": 32}, ("device.cores",)),
        ("no device section", {"device": None}, ("no device: section",)),
    ]:
        c.append(Case("yaml", name, study, words=words, setup=_yaml(ch)))
    c += [
        Case("yaml", "duplicate key", study, words=("appears twice",),
             setup=_write("bad.yaml", dump_hardware(HW) + "name: again\n")),
        Case("yaml", "binary file", study, words=("not a text file",), setup=_write("bad.yaml", b"\xff\xfe\x00\x81")),
        Case("yaml", "deep nesting", study, words=("bad.yaml",), setup=_write("bad.yaml", "[" * 5000 + "]" * 5000)),
        Case("yaml", "not a mapping", study, words=("mapping",), setup=_write("bad.yaml", "- 1\n- 2\n")),
        Case("yaml", "missing file", ["study", "--hw", "none.yaml"], words=("file not found",)),
    ]
    # 8. paths and ranges, refused before any long work
    c += [
        Case("paths", "train --out is a file", ["train", "--hw", "mlu100", "--data", "data/mlu100", "--out", "hw.yaml"],
             words=("is a file",)),
        Case("paths", "synth --out is a file", ["synth", "--hw", "mlu100", "--budget", "60", "--out", "hw.yaml"],
             words=("is a file",)),
        Case("paths", "tune --out is a folder", TUNE + ["--out", "models"], words=("is a folder",)),
        Case("paths", "eval --json is a folder", ["eval", "--hw", "mlu100", "--models", "squeezenet1_1",
                                                   "--models-dir", "models", "--json", "data"], words=("is a folder",)),
        Case("paths", "output under a file", TUNE + ["--out", "hw.yaml/plan.json"], words=("not a folder",)),
        Case("paths", "train --json is a folder", TRAIN + ["--json", "data"], words=("is a folder",)),
        Case("paths", "seed -1", SYNTH[:-4] + ["--seed", "-1", "--out", "d2"], words=("--seed", "outside")),
        Case("paths", "seed 2^33", SYNTH[:-4] + ["--seed", str(2**33), "--out", "d2"], words=("--seed", "outside")),
        Case("paths", "budget 1e12", ["synth", "--budget", str(10**12), "--out", "d2"], words=("--budget", "outside")),
        Case("paths", "budget not a number", ["synth", "--budget", "1e12", "--out", "d2"],
             words=("--budget", "not a whole number")),
        Case("paths", "batch 0", TUNE + ["--batch", "0"], words=("--batch",)),
        Case("paths", "unknown model", TUNE[:4] + ["resnet5"] + TUNE[5:], words=("unknown model",)),
        Case("paths", "unreachable scheduler in train", TRAIN + ["--scheduler", "tcp://127.0.0.1:9"],
             words=("cannot reach dask scheduler",), env={"AUTOTUNE_SCHEDULER_TIMEOUT": "2s"}),
        Case("paths", "unreachable scheduler in synth", SYNTH[:-2] + ["--out", "d2", "--scheduler", "tcp://127.0.0.1:9"],
             words=("cannot reach dask scheduler",), env={"AUTOTUNE_SCHEDULER_TIMEOUT": "2s"}),
    ]
    # 9. side effects: outputs go where they are asked to, nowhere else
    c += [
        Case("side", "synth writes only into --out", ["synth", "--hw", "mlu100", "--budget", "60", "--out", "d3"],
             code=0, check=lambda r: not (r / "reports").exists() and (r / "d3" / "coverage.png").is_file()),
        Case("side", "train writes only into --out", TRAIN, code=0,
             check=lambda r: not (r / "reports").exists() and (r / "m2" / "predicted_vs_simulated.png").is_file()),
    ]
    return c


def _interrupt_at_shard(k: int):
    """A Ctrl-C while shard k is being labelled."""
    def patch(monkeypatch) -> None:
        import autotune.synth.pipeline as pipeline

        real = pipeline.label_shard

        def label_shard(i, hw, settings):
            if i == k:
                raise KeyboardInterrupt
            return real(i, hw, settings)

        monkeypatch.setattr(pipeline, "label_shard", label_shard)
    return patch


def _same_as_base(root: Path, folder: str) -> bool:
    """The shards remade on resume are byte-identical to those of an undisturbed run."""
    base = root.parent / "base-copy" / folder
    return {n: b for n, b in _snapshot(root / folder).items() if n.startswith("shard-")} == \
        {n: b for n, b in _snapshot(base).items() if n.startswith("shard-")}


CASES = _cases()
#: The first case of each class but `side` (whose cases run synth and train whole) runs in the fast
#: suite (`make test`), the rest with the slow tests.
_FIRST = {id(next(c for c in CASES if c.cls == cls)) for cls in dict.fromkeys(c.cls for c in CASES) if cls != "side"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=() if id(c) in _FIRST else pytest.mark.slow) for c in CASES],
                         ids=[f"{c.cls}: {c.name}" for c in CASES])
def test_corpus(case: Case, base: Path, tmp_path: Path, monkeypatch, capsys):
    root = tmp_path / "ws"
    shutil.copytree(base, root)
    shutil.copytree(base, tmp_path / "base-copy")
    monkeypatch.chdir(root)
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    if case.setup is not None:
        case.setup(root)
    if case.patch is not None:
        case.patch(monkeypatch)
    before = _snapshot(root)
    try:
        rc = main(case.argv)
    finally:
        while _HELD:
            _HELD.pop().close()
    err = capsys.readouterr().err
    assert rc == case.code, err
    assert "Traceback" not in err
    if case.code:
        lines = [ln for ln in err.split("\n") if ln and "\r" not in ln]  # progress bars redraw with \r
        assert len(lines) == 1 and lines[0].startswith("autotune"), err
        for w in case.words:
            assert w in lines[0], (w, err)
    after = _snapshot(root)
    for name, data in before.items():
        if any(name.startswith(p) for p in case.may_change):
            continue
        assert after.get(name) == data, f"{name} was changed or lost"
    if case.check is not None:
        assert case.check(root)


def test_case_counts_by_class():
    """The corpus covers every class of the issue, with these counts (reported in the closing note)."""
    counts = Counter(c.cls for c in CASES)
    assert set(counts) == {"model", "pair", "shard", "manifest", "lock", "onnx", "yaml", "paths", "side"}
    assert sum(counts.values()) >= 70, counts
