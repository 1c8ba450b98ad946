"""Every file `export-groups` writes is standard ONNX that ONNX Runtime loads and runs, with the output
shapes of the IR, and a pure-view candidate (reshapes only) is free, never missing, when plans are
scored on a measured table."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from autotune.frontends import zoo
from autotune.frontends.onnx_export import Exporter, graph_to_onnx
from autotune.frontends.onnx_import import DOMAIN
from autotune.hardware.config import load_hardware
from autotune.ir.graph import Attrs, Graph, GraphBuilder, Layer
from autotune.synth.measure import measure
from autotune.synth.profiles import export_groups, import_profile, measured_table, read_export, write_profile

ort = pytest.importorskip("onnxruntime", reason="running the exported files needs onnxruntime "
                                                "(pip install 'autotune[onnxruntime]')")
onnx = pytest.importorskip("onnx", reason="reading the exported files needs onnx")

HW = load_hardware("mlu100")
#: Tensors (inputs, intermediates, outputs) a file may hold to be run here, not only loaded.
RUN_BYTES = 256 << 20
#: Seed of the synthetic export: its 24 groups hold transposes, rotate-halves and repeat_kv expands.
SYNTH_SEED, SYNTH_GROUPS = 3, 24


def _session(model):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _shape(vi) -> tuple[int, ...]:
    return tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)


def _tensor_bytes(model) -> int:
    g = model.graph
    return sum(4 * math.prod(_shape(v)) for v in [*g.input, *g.value_info, *g.output])


def check_runs(model, want: dict[str, tuple[int, ...]] | None = None) -> None:
    """`model` is standard ONNX, passes the full checker, loads in ONNX Runtime and (when small enough)
    runs on random inputs, every output of its declared shape (and of `want`'s, if given)."""
    assert not [n.name for n in model.graph.node if n.domain not in ("", "ai.onnx")]
    assert {op.domain for op in model.opset_import} <= {"", "ai.onnx"}
    onnx.checker.check_model(model, full_check=True)
    sess = _session(model)
    if _tensor_bytes(model) > RUN_BYTES:
        return  # loaded; too big to run on a test machine
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([int(d) for d in i.shape]).astype(np.float32) for i in sess.get_inputs()}
    outs = sess.run(None, feeds)
    declared = {o.name: _shape(o) for o in model.graph.output}
    for o, got in zip(sess.get_outputs(), outs):
        assert got.shape == declared[o.name], o.name
        if want is not None:
            assert got.shape == want[o.name], o.name


# -- every layer kind that has no one-node ONNX form ---------------------------------------------------
def _one(op: str, in_shapes: list[tuple[int, ...]], **attrs) -> Graph:
    b = GraphBuilder("t")
    b.add(op, [b.input(f"x{k}", s) for k, s in enumerate(in_shapes)], "L", **attrs)
    return b.build()


def _multi(op: str, x: tuple[int, ...], outs: list[tuple[int, ...]], **attrs) -> Graph:
    lyr = Layer("L", op, ("x0",), tuple(f"y{k}" for k in range(len(outs))), (x,), tuple(outs), Attrs(**attrs))
    return Graph("t", [lyr], {"x0": x})


KINDS = {
    "transpose merging axes": lambda: _one("layout", [(2, 8, 3, 5)], shape=(2, 15, 8), mode="transpose"),
    "transpose splitting axes": lambda: _one("layout", [(2, 15, 8)], shape=(2, 8, 3, 5), mode="transpose"),
    "transpose of a square": lambda: _one("layout", [(1, 16, 16)], shape=(1, 16, 16), mode="transpose"),
    "transpose of unit axes": lambda: _one("layout", [(1, 1, 1, 7)], shape=(1, 1, 1, 7), mode="transpose"),
    "rotate_half": lambda: _one("layout", [(1, 2, 5, 8)], shape=(1, 2, 5, 8), mode="rotate_half"),
    "rotate_half odd": lambda: _one("layout", [(1, 2, 5, 7)], shape=(1, 2, 5, 7), mode="rotate_half"),
    "repeat_kv expand": lambda: _one("layout", [(1, 2, 5, 4)], shape=(1, 8, 5, 4), mode="expand"),
    "expand to a higher rank": lambda: _one("layout", [(5, 4)], shape=(2, 5, 4), mode="expand"),
    "expand by no whole repeat": lambda: _one("layout", [(1, 3, 5)], shape=(1, 4, 5), mode="expand"),
    "gather a class token": lambda: _one("layout", [(1, 197, 16)], shape=(1, 16), mode="gather"),
    "gather along an axis": lambda: _one("layout", [(1, 10, 16)], shape=(1, 4, 16), mode="gather"),
    "embedding lookup": lambda: _one("layout", [(1, 12)], shape=(1, 12, 16), mode="gather"),
    "gather of another shape": lambda: _one("layout", [(3, 10, 16)], shape=(5, 7), mode="gather"),
    "pad": lambda: _one("layout", [(1, 3, 5, 5)], shape=(1, 3, 7, 6), mode="pad"),
    "tile": lambda: _one("layout", [(1, 3, 5)], shape=(2, 3, 10), mode="tile"),
    "slice to another rank": lambda: _one("layout", [(1, 3, 5)], shape=(1, 10), mode="slice"),
    "depth to space": lambda: _one("layout", [(1, 8, 3, 3)], shape=(1, 2, 6, 6), mode="depthtospace"),
    "concat of a constant on two axes": lambda: _one("layout", [(1, 8, 3)], shape=(1, 9, 4), mode="concat"),
    "layout of two inputs": lambda: _one("layout", [(4, 8), (4, 8)], shape=(4, 8), mode="gather"),
    "opaque": lambda: _one("opaque", [(1, 8, 3, 3)], shape=(1, 5), mode="topk"),
    "opaque growing": lambda: _one("opaque", [(2, 3), (3,)], shape=(4, 5, 6), mode="weird"),
    "opaque of two outputs": lambda: _multi("opaque", (1, 8, 6), [(1, 8, 3), (1, 8, 3)], mode="split", shape=(1, 8, 3)),
    "lstm": lambda: _multi("rnn", (5, 2, 6), [(1, 2, 4), (5, 1, 2, 4), (1, 2, 4)], mode="lstm", out_channels=4),
    "bidirectional gru": lambda: _multi("rnn", (5, 2, 6), [(2, 2, 4), (5, 2, 2, 4)], mode="gru", out_channels=4,
                                        groups=2),
    "rnn": lambda: _multi("rnn", (5, 2, 6), [(1, 2, 4), (5, 1, 2, 4)], mode="rnn", out_channels=4, bias=False),
    "mish": lambda: _one("act", [(2, 8)], mode="mish"),
    "exp": lambda: _one("act", [(2, 8)], mode="exp"),
    "isnan": lambda: _one("act", [(2, 8)], mode="isnan"),
    "trilu": lambda: _one("act", [(2, 8, 8)], mode="trilu"),
    "conv with mish": lambda: _one("conv", [(1, 3, 8, 8)], out_channels=4, kernel=(3, 3), pads=(1, 1, 1, 1),
                                   act="mish"),
    "pow": lambda: _one("eltwise", [(2, 8), (2, 8)], mode="pow"),
    "mod": lambda: _one("eltwise", [(2, 8), (1, 8)], mode="mod"),
    "equal": lambda: _one("eltwise", [(2, 8), (2, 8)], mode="equal"),
    "equal to a constant": lambda: _one("eltwise", [(2, 8)], mode="equal"),
    "where": lambda: _one("eltwise", [(2, 8), (2, 8), (1, 8)], mode="where"),
    "mul of three": lambda: _one("eltwise", [(2, 8), (2, 8), (2, 1)], mode="mul"),
    "fc on a vector": lambda: _one("fc", [(8,)], out_channels=4),
    "global lp pool": lambda: _one("gpool", [(1, 3, 5, 5)], mode="lp"),
    "group norm": lambda: _one("norm", [(1, 4, 5, 5)], mode="group"),
    "batch norm of a vector": lambda: _one("norm", [(8,)], mode="batch"),
    "lrn of rank 3": lambda: _one("norm", [(1, 8, 5)], mode="lrn"),
    "ceil-mode pool past the input": lambda: _one("pool", [(1, 3, 5, 5)], kernel=(2, 2), stride=(2, 2),
                                                  pads=(1, 1, 1, 1), mode="avg", ceil_mode=True),
    "dilated average pool": lambda: _one("pool", [(1, 3, 9, 9)], kernel=(3, 3), dilation=(2, 2), mode="avg"),
    "resize of another mode": lambda: _one("resize", [(1, 3, 4, 4)], shape=(1, 3, 8, 8), mode="area"),
    "resize to another rank": lambda: _one("resize", [(1, 3, 4, 4)], shape=(1, 3, 8), mode="bilinear"),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_layer_kind_has_a_standard_form_of_its_shape(kind):
    """Each kind the round-trip export writes as an `ai.autotune` node runs in ONNX Runtime when
    written standard, every output of the layer's shape."""
    g = KINDS[kind]()
    ex = Exporter(g)
    ex.model()
    assert any(n.domain == DOMAIN for n in ex.nodes), "no longer a custom node: drop the case"
    check_runs(graph_to_onnx(g, standard=True), {t: g.shape_of(t) for t in g.outputs})
    check_runs(graph_to_onnx(g, weights=True, standard=True))


# -- whole exports ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    export_groups(HW, root / "synthetic", n_groups=SYNTH_GROUPS, seed=SYNTH_SEED)
    for net in ("vit_b16", "bert_base"):
        export_groups(HW, root / net, model=net)
    return root


def _needing_a_form(net: str) -> set[tuple[int, int]]:
    """Layer positions of `net` the round-trip export writes as custom nodes, as (i, i + 1) spans."""
    g = zoo.build(net)
    ex = Exporter(g)
    ex.model()
    return {(g.position(n.name), g.position(n.name) + 1) for n in ex.nodes if n.domain == DOMAIN}


def _sample(folder, net: str | None) -> list[str]:
    """The export's files to run: every synthetic group; of a network, every candidate holding a layer
    with no one-node form, three pure views and 20 others at random."""
    _, groups, _ = read_export(folder)
    if net is None:
        return list(groups["onnx_file"])
    need = _needing_a_form(net)
    spans = [tuple(map(int, re.fullmatch(r".*:(\d+)-(\d+)", gid).groups())) for gid in groups["group_id"]]
    hit = [any(i <= a and b <= j for a, b in need) for i, j in spans]
    views = set(json.loads((folder / "export.json").read_text())["views"][:3])
    chosen = [f for f, h, gid in zip(groups["onnx_file"], hit, groups["group_id"]) if h or gid in views]
    rest = [f for f in groups["onnx_file"] if f not in set(chosen)]
    assert sum(hit) > 0 and len(rest) > 20
    return chosen + list(np.random.default_rng(0).choice(rest, 20, replace=False))


@pytest.mark.slow
@pytest.mark.parametrize("which", ["synthetic", "vit_b16", "bert_base"])
def test_exported_files_load_and_run_in_onnxruntime(exports, which):
    folder = exports / which
    _, groups, _ = read_export(folder)
    shapes = {}
    for f, js in zip(groups["onnx_file"], groups["group_json"]):
        d = json.loads(js)
        shapes[f] = {t: tuple(s) for lyr in d["layers"] for t, s in zip(lyr["outputs"], lyr["out_shapes"])
                     if t in d["outputs"]}
    files = _sample(folder, None if which == "synthetic" else which)
    if which == "synthetic":
        assert groups["group_json"].str.contains('"op":"layout"').any()
    for f in files:
        check_runs(onnx.load(str(folder / f)), shapes[f])


@pytest.mark.slow
def test_no_exported_file_holds_an_autotune_node(exports):
    """No file of any export names the `ai.autotune` domain, in a node or in its opset imports."""
    for which in ("synthetic", "vit_b16", "bert_base"):
        _, groups, _ = read_export(exports / which)
        for f in groups["onnx_file"]:
            assert DOMAIN.encode() not in (exports / which / f).read_bytes(), f


# -- pure views --------------------------------------------------------------------------------------------
NET = "squeezenet1_1"  # its flatten before the classifier is a pure-view candidate


def _span(gid: str) -> tuple[int, int]:
    i, j = re.fullmatch(r".*:(\d+)-(\d+)", gid).groups()
    return int(i), int(j)


def test_a_pure_view_is_free_not_missing(tmp_path):
    """The export names its pure views (export.json, README); a profile without them imports, and
    the measured table scores every strategy with each view at 0 ms; a view measured keeps its time."""
    from autotune.planning.evaluation import evaluate

    folder = tmp_path / NET
    info = export_groups(HW, folder, model=NET)
    _, groups, man = read_export(folder)
    views = info["views"]
    assert views and set(views) <= set(groups["group_id"])
    for gid, js in zip(groups["group_id"], groups["group_json"]):
        ops = {lyr["op"] for lyr in json.loads(js)["layers"]}
        assert (gid in views) == (ops == {"reshape"}), gid
    readme = (folder / "README.md").read_text()
    assert "`NET:i-j`" in readme and "j exclusive" in readme and "free (0 ms)" in readme and views[0] in readme
    frame, _ = measure(folder, "simulator", HW, seed=0)
    write_profile(folder / "measured.csv", frame[~frame["group_id"].isin(views)])
    assert import_profile(folder / "measured.csv", HW, tmp_path / "data", folder)["rows"] > 0
    _, table = measured_table(folder, HW)
    assert set(table.ms_by_span) == {_span(g) for g in groups["group_id"]}
    for v in views:
        assert not table.ms_by_span[_span(v)].any()
    res = evaluate(zoo.build(NET), HW, None, ["none", "cores-only", "fuse-max", "greedy", "oracle"], table=table)
    assert all(np.isfinite(s["ms"]) and s["ms"] > 0 for s in res.values())
    assert res["oracle"]["ms"] <= min(s["ms"] for s in res.values()) + 1e-12
    write_profile(folder / "all.csv", frame)
    _, full = measured_table(folder, HW, folder / "all.csv")
    got = pd.Series({(r.group_id, r.cores): r.latency_ms for r in frame.itertuples()})
    v = views[0]
    assert full.ms_by_span[_span(v)][0] == pytest.approx(got[(v, HW.core_counts[0])])
