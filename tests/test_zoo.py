"""Zoo networks against published MAC and parameter counts, and their DAG structure."""

import pytest

from autotune import zoo
from autotune.errors import AutotuneError

# (GMACs, M params) as published: torchvision's model docs (its "GFLOPS" column counts
# multiply-accumulates) unless noted. Inception-V3 params without the auxiliary classifier
# (27.2 M with it); MobileNet-V1 from Howard et al. 2017, Table 8 of the paper (569 M, 4.2 M).
PUBLISHED = {
    "alexnet": (0.71, 61.10),
    "vgg16": (15.47, 138.36),
    "vgg19": (19.63, 143.67),
    "resnet18": (1.81, 11.69),
    "resnet34": (3.66, 21.80),
    "resnet50": (4.09, 25.56),
    "resnet101": (7.80, 44.55),
    "resnet152": (11.51, 60.19),
    "mobilenet_v1": (0.569, 4.2),
    "mobilenet_v2": (0.30, 3.50),
    "googlenet": (1.50, 6.62),
    "squeezenet1_1": (0.35, 1.24),
    "inception_v3": (5.71, 23.83),
    "densenet121": (2.83, 7.98),
}


def test_every_published_network_is_in_the_zoo():
    assert set(PUBLISHED) <= set(zoo.names())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_macs_and_params_match_published_figures(name):
    g = zoo.build(name)
    gmacs, mparams = PUBLISHED[name]
    assert g.total_macs / 1e9 == pytest.approx(gmacs, rel=0.03)
    assert g.params / 1e6 == pytest.approx(mparams, rel=0.03)
    assert g.shape_of(g.outputs[0])[:2] == (1, 1000)


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "inception_v3"])
def test_batch_scales_macs_not_params(name):
    a, b = zoo.build(name), zoo.build(name, batch=4)
    assert b.total_macs == 4 * a.total_macs and b.params == a.params
    assert b.shape_of(b.outputs[0])[0] == 4


def test_dag_edges_are_real():
    r = zoo.build("resnet50")
    add = r.layers["layer1.0.add"]
    assert len(add.inputs) == 2 and all(t in r.producer for t in add.inputs)
    g = zoo.build("googlenet")
    assert len(g.layers["inception3a.concat"].inputs) == 4
    d = zoo.build("densenet121")
    assert len(d.layers["features.denseblock1.cat"].inputs) == 7
    m = zoo.build("mobilenet_v2")
    assert sum(l.depthwise for l in m.order) == 17
    assert sum(l.op == "eltwise" for l in m.order) == 10


def test_order_is_deterministic_and_topological():
    for name in zoo.names():
        g = zoo.build(name)
        pos = {l.name: k for k, l in enumerate(g.order)}
        for l in g.order:
            for t in l.inputs:
                if t in g.producer:
                    assert pos[g.producer[t].name] < pos[l.name]
        assert [l.name for l in g.order] == [l.name for l in zoo.build(name).order]


def test_bad_names_and_batches_are_refused():
    with pytest.raises(AutotuneError, match="unknown zoo network 'resnet5'"):
        zoo.build("resnet5")
    with pytest.raises(AutotuneError, match="batch"):
        zoo.build("resnet18", batch=0)
