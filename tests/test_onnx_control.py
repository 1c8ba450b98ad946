"""Control flow resolved at import (autotune/frontends/onnx_control.py): a Loop with a constant trip
count unrolls, the tensor sequence it builds folds into the tensors it holds, and an If on a shape
becomes its branch. Each rewrite is checked against onnxruntime (same outputs before and after) and
through the importer (the layers and MACs the straight-line code has). Also the grouped fc that a
matmul with a weight per batch index (a relative-position table) maps to."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from autotune.frontends import onnx_control, onnx_import, onnx_prepare
from autotune.frontends.onnx_import import load_onnx

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _model(nodes, inputs, outputs, inits=(), opset: int = 17):
    g = helper.make_graph(list(nodes), "m", [helper.make_tensor_value_info(*i) for i in inputs],
                          [helper.make_tensor_value_info(*o) for o in outputs], initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _init(name: str, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _run(model, feeds: dict) -> list:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _same_results(model, feeds: dict) -> onnx.ModelProto:
    """`model` rewritten by onnx_control.unroll, after checking both give the same outputs."""
    want = _run(model, feeds)
    new = onnx.ModelProto()
    new.CopyFrom(model)
    onnx_control.unroll(new)
    got = _run(new, feeds)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        a, b = (a, b) if isinstance(a, list) else ([a], [b])  # a sequence output: its tensors
        assert len(a) == len(b)
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=1e-6)
    return new


def _save(tmp_path, model, name: str) -> str:
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def _strict(path: str, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no host cut, no opaque layer
        return load_onnx(path, strict=True, **kw)


def _relu_chain_loop(trips: int, opset: int = 17):
    """x (1, 6, 8) carried through `trips` iterations of relu(x @ w), each stacked as a scan output."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["xin", "w"], ["mm"]), helper.make_node("Relu", ["mm"], ["xout"]),
         helper.make_node("Identity", ["xout"], ["scan"]), helper.make_node("Identity", ["cin"], ["cout"])],
        "body", [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cin", B, []),
                 helper.make_tensor_value_info("xin", F, None)],
        [helper.make_tensor_value_info("cout", B, []), helper.make_tensor_value_info("xout", F, None),
         helper.make_tensor_value_info("scan", F, None)])
    nodes = [helper.make_node("Loop", ["m", "go", "x"], ["last", "steps"], name="loop", body=body)]
    inits = [_init("m", trips, np.int64), _init("go", True, np.bool_),
             _init("w", np.random.default_rng(0).standard_normal((8, 8)))]
    return _model(nodes, [("x", F, [1, 6, 8])], [("last", F, None), ("steps", F, None)], inits, opset)


@pytest.mark.parametrize("opset", [11, 17])
def test_a_constant_trip_loop_unrolls_into_the_layers_it_runs(tmp_path, opset):
    """Three iterations of relu(x @ w) are three fc layers, and the scan output stacks them: the same
    results in onnxruntime, and the MACs of three fcs (a scan output used to stop the import)."""
    model = _relu_chain_loop(3, opset)
    x = np.random.default_rng(1).standard_normal((1, 6, 8)).astype(np.float32)
    new = _same_results(model, {"x": x})
    assert "Loop" not in {p.op_type for p in new.graph.node}
    g = _strict(_save(tmp_path, model, "loop.onnx"))
    fcs = [lyr for lyr in g.order if lyr.op.startswith("fc")]
    assert len(fcs) == 3 and all(lyr.out_shape == (1, 6, 8) for lyr in fcs)
    assert g.total_macs == 3 * 6 * 8 * 8
    assert g.producer["steps"].out_shape == (3, 1, 6, 8)


def _list_of_slices(tail_op: str = "conv"):
    """MViT's pooled attention as torch scripts it: a constant-trip Loop that appends Slices of x to
    a sequence (bounds from a constant table by the iteration number), one more Slice inserted after
    it, and SequenceAt reading them back; each read feeds a conv (or the sequence leaves the graph)."""
    body = helper.make_graph(
        [helper.make_node("Gather", ["bounds", "i"], ["lo"]), helper.make_node("Add", ["i", "one"], ["i1"]),
         helper.make_node("Gather", ["bounds", "i1"], ["hi"]),
         helper.make_node("Slice", ["x", "lo", "hi", "ax"], ["part"]),
         helper.make_node("SequenceInsert", ["sin", "part"], ["sout"]),
         helper.make_node("Identity", ["cin"], ["cout"])],
        "body", [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("cin", B, []),
                 onnx.helper.make_tensor_sequence_value_info("sin", F, None)],
        [helper.make_tensor_value_info("cout", B, []), onnx.helper.make_tensor_sequence_value_info("sout", F, None)])
    nodes = [helper.make_node("SequenceEmpty", [], ["empty"], dtype=F),
             helper.make_node("Loop", ["m", "go", "empty"], ["seq"], name="loop", body=body),
             helper.make_node("Slice", ["x", "lo2", "hi2", "ax"], ["extra"], name="slice_extra"),
             helper.make_node("SequenceInsert", ["seq", "extra", "zero"], ["seq2"], name="insert_front")]
    inits = [_init("m", 2, np.int64), _init("go", True, np.bool_), _init("bounds", [[0], [2], [6]], np.int64),
             _init("one", 1, np.int64), _init("ax", [1], np.int64), _init("lo2", [6], np.int64),
             _init("hi2", [8], np.int64), _init("zero", 0, np.int64), _init("first", 0, np.int64),
             _init("last", -1, np.int64), _init("w", np.ones((5, 2, 1, 1)))]
    outputs = [("seq2", F, None)]
    if tail_op == "conv":
        nodes += [helper.make_node("SequenceAt", ["seq2", "first"], ["a"], name="at_first"),
                  helper.make_node("SequenceAt", ["seq2", "last"], ["b"], name="at_last"),
                  helper.make_node("Conv", ["a", "w"], ["ya"], name="conv_a", kernel_shape=[1, 1]),
                  helper.make_node("SequenceLength", ["seq2"], ["n"], name="len"),
                  helper.make_node("ConcatFromSequence", ["seq2"], ["cat"], name="cat", axis=1)]
        outputs = [("ya", F, None), ("b", F, None), ("n", I64, None), ("cat", F, None)]
    model = _model(nodes, [("x", F, [1, 8, 4, 4])], outputs, inits)
    if tail_op != "conv":
        model.graph.output[0].CopyFrom(helper.make_tensor_sequence_value_info("seq2", F, None))
    return model


def test_a_list_built_by_a_constant_trip_loop_folds_into_its_tensors(tmp_path):
    """The loop unrolls, the sequence folds (SequenceAt reads the tensor inserted there, its length
    is a constant, ConcatFromSequence a Concat), onnxruntime agrees, and the conv reads a slice of
    the activation: no op is left to the host (the Slice in the body used to send it there)."""
    model = _list_of_slices()
    x = np.random.default_rng(2).standard_normal((1, 8, 4, 4)).astype(np.float32)
    new = _same_results(model, {"x": x})
    assert not {p.op_type for p in new.graph.node} & (onnx_control.SEQUENCE_OPS | {"Loop"})
    g = _strict(_save(tmp_path, model, "slices.onnx"))
    assert [lyr.out_shape for lyr in g.order if lyr.op == "conv"] == [(1, 5, 4, 4)]
    assert g.total_macs == 5 * 2 * 16


def test_a_sequence_that_leaves_the_graph_is_left_as_it_is():
    """A sequence that is a graph output cannot become tensors: the loop still unrolls (onnxruntime
    agrees), and every sequence op stays."""
    new = _same_results(_list_of_slices(tail_op="none"),
                        {"x": np.random.default_rng(3).standard_normal((1, 8, 4, 4)).astype(np.float32)})
    ops = [p.op_type for p in new.graph.node]
    assert "Loop" not in ops and ops.count("SequenceInsert") == 3


def test_a_loop_over_the_unrolling_budget_stays_a_loop(monkeypatch):
    monkeypatch.setattr(onnx_control, "MAX_UNROLLED_NODES", 11)  # 3 trips x 4 body nodes
    new = _same_results(_relu_chain_loop(3), {"x": np.ones((1, 6, 8), np.float32)})
    assert [p.op_type for p in new.graph.node] == ["Loop"]


def _squeeze_if_single(channels):
    """torch's `if x.shape[1] == 1: x = x.squeeze(1)`, then x @ w: an If whose condition is a shape."""
    then = helper.make_graph([helper.make_node("Constant", [], ["one_ax"], value_ints=[1]),
                              helper.make_node("Squeeze", ["x", "one_ax"], ["sq"])], "then", [],
                             [helper.make_tensor_value_info("sq", F, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["same"])], "else", [],
                              [helper.make_tensor_value_info("same", F, None)])
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "one"], ["c"], name="dim1", axis=0),
             helper.make_node("Equal", ["c", "one"], ["single"], name="is_single"),
             helper.make_node("If", ["single"], ["y"], name="if", then_branch=then, else_branch=other),
             helper.make_node("MatMul", ["y", "w"], ["z"], name="mm")]
    inits = [_init("one", 1, np.int64), _init("w", np.ones((8, 3)))]
    return _model(nodes, [("x", F, [1, channels, 5, 8])], [("z", F, None)], inits)


@pytest.mark.parametrize("channels", [1, 2])
def test_an_if_on_a_shape_becomes_the_branch_it_takes(tmp_path, channels):
    """The condition folds at import, so the If is its branch: the squeeze runs only for one channel,
    and the fc after it has that branch's shape (a Squeeze in a branch used to send the If and what
    follows to the host)."""
    path = _save(tmp_path, _squeeze_if_single(channels), "if.onnx")
    g = _strict(path)
    want = (1, 5, 3) if channels == 1 else (1, 2, 5, 3)
    assert g.producer["z"].out_shape == want and sum(lyr.op == "fc" for lyr in g.order) == 1
    assert g.total_macs == channels * 5 * 8 * 3


@pytest.mark.parametrize("form", ["matmul", "einsum"])
def test_a_weight_per_batch_index_is_a_grouped_fc(tmp_path, form):
    """(L, H, R, C) @ a constant (H, C, K), a matrix per H (MViT's relative-position tables), is a
    grouped 1x1 conv of H groups: the MACs of H matmuls over L * R rows, and the output's shape."""
    L, H, R, C, K = 2, 4, 10, 6, 5
    if form == "matmul":
        node = helper.make_node("MatMul", ["x", "w"], ["y"], name="rel")
        w = np.ones((H, C, K))
    else:
        node = helper.make_node("Einsum", ["x", "w"], ["y"], name="rel", equation="lhrc,hkc->lhrk")
        w = np.ones((H, K, C))
    model = _model([node], [("x", F, [L, H, R, C])], [("y", F, None)], [_init("w", w)])
    x = np.random.default_rng(4).standard_normal((L, H, R, C)).astype(np.float32)
    assert _run(model, {"x": x})[0].shape == (L, H, R, K)
    g = _strict(_save(tmp_path, model, f"{form}.onnx"))
    convs = [lyr for lyr in g.order if lyr.op == "conv"]
    assert len(convs) == 1 and convs[0].attrs.groups == H
    assert g.total_macs == L * H * R * C * K
    assert g.producer["y"].out_shape == (L, H, R, K)


def test_a_large_folded_constant_keeps_its_shape(tmp_path, monkeypatch):
    """A constant too large to keep as a value (an index table the size of an attention map) still
    has its shape, so what reads it maps: here a Gather by it and an fc after."""
    monkeypatch.setattr(onnx_prepare, "FOLD_MAX_ELEMENTS", 8)
    nodes = [helper.make_node("Range", ["zero", "n", "one"], ["r"], name="range"),
             helper.make_node("Add", ["r", "zero"], ["idx"], name="shift"),  # its size known before computing it
             helper.make_node("Gather", ["x", "idx"], ["g"], name="gather", axis=1),
             helper.make_node("MatMul", ["g", "w"], ["y"], name="mm")]
    inits = [_init("zero", 0, np.int64), _init("n", 32, np.int64), _init("one", 1, np.int64),
             _init("w", np.ones((8, 3)))]
    path = _save(tmp_path, _model(nodes, [("x", F, [1, 40, 8])], [("y", F, None)], inits), "big.onnx")
    g = load_onnx(path)
    assert [lyr.out_shape for lyr in g.order if lyr.op == "fc"] == [(1, 32, 3)]


# -- cases a review found (each broke the first version) ---------------------------------------------
def _body(nodes, inputs, outputs, inits=()):
    return helper.make_graph(list(nodes), "body", [helper.make_tensor_value_info(*i) for i in inputs],
                             [helper.make_tensor_value_info(*o) for o in outputs], initializer=list(inits))


def test_a_while_loop_whose_names_shadow_the_graphs_is_not_unrolled():
    """The body's iteration number is named like an outer constant (`i` = 0): its exit test
    `i < 2` is the body's, not a constant true, so the loop runs twice, not five times."""
    bb = _body([helper.make_node("Less", ["i", "lim"], ["c2"]), helper.make_node("Add", ["xin", "one"], ["xout"])],
               [("i", I64, []), ("cin", B, []), ("xin", F, [1, 2])], [("c2", B, []), ("xout", F, [1, 2])])
    model = _model([helper.make_node("Loop", ["m", "go", "x"], ["y"], body=bb, name="loop"),
                    helper.make_node("Cast", ["i"], ["fi"], to=F), helper.make_node("Add", ["y", "fi"], ["z"])],
                   [("x", F, [1, 2])], [("z", F, [1, 2])],
                   [_init("m", 5, np.int64), _init("go", True, np.bool_), _init("lim", 2, np.int64), _init("one", 1.0),
                    _init("i", 0, np.int64)])
    new = _same_results(model, {"x": np.zeros((1, 2), np.float32)})
    assert "Loop" in {p.op_type for p in new.graph.node}


def test_a_loop_whose_body_adds_nothing_still_counts_against_the_budget():
    bb = _body([], [("i", I64, []), ("cin", B, []), ("xin", F, [1, 2])], [("cin", B, []), ("xin", F, [1, 2])])
    model = _model([helper.make_node("Loop", ["m", "", "x"], ["y"], body=bb, name="loop")],
                   [("x", F, [1, 2])], [("y", F, [1, 2])], [_init("m", 10 ** 6, np.int64)])
    onnx_control.unroll(model)
    assert [p.op_type for p in model.graph.node] == ["Loop"]


def test_an_int32_split_to_sequence_folds_into_a_valid_split():
    nodes = [helper.make_node("SplitToSequence", ["x", "sp"], ["s"], name="split", axis=1),
             helper.make_node("SequenceAt", ["s", "one"], ["b"], name="at"),
             helper.make_node("MatMul", ["b", "w"], ["y"], name="mm")]
    model = _model(nodes, [("x", F, [2, 3, 4])], [("y", F, None)],
                   [_init("sp", [1, 2], np.int32), _init("one", 1, np.int64), _init("w", np.ones((4, 5)))])
    new = _same_results(model, {"x": np.ones((2, 3, 4), np.float32)})
    assert not {p.op_type for p in new.graph.node} & onnx_control.SEQUENCE_OPS


def test_an_einsum_whose_operands_broadcast_an_axis_is_not_a_grouped_fc(tmp_path):
    """'bhqd,hkd->bhqk' with h = 1 in one operand and 3 in the other: numpy broadcasts it, so no
    single size makes the grouped fc's MACs right; the layer is opaque (strict: an error)."""
    model = _model([helper.make_node("Einsum", ["x", "w"], ["y"], name="rel", equation="bhqd,hkd->bhqk")],
                   [("x", F, [2, 3, 5, 4])], [("y", F, None)], [_init("w", np.ones((1, 6, 4)))])
    assert _run(model, {"x": np.ones((2, 3, 5, 4), np.float32)})[0].shape == (2, 3, 5, 6)
    path = _save(tmp_path, model, "bcast.onnx")
    with pytest.raises(onnx_import.GraphError, match="unsupported ONNX ops .*Einsum x1"):
        load_onnx(path, strict=True)


def _shape_if(then_nodes, else_nodes, after=(), inits=()):
    """If x.shape[1] == 4 (true for the input here) then `then_nodes` else `else_nodes`, each making y."""
    then = helper.make_graph(list(then_nodes), "then", [], [helper.make_tensor_value_info("y_then", F, None)])
    other = helper.make_graph(list(else_nodes), "else", [], [helper.make_tensor_value_info("y_else", F, None)])
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "dim1"], ["d"], name="dim", axis=0),
             helper.make_node("Equal", ["d", "four"], ["c"], name="is4"),
             helper.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=other), *after]
    return _model(nodes, [("x", F, [1, 4, 8])], [((after[-1].output[0]) if after else "y", F, None)],
                  [_init("dim1", 1, np.int64), _init("four", 4, np.int64), _init("w2", np.ones((8, 3))),
                   _init("wbad", np.ones((5, 3))), *inits])


@pytest.mark.parametrize("where", ["after the If", "in the taken branch"])
def test_a_shape_error_is_still_named_past_a_branch_that_does_not_fit(tmp_path, where):
    """The untaken branch's MatMul does not fit x (a branch for other sizes): no error. A real
    contradiction after the If or in its taken branch still is one, naming its node."""
    bad_else = [helper.make_node("MatMul", ["x", "wbad"], ["y_else"])]
    if where == "after the If":
        model = _shape_if([helper.make_node("MatMul", ["x", "w2"], ["y_then"])], bad_else,
                          [helper.make_node("Concat", ["y", "x"], ["z"], axis=5, name="badcat")])
        node = "badcat"
    else:
        model = _shape_if([helper.make_node("Concat", ["x", "x"], ["y_then"], axis=7)], bad_else)
        node = "if/Concat"
    with pytest.raises(onnx_import.GraphError, match=f"node '{node}' \\(Concat\\): axis must be in"):
        load_onnx(_save(tmp_path, model, "bad.onnx"))
    fine = _shape_if([helper.make_node("MatMul", ["x", "w2"], ["y_then"])], bad_else)
    assert _strict(_save(tmp_path, fine, "fine.onnx")).total_macs == 4 * 8 * 3


def test_an_inlined_branch_brings_its_weights_and_fresh_names(tmp_path):
    """The taken branch holds its own weight (a branch initializer) and names a tensor like the If's
    output; a second If reuses the first one's branch names: every weight is an fc's, no name clashes."""
    then1 = [helper.make_node("MatMul", ["x", "wb"], ["y"]), helper.make_node("Identity", ["y"], ["y_then"])]
    then = helper.make_graph(then1, "then", [], [helper.make_tensor_value_info("y_then", F, None)],
                             initializer=[_init("wb", np.ones((8, 3)))])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["y_else"])], "else", [],
                              [helper.make_tensor_value_info("y_else", F, None)])
    then2 = helper.make_graph([helper.make_node("MatMul", ["x", "w2"], ["y_then"])], "then", [],
                              [helper.make_tensor_value_info("y_then", F, None)])
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "dim1"], ["d"], name="dim", axis=0),
             helper.make_node("Equal", ["d", "four"], ["c"], name="is4"),
             helper.make_node("If", ["c"], ["y"], name="if1", then_branch=then, else_branch=other),
             helper.make_node("If", ["c"], ["y2"], name="if2", then_branch=then2, else_branch=other),
             helper.make_node("Concat", ["y", "y2"], ["z"], name="cat", axis=2)]
    model = _model(nodes, [("x", F, [1, 4, 8])], [("z", F, None)],
                   [_init("dim1", 1, np.int64), _init("four", 4, np.int64), _init("w2", np.ones((8, 3)))])
    g = _strict(_save(tmp_path, model, "ifs.onnx"))
    assert sum(lyr.op == "fc" for lyr in g.order) == 2 and g.total_macs == 2 * 4 * 8 * 3
    assert g.producer["z"].out_shape == (1, 4, 6)


def test_a_weight_of_leading_ones_above_the_activations_rank_is_no_crash(tmp_path):
    """(M, K) @ a constant (1, K, N) gives (1, M, N): an opaque layer (strict: an error naming the
    op), not the IR's internal shape mismatch."""
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [("x", F, [5, 6])], [("y", F, None)],
                   [_init("w", np.ones((1, 6, 7)))])
    path = _save(tmp_path, model, "mm.onnx")
    with pytest.raises(onnx_import.GraphError, match="unsupported ONNX ops .*MatMul x1"):
        load_onnx(path, strict=True)
    with pytest.warns(UserWarning, match="MatMul x1"):
        assert load_onnx(path).producer["y"].out_shape == (1, 5, 7)


def test_a_roll_by_nothing_is_the_tensor_itself(tmp_path):
    """torch.roll by 0 along an axis (Swin3D's shift in a dim where it is 0) exports as a Concat of an
    empty Slice and the whole: the empty piece has no data, so the result is the input, no layer."""
    nodes = [helper.make_node("Slice", ["x", "zero", "zero", "one"], ["none"], name="nothing"),
             helper.make_node("Slice", ["x", "zero", "big", "one"], ["all"], name="everything"),
             helper.make_node("Concat", ["none", "all"], ["rolled"], name="roll", axis=1),
             helper.make_node("MatMul", ["rolled", "w"], ["y"], name="mm")]
    inits = [_init("zero", [0], np.int64), _init("one", [1], np.int64), _init("big", [8], np.int64),
             _init("w", np.ones((6, 3)))]
    model = _model(nodes, [("x", F, [1, 8, 6])], [("y", F, None)], inits)
    assert _run(model, {"x": np.ones((1, 8, 6), np.float32)})[0].shape == (1, 8, 3)
    g = _strict(_save(tmp_path, model, "roll.onnx"))
    assert [lyr.op for lyr in g.order] == ["fc"] and g.total_macs == 8 * 6 * 3


def test_constant_queries_against_an_activation_are_a_grouped_fc(tmp_path):
    """A decoder's first cross-attention: its queries are constants (learned embeddings through a
    projection of zeros), (H, Q, D) @ the keys (B, H, D, T): a grouped fc of H groups over B * T rows."""
    B, H, Q, D, T = 1, 8, 100, 32, 50
    model = _model([helper.make_node("MatMul", ["q", "k"], ["s"], name="scores")], [("k", F, [B, H, D, T])],
                   [("s", F, None)], [_init("q", np.ones((H, Q, D)))])
    assert _run(model, {"k": np.ones((B, H, D, T), np.float32)})[0].shape == (B, H, Q, T)
    g = _strict(_save(tmp_path, model, "q.onnx"))
    assert g.total_macs == B * H * Q * D * T and g.producer["s"].out_shape == (B, H, Q, T)


def _rows_loop(n_rows: str | int = "R"):
    """Scripted `for i in range(x.shape[1]): out.append(relu(x[:, i] @ w))`: a Loop whose trip count
    is read off the input's shape, with a scan output."""
    body = _body([helper.make_node("Gather", ["x", "i"], ["row"], axis=1),
                  helper.make_node("MatMul", ["row", "w"], ["mm"]), helper.make_node("Relu", ["mm"], ["scan"]),
                  helper.make_node("Identity", ["cin"], ["cout"])],
                 [("i", I64, []), ("cin", B, [])], [("cout", B, []), ("scan", F, None)])
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "one"], ["m"], name="rows", axis=0),
             helper.make_node("Loop", ["m", "go"], ["steps"], name="loop", body=body)]
    inits = [_init("one", 1, np.int64), _init("go", True, np.bool_), _init("w", np.ones((8, 5)))]
    return _model(nodes, [("x", F, ["N", n_rows, 8])], [("steps", F, None)], inits)


@pytest.mark.parametrize("rows", [3, 5])
def test_a_loop_whose_trip_count_is_a_shape_unrolls_at_that_size(tmp_path, rows):
    """The trip count folds once shapes are known, so the import runs again with it known and the
    loop unrolls into one fc a row (it stopped at 'shape unknown' on the scan output)."""
    path = _save(tmp_path, _rows_loop(), "rows.onnx")
    x = np.ones((2, rows, 8), np.float32)
    assert _run(onnx.load(path), {"x": x})[0].shape == (rows, 2, 5)
    g = _strict(path, batch=2, dims={"R": rows})
    assert sum(lyr.op.startswith("fc") for lyr in g.order) == rows
    assert g.total_macs == rows * 2 * 8 * 5 and g.producer["steps"].out_shape == (rows, 2, 5)


def test_an_empty_piece_of_a_shape_keeps_its_integer_type(tmp_path):
    """An empty int64 slice of a shape concatenated into a Reshape target (torchvision's detection
    heads): the target stays int64, so the Reshape's shape is inferred (a float empty piece made the
    folded target float and stopped RetinaNet and FCOS at 'shape unknown')."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Slice", ["s", "zero", "zero"], ["none"], name="nothing"),
             helper.make_node("Sign", ["none"], ["still_none"], name="unfolded"),  # an op folding does not compute
             helper.make_node("Concat", ["still_none", "flat"], ["to"], name="target", axis=0),
             helper.make_node("Reshape", ["x", "to"], ["r"], name="flatten"),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="mm")]
    inits = [_init("zero", [0], np.int64), _init("flat", [1, -1], np.int64), _init("w", np.ones((48, 3)))]
    model = _model(nodes, [("x", F, [1, 8, 6])], [("y", F, None)], inits)
    assert _run(model, {"x": np.ones((1, 8, 6), np.float32)})[0].shape == (1, 3)
    g = _strict(_save(tmp_path, model, "target.onnx"))
    assert g.producer["y"].out_shape == (1, 3) and g.total_macs == 48 * 3
    imp = onnx_import.Importer("target.onnx", model, None, True)
    imp.run()
    assert imp.values["still_none"].dtype == np.int64 and imp.values["to"].dtype == np.int64


def _scan_rnn(seq: int | str = 4, reverse: bool = False):
    """A hand-written RNN as a Scan: state h (1, 8) <- tanh(x_t @ w + h @ u) over the rows of xs
    (seq, 1, 8), or over its columns read from the back (xs (1, seq, 8), axis 1, reversed), each
    step's h stacked as a scan output (the reversed one stacked back to front on axis 1), and a
    second scan output nothing reads."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["xt", "w"], ["a"]), helper.make_node("MatMul", ["hin", "u"], ["b"]),
         helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Tanh", ["s"], ["hout"]),
         helper.make_node("Identity", ["hout"], ["y"]), helper.make_node("Relu", ["hout"], ["unread"])],
        "body", [helper.make_tensor_value_info("hin", F, [1, 8]), helper.make_tensor_value_info("xt", F, [1, 8])],
        [helper.make_tensor_value_info("hout", F, [1, 8]), helper.make_tensor_value_info("y", F, [1, 8]),
         helper.make_tensor_value_info("unread", F, [1, 8])])
    rng = np.random.default_rng(0)
    attrs = {"num_scan_inputs": 1}
    if reverse:
        attrs.update(scan_input_axes=[1], scan_input_directions=[1], scan_output_axes=[1, 0],
                     scan_output_directions=[1, 0])
    nodes = [helper.make_node("Scan", ["h0", "xs"], ["h", "ys", "dead"], name="rnn", body=body, **attrs),
             helper.make_node("Relu", ["ys"], ["out"], name="relu")]
    inits = [_init("w", rng.standard_normal((8, 8))), _init("u", rng.standard_normal((8, 8)))]
    shape = [1, seq, 8] if reverse else [seq, 1, 8]
    return _model(nodes, [("h0", F, [1, 8]), ("xs", F, shape)], [("h", F, None), ("out", F, None)], inits)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_scan_over_inputs_of_known_length_unrolls_into_its_steps(tmp_path, reverse):
    """A Scan (an RNN written out, as TensorFlow exports one) runs its body once per element of its
    scan input: unrolled it gives onnxruntime's results (axes and directions included), and the
    importer sees two fcs a step where it saw one opaque layer with no MACs."""
    model = _scan_rnn(4, reverse)
    shape = (1, 4, 8) if reverse else (4, 1, 8)
    feeds = {"h0": np.full((1, 8), 0.1, np.float32),
             "xs": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
    want = _run(model, feeds)
    new = onnx.ModelProto()
    new.CopyFrom(model)
    onnx_control.unroll(new, {onnx_control.shape_key("xs"): np.array(shape)})
    assert "Scan" not in {p.op_type for p in new.graph.node}
    for a, b in zip(_run(new, feeds), want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    g = _strict(_save(tmp_path, model, "scan.onnx"))
    fcs = [lyr for lyr in g.order if lyr.op.startswith("fc")]
    assert len(fcs) == 2 * 4 and g.total_macs == 2 * 4 * 8 * 8
    assert g.producer["ys"].out_shape == ((1, 4, 8) if reverse else (4, 1, 8))
    assert "dead" not in g.producer  # a scan output nothing reads is not stacked


@pytest.mark.parametrize("seq", [3, 6])
def test_a_scan_whose_length_is_a_symbolic_dim_unrolls_at_the_size_given(tmp_path, seq):
    """The scan input's length is a named dimension: set with `dims`, the import runs again with the
    shape known and unrolls one step per element."""
    path = _save(tmp_path, _scan_rnn("T"), "scan.onnx")
    g = _strict(path, dims={"T": seq})
    assert sum(lyr.op.startswith("fc") for lyr in g.order) == 2 * seq
    assert g.producer["ys"].out_shape == (seq, 1, 8)


def test_an_opset_8_scan_is_not_unrolled():
    """Opset 8's Scan is batched with run-time sequence lengths: it stays as it is."""
    model = _scan_rnn(4)
    model.opset_import[0].version = 8
    onnx_control.unroll(model, {onnx_control.shape_key("xs"): np.array([4, 1, 8])})
    assert "Scan" in {p.op_type for p in model.graph.node}


def test_nodes_nothing_reads_are_no_layers(tmp_path):
    """A Relu -> Neg chain and a NonZero that nothing reads (a data-dependent shape that would send
    the plan's tail to the host, refused under --strict) are dropped as a compiler drops them: the
    conv's one reader left, its Sigmoid fuses into it."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="dead_relu"),
             helper.make_node("Neg", ["r"], ["n"], name="dead_neg"),
             helper.make_node("NonZero", ["c"], ["nz"], name="dead_nonzero"),
             helper.make_node("Sigmoid", ["c"], ["y"], name="sig")]
    model = _model(nodes, [("x", F, [1, 3, 8, 8])], [("y", F, [1, 4, 8, 8])], [_init("w", np.ones((4, 3, 1, 1)))])
    g = _strict(_save(tmp_path, model, "dead.onnx"))
    assert [(lyr.name, lyr.op, lyr.attrs.act) for lyr in g.order] == [("conv", "conv", "sigmoid")]
    assert g.outputs == ["y"] and g.total_macs == 4 * 3 * 8 * 8


def test_an_if_on_a_run_time_condition_reads_what_its_branches_read(tmp_path):
    """An If on a condition known only at run time (a rank-0 flag input) stays one opaque layer; it
    reads the Relu its branches read from outside (ONNX lists no such input), so the Relu is live and
    sorted before it even where the file lists it later."""
    then = _body([helper.make_node("Identity", ["r"], ["t"])], [], [("t", F, None)])
    other = _body([helper.make_node("Neg", ["r"], ["e"])], [], [("e", F, None)])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("If", ["flag"], ["y"], name="if", then_branch=then, else_branch=other),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Sigmoid", ["c"], ["y2"], name="sig")]
    model = _model(nodes, [("x", F, [1, 3, 8, 8]), ("flag", B, [])], [("y", F, None), ("y2", F, None)],
                   [_init("w", np.ones((4, 3, 1, 1)))])
    path = _save(tmp_path, model, "if.onnx")
    with pytest.warns(onnx_prepare.OnnxImportWarning, match=r"opaque layers with no MACs: If x1"):
        g = load_onnx(path)
    assert [(lyr.name, lyr.op, lyr.inputs) for lyr in g.order] == [
        ("conv", "conv", ("x",)), ("relu", "act", ("c",)), ("if", "opaque", ("r",)), ("sig", "act", ("c",))]
    with pytest.raises(onnx_import.GraphError, match=r"unsupported ONNX ops \(strict mode\): If x1"):
        load_onnx(path, strict=True)


def test_a_graph_whose_outputs_no_node_computes_is_refused_in_one_line(tmp_path, capsys):
    """Its output is the input passed through, and the one conv is dead: nothing is left to plan,
    said as such (not an empty graph's internal message), and `inspect` exits non-zero."""
    from autotune.cli import main as cli_main

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("Identity", ["x"], ["y"], name="same")]
    path = _save(tmp_path, _model(nodes, [("x", F, [1, 3, 8, 8])], [("y", F, None)],
                                  [_init("w", np.ones((4, 3, 1, 1)))]), "none.onnx")
    with pytest.raises(onnx_import.GraphError, match=r"none\.onnx: nothing to plan: no node computes the graph's "
                                                     r"outputs from its activation inputs"):
        load_onnx(path)
    assert cli_main(["inspect", path]) != 0
    err = capsys.readouterr().err
    assert "nothing to plan" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
