"""GroupBatch and PairRanges: the fast paths agree with plain per-group loops."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autotune.frontends import zoo
from autotune.hardware.config import load_hardware
from autotune.ir.graph import GraphBuilder
from autotune.ir.tables import GroupBatch, PairRanges
from autotune.planning.planner import spans

HW = load_hardware("mlu100")


def _chain(widths: list[int]):
    b = GraphBuilder("chain")
    x = b.input("x", (1, 16, 14, 14))
    for n, w in enumerate(widths):
        x = b.conv(x, w, 3 if n % 2 else 1)
    return b.build()


def test_from_ranges_equals_build_from_groups():
    g = zoo.build("googlenet")
    si, sj = spans(g, HW)
    a = GroupBatch.from_ranges(g, si, sj)
    b = GroupBatch.build([g.group(int(i), int(j)) for i, j in zip(si, sj)])
    for name in ("in_elems", "out_elems", "internal_elems", "max_internal_elems", "n_layers", "macs"):
        assert np.array_equal(getattr(a.groups, name), getattr(b.groups, name)), name
    assert np.array_equal(a.layers.macs, b.layers.macs) and np.array_equal(a.first_of_kind(), b.first_of_kind())
    with pytest.raises(IndexError):
        GroupBatch.from_ranges(g, np.array([3]), np.array([3]))


def test_first_of_kind_marks_the_first_layer_of_each_kind_in_each_group():
    g = _chain([16, 16, 16, 16, 32, 16])  # 1x1, 3x3, 1x1, 3x3, 1x1 (other width), 3x3
    b = GroupBatch.build([g.group(0, 6), g.group(2, 6), g.group(1, 2)])
    sig = [(lyr.attrs.kernel, lyr.in_channels, lyr.out_channels) for lyr in g.order]
    want = []
    for i, j in [(0, 6), (2, 6), (1, 2)]:
        seen = set()
        for s in sig[i:j]:
            want.append(s not in seen)
            seen.add(s)
    assert b.first_of_kind().tolist() == want


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=40), st.integers(0, 2**31 - 1))
def test_pair_ranges_match_per_group_loops(lengths, seed):
    """Sums, maxima and ordered pair sums over random groups of a random chain, against loops."""
    rng = np.random.default_rng(seed)
    g = _chain([int(w) for w in rng.choice([8, 16, 24], size=len(lengths) * 3)])
    n = len(g.order)
    i = rng.integers(0, n, size=len(lengths))
    j = np.minimum(n, i + np.asarray(lengths))
    batch = GroupBatch.from_ranges(g, i, j)
    ks = np.asarray(HW.core_counts)
    cores = rng.choice(ks, size=len(i))
    pr = PairRanges(batch, np.arange(len(i)), cores)
    a = rng.random((n, len(pr.ks))) * 10.0 ** rng.integers(-3, 4, (n, 1))
    b = rng.integers(0, 3, (n, len(pr.ks))).astype(float)
    col = np.searchsorted(pr.ks, cores)
    s, m, o = pr.sum(a, b), pr.max(a), pr.ordered_sum(a, b)
    for p, (lo, hi, c) in enumerate(zip(i, j, col)):
        x, y = a[lo:hi, c], b[lo:hi, c]
        assert s[p, 0] == pytest.approx(x.sum(), rel=1e-12) and s[p, 1] == y.sum()
        assert m[p] == x.max()
        want = sum(x[u] * y[v] for u in range(len(x)) for v in range(u + 1, len(x)))
        assert o[p] == pytest.approx(want, rel=1e-9, abs=1e-12)
        if want == 0:
            assert o[p] == 0.0  # no rounding residue where nothing follows


def test_distinct_groups_share_content_and_costs():
    from autotune.planning.costs import make_cost

    g = zoo.build("resnet152")
    si, sj = spans(g, HW)
    batch = GroupBatch.from_ranges(g, si, sj)
    first, inverse = batch.distinct()
    assert len(first) < len(si) / 2  # 36 identical bottlenecks in layer3 alone
    # members of a class have the same layer kinds in order, and the analytic cost agrees exactly
    names = [[(lyr.op, lyr.out_shape, lyr.attrs.kernel) for lyr in g.order[a:b]] for a, b in zip(si, sj)]
    for c in range(0, len(first), 7):
        members = np.flatnonzero(inverse == c)
        assert all(names[m] == names[first[c]] for m in members)
    cost = make_cost("analytic", HW)
    ks = np.asarray(HW.core_counts)
    full = cost(batch, np.repeat(np.arange(len(si)), len(ks)), np.tile(ks, len(si))).reshape(len(si), -1)
    np.testing.assert_allclose(full, full[first][inverse], rtol=1e-12)
