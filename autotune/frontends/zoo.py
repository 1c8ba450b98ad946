"""Built-in networks, as deployment compilers see them (torchvision's definitions unless noted;
transformers in zoo_transformers.py).

Conventions: BatchNorm is folded into the preceding conv (which then carries a bias); an
activation right after a conv/fc/add is that layer's epilogue (`act`); residual adds, inception
branches and dense concatenations are real DAG edges. Dropout is dropped; flatten before fc is free.
Layers are inserted in topological order (inception modules branch by branch), so `Graph.order`
is the insertion order.

Parameter convention: a folded BN leaves C bias values in its conv, which is what the deployed
kernel reads; torchvision counts the BN's 2C affine values (gamma, beta) instead. So for a
torchvision network, published params == `Graph.params` + (number of folded BN channels) exactly
(0.03-0.8% of the total; tests/test_zoo.py checks the identity). Counting 2C here would match the
headline figure but misstate the weight bytes the simulator streams from DRAM.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from autotune.errors import AutotuneError
from autotune.frontends import zoo_transformers as zt
from autotune.ir.graph import Graph, GraphBuilder


# -- AlexNet / VGG ------------------------------------------------------------------------------
def alexnet(batch: int = 1) -> Graph:
    b = GraphBuilder("alexnet", batch)
    x = b.input("input", (batch, 3, 224, 224))
    x = b.conv(x, 64, 11, 4, 2, name="features.0")
    x = b.pool(x, 3, 2, name="features.2")
    x = b.conv(x, 192, 5, 1, 2, name="features.3")
    x = b.pool(x, 3, 2, name="features.5")
    x = b.conv(x, 384, 3, name="features.6")
    x = b.conv(x, 256, 3, name="features.8")
    x = b.conv(x, 256, 3, name="features.10")
    x = b.pool(x, 3, 2, name="features.12")
    x = b.fc(x, 4096, act="relu", name="classifier.1")
    x = b.fc(x, 4096, act="relu", name="classifier.4")
    b.fc(x, 1000, name="classifier.6")
    return b.build()


_VGG: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _vgg(name: str, batch: int) -> Graph:
    b = GraphBuilder(name, batch)
    x = b.input("input", (batch, 3, 224, 224))
    k = 0  # torchvision's index in `features`: each conv is followed by its ReLU module
    for v in _VGG[name]:
        x = b.pool(x, 2, name=f"features.{k}") if isinstance(v, str) else b.conv(x, v, 3, name=f"features.{k}")
        k += 1 if v == "M" else 2
    x = b.fc(x, 4096, act="relu", name="classifier.0")
    x = b.fc(x, 4096, act="relu", name="classifier.3")
    b.fc(x, 1000, name="classifier.6")
    return b.build()


# -- ResNet -------------------------------------------------------------------------------------
def _resnet(name: str, blocks: list[int], bottleneck: bool, batch: int) -> Graph:
    b = GraphBuilder(name, batch)
    x = b.input("input", (batch, 3, 224, 224))
    x = b.conv(x, 64, 7, 2, 3, name="conv1")
    x = b.pool(x, 3, 2, 1, name="maxpool")
    expansion = 4 if bottleneck else 1
    cin = 64
    for stage, (n, width) in enumerate(zip(blocks, [64, 128, 256, 512]), start=1):
        for i in range(n):
            p = f"layer{stage}.{i}"
            stride = 2 if (i == 0 and stage > 1) else 1
            cout = width * expansion
            if bottleneck:  # ResNet v1.5: the stride sits on the 3x3
                y = b.conv(x, width, 1, name=f"{p}.conv1")
                y = b.conv(y, width, 3, stride, name=f"{p}.conv2")
                y = b.conv(y, cout, 1, act="", name=f"{p}.conv3")
            else:
                y = b.conv(x, width, 3, stride, name=f"{p}.conv1")
                y = b.conv(y, width, 3, act="", name=f"{p}.conv2")
            idn = b.conv(x, cout, 1, stride, act="", name=f"{p}.downsample") if (stride != 1 or cin != cout) else x
            x = b.eltwise([y, idn], act="relu", name=f"{p}.add")
            cin = cout
    x = b.gpool(x, name="avgpool")
    b.fc(x, 1000, name="fc")
    return b.build()


# -- MobileNets ---------------------------------------------------------------------------------
def mobilenet_v1(batch: int = 1) -> Graph:
    """Howard et al. 2017, width 1.0, 224x224."""
    b = GraphBuilder("mobilenet_v1", batch)
    x = b.input("input", (batch, 3, 224, 224))
    x = b.conv(x, 32, 3, 2, name="conv0")
    cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for i, (c, s) in enumerate(cfg, start=1):
        x = b.dwconv(x, 3, s, name=f"conv{i}.dw")
        x = b.conv(x, c, 1, name=f"conv{i}.pw")
    x = b.gpool(x, name="avgpool")
    b.fc(x, 1000, name="fc")
    return b.build()


def mobilenet_v2(batch: int = 1) -> Graph:
    b = GraphBuilder("mobilenet_v2", batch)
    x = b.input("input", (batch, 3, 224, 224))
    x = b.conv(x, 32, 3, 2, act="relu6", name="features.0")
    cin, k = 32, 1
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{k}"
            y = b.conv(x, cin * t, 1, act="relu6", name=f"{p}.expand") if t != 1 else x
            y = b.conv(y, cin * t, 3, stride, groups=cin * t, act="relu6", name=f"{p}.dw")
            y = b.conv(y, c, 1, act="", name=f"{p}.project")
            x = b.eltwise([x, y], name=f"{p}.add") if (stride == 1 and cin == c) else y
            cin, k = c, k + 1
    x = b.conv(x, 1280, 1, act="relu6", name="features.18")
    x = b.gpool(x, name="avgpool")
    b.fc(x, 1000, name="classifier.1")
    return b.build()


# -- GoogLeNet / Inception-V3 -------------------------------------------------------------------
def googlenet(batch: int = 1) -> Graph:
    """torchvision's GoogLeNet (its 'branch3' uses a 3x3 conv), without the auxiliary classifiers."""
    b = GraphBuilder("googlenet", batch)
    x = b.input("input", (batch, 3, 224, 224))
    x = b.conv(x, 64, 7, 2, 3, name="conv1")
    x = b.pool(x, 3, 2, ceil_mode=True, name="maxpool1")
    x = b.conv(x, 64, 1, name="conv2")
    x = b.conv(x, 192, 3, name="conv3")
    x = b.pool(x, 3, 2, ceil_mode=True, name="maxpool2")

    def inception(x: str, p: str, c1: int, c3r: int, c3: int, c5r: int, c5: int, pp: int) -> str:
        b1 = b.conv(x, c1, 1, name=f"{p}.branch1")
        b2 = b.conv(b.conv(x, c3r, 1, name=f"{p}.branch2.0"), c3, 3, name=f"{p}.branch2.1")
        b3 = b.conv(b.conv(x, c5r, 1, name=f"{p}.branch3.0"), c5, 3, name=f"{p}.branch3.1")
        b4 = b.conv(b.pool(x, 3, 1, 1, ceil_mode=True, name=f"{p}.branch4.0"), pp, 1, name=f"{p}.branch4.1")
        return b.concat([b1, b2, b3, b4], name=f"{p}.concat")

    x = inception(x, "inception3a", 64, 96, 128, 16, 32, 32)
    x = inception(x, "inception3b", 128, 128, 192, 32, 96, 64)
    x = b.pool(x, 3, 2, ceil_mode=True, name="maxpool3")
    x = inception(x, "inception4a", 192, 96, 208, 16, 48, 64)
    x = inception(x, "inception4b", 160, 112, 224, 24, 64, 64)
    x = inception(x, "inception4c", 128, 128, 256, 24, 64, 64)
    x = inception(x, "inception4d", 112, 144, 288, 32, 64, 64)
    x = inception(x, "inception4e", 256, 160, 320, 32, 128, 128)
    x = b.pool(x, 2, 2, ceil_mode=True, name="maxpool4")
    x = inception(x, "inception5a", 256, 160, 320, 32, 128, 128)
    x = inception(x, "inception5b", 384, 192, 384, 48, 128, 128)
    x = b.gpool(x, name="avgpool")
    b.fc(x, 1000, name="fc")
    return b.build()


def inception_v3(batch: int = 1) -> Graph:
    """torchvision's Inception-V3 at 299x299, without the auxiliary classifier."""
    b = GraphBuilder("inception_v3", batch)
    x = b.input("input", (batch, 3, 299, 299))
    x = b.conv(x, 32, 3, 2, 0, name="Conv2d_1a_3x3")
    x = b.conv(x, 32, 3, 1, 0, name="Conv2d_2a_3x3")
    x = b.conv(x, 64, 3, 1, 1, name="Conv2d_2b_3x3")
    x = b.pool(x, 3, 2, name="maxpool1")
    x = b.conv(x, 80, 1, name="Conv2d_3b_1x1")
    x = b.conv(x, 192, 3, 1, 0, name="Conv2d_4a_3x3")
    x = b.pool(x, 3, 2, name="maxpool2")

    def a(x, p, pf):
        b1 = b.conv(x, 64, 1, name=f"{p}.branch1x1")
        b5 = b.conv(b.conv(x, 48, 1, name=f"{p}.branch5x5_1"), 64, 5, name=f"{p}.branch5x5_2")
        d = b.conv(b.conv(x, 64, 1, name=f"{p}.branch3x3dbl_1"), 96, 3, name=f"{p}.branch3x3dbl_2")
        d = b.conv(d, 96, 3, name=f"{p}.branch3x3dbl_3")
        bp = b.conv(b.pool(x, 3, 1, 1, mode="avg", name=f"{p}.avgpool"), pf, 1, name=f"{p}.branch_pool")
        return b.concat([b1, b5, d, bp], name=f"{p}.concat")

    def bb(x, p):
        b3 = b.conv(x, 384, 3, 2, 0, name=f"{p}.branch3x3")
        d = b.conv(b.conv(x, 64, 1, name=f"{p}.branch3x3dbl_1"), 96, 3, name=f"{p}.branch3x3dbl_2")
        d = b.conv(d, 96, 3, 2, 0, name=f"{p}.branch3x3dbl_3")
        return b.concat([b3, d, b.pool(x, 3, 2, name=f"{p}.maxpool")], name=f"{p}.concat")

    def c(x, p, c7):
        b1 = b.conv(x, 192, 1, name=f"{p}.branch1x1")
        s = b.conv(x, c7, 1, name=f"{p}.branch7x7_1")
        s = b.conv(s, c7, (1, 7), pad=(0, 3), name=f"{p}.branch7x7_2")
        s = b.conv(s, 192, (7, 1), pad=(3, 0), name=f"{p}.branch7x7_3")
        d = b.conv(x, c7, 1, name=f"{p}.branch7x7dbl_1")
        d = b.conv(d, c7, (7, 1), pad=(3, 0), name=f"{p}.branch7x7dbl_2")
        d = b.conv(d, c7, (1, 7), pad=(0, 3), name=f"{p}.branch7x7dbl_3")
        d = b.conv(d, c7, (7, 1), pad=(3, 0), name=f"{p}.branch7x7dbl_4")
        d = b.conv(d, 192, (1, 7), pad=(0, 3), name=f"{p}.branch7x7dbl_5")
        bp = b.conv(b.pool(x, 3, 1, 1, mode="avg", name=f"{p}.avgpool"), 192, 1, name=f"{p}.branch_pool")
        return b.concat([b1, s, d, bp], name=f"{p}.concat")

    def d(x, p):
        t = b.conv(b.conv(x, 192, 1, name=f"{p}.branch3x3_1"), 320, 3, 2, 0, name=f"{p}.branch3x3_2")
        s = b.conv(x, 192, 1, name=f"{p}.branch7x7x3_1")
        s = b.conv(s, 192, (1, 7), pad=(0, 3), name=f"{p}.branch7x7x3_2")
        s = b.conv(s, 192, (7, 1), pad=(3, 0), name=f"{p}.branch7x7x3_3")
        s = b.conv(s, 192, 3, 2, 0, name=f"{p}.branch7x7x3_4")
        return b.concat([t, s, b.pool(x, 3, 2, name=f"{p}.maxpool")], name=f"{p}.concat")

    def e(x, p):
        b1 = b.conv(x, 320, 1, name=f"{p}.branch1x1")
        t = b.conv(x, 384, 1, name=f"{p}.branch3x3_1")
        t = b.concat([b.conv(t, 384, (1, 3), pad=(0, 1), name=f"{p}.branch3x3_2a"),
                      b.conv(t, 384, (3, 1), pad=(1, 0), name=f"{p}.branch3x3_2b")], name=f"{p}.concat3x3")
        u = b.conv(b.conv(x, 448, 1, name=f"{p}.branch3x3dbl_1"), 384, 3, name=f"{p}.branch3x3dbl_2")
        u = b.concat([b.conv(u, 384, (1, 3), pad=(0, 1), name=f"{p}.branch3x3dbl_3a"),
                      b.conv(u, 384, (3, 1), pad=(1, 0), name=f"{p}.branch3x3dbl_3b")], name=f"{p}.concatdbl")
        bp = b.conv(b.pool(x, 3, 1, 1, mode="avg", name=f"{p}.avgpool"), 192, 1, name=f"{p}.branch_pool")
        return b.concat([b1, t, u, bp], name=f"{p}.concat")

    x = a(x, "Mixed_5b", 32)
    x = a(x, "Mixed_5c", 64)
    x = a(x, "Mixed_5d", 64)
    x = bb(x, "Mixed_6a")
    for p, c7 in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)]:
        x = c(x, p, c7)
    x = d(x, "Mixed_7a")
    x = e(x, "Mixed_7b")
    x = e(x, "Mixed_7c")
    x = b.gpool(x, name="avgpool")
    b.fc(x, 1000, name="fc")
    return b.build()


# -- SqueezeNet / DenseNet ----------------------------------------------------------------------
def squeezenet1_1(batch: int = 1) -> Graph:
    b = GraphBuilder("squeezenet1_1", batch)
    x = b.input("input", (batch, 3, 224, 224))
    x = b.conv(x, 64, 3, 2, 0, name="features.0")
    x = b.pool(x, 3, 2, ceil_mode=True, name="features.2")

    def fire(x, p, s, e):
        sq = b.conv(x, s, 1, name=f"{p}.squeeze")
        return b.concat([b.conv(sq, e, 1, name=f"{p}.expand1x1"), b.conv(sq, e, 3, name=f"{p}.expand3x3")],
                        name=f"{p}.concat")

    x = fire(x, "features.3", 16, 64)
    x = fire(x, "features.4", 16, 64)
    x = b.pool(x, 3, 2, ceil_mode=True, name="features.5")
    x = fire(x, "features.6", 32, 128)
    x = fire(x, "features.7", 32, 128)
    x = b.pool(x, 3, 2, ceil_mode=True, name="features.8")
    for k, (s, e) in enumerate([(48, 192), (48, 192), (64, 256), (64, 256)], start=9):
        x = fire(x, f"features.{k}", s, e)
    x = b.conv(x, 1000, 1, name="classifier.1")
    x = b.gpool(x, name="classifier.3")
    b.add("reshape", [x], "flatten", shape=(batch, 1000))  # torch.flatten: layout only
    return b.build()


def densenet121(batch: int = 1) -> Graph:
    """DenseNet's pre-activation BN-ReLU (norm1, transition norm, norm5) reads a concatenation whose
    parts are also read raw by later layers, so it cannot fold into any producer: it stays a `norm`
    layer (mode batch, relu epilogue; 2C params, as torchvision counts it; no MACs, as in the MAC
    figures). norm0 and each norm2 follow a conv directly and fold into it (C bias values)."""
    b = GraphBuilder("densenet121", batch)
    x = b.input("input", (batch, 3, 224, 224))
    x = b.conv(x, 64, 7, 2, 3, name="features.conv0")  # norm0 + relu0 fold here
    x = b.pool(x, 3, 2, 1, name="features.pool0")
    feats = [x]
    for blk, n in enumerate([6, 12, 24, 16], start=1):
        for i in range(1, n + 1):
            p = f"features.denseblock{blk}.denselayer{i}"
            inp = feats[0] if len(feats) == 1 else b.concat(feats, name=f"{p}.cat")
            y = b.add("norm", [inp], f"{p}.norm1", mode="batch", act="relu")
            y = b.conv(y, 128, 1, name=f"{p}.conv1")  # norm2 + relu2 fold here
            y = b.conv(y, 32, 3, act="", bias=False, name=f"{p}.conv2")
            feats.append(y)
        x = b.concat(feats, name=f"features.denseblock{blk}.cat")
        if blk < 4:
            p = f"features.transition{blk}"
            c = b.shape(x)[1] // 2
            x = b.add("norm", [x], f"{p}.norm", mode="batch", act="relu")
            x = b.conv(x, c, 1, act="", bias=False, name=f"{p}.conv")
            x = b.pool(x, 2, 2, mode="avg", name=f"{p}.pool")
            feats = [x]
    x = b.add("norm", [x], "features.norm5", mode="batch", act="relu")
    x = b.gpool(x, name="avgpool")
    b.fc(x, 1000, name="classifier")
    return b.build()


# -- EfficientNet / ViT -------------------------------------------------------------------------
def efficientnet_b0(batch: int = 1) -> Graph:
    """torchvision's EfficientNet-B0: MBConv blocks with squeeze-excite (gpool, 1x1 conv SiLU,
    1x1 conv sigmoid, broadcast multiply), SiLU everywhere else; stochastic depth is dropped."""
    b = GraphBuilder("efficientnet_b0", batch)
    x = b.input("input", (batch, 3, 224, 224))
    x = b.conv(x, 32, 3, 2, act="silu", name="features.0")
    cin = 32
    # (expand ratio, kernel, stride, out channels, repeats): Table 1 of Tan & Le 2019
    for stage, (t, k, s, cout, n) in enumerate([(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2),
                                                (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
                                                (6, 3, 1, 320, 1)], start=1):
        for i in range(n):
            p, stride, exp = f"features.{stage}.{i}", s if i == 0 else 1, cin * t
            y = b.conv(x, exp, 1, act="silu", name=f"{p}.expand") if t != 1 else x
            y = b.conv(y, exp, k, stride, groups=exp, act="silu", name=f"{p}.dw")
            sq = b.gpool(y, name=f"{p}.se.avgpool")
            sq = b.conv(sq, max(1, cin // 4), 1, act="silu", name=f"{p}.se.fc1")  # real biases: no BN here
            sq = b.conv(sq, exp, 1, act="sigmoid", name=f"{p}.se.fc2")
            y = b.eltwise([y, sq], mode="mul", name=f"{p}.se.scale")  # (N,C,H,W) * (N,C,1,1)
            y = b.conv(y, cout, 1, act="", name=f"{p}.project")
            x = b.eltwise([x, y], name=f"{p}.add") if (stride == 1 and cin == cout) else y
            cin = cout
    x = b.conv(x, 1280, 1, act="silu", name="features.8")
    x = b.gpool(x, name="avgpool")
    b.fc(x, 1000, name="classifier.1")
    return b.build()


#: ViT parameters no IR layer carries: the class token (768) and the position embedding (197 x 768).
VIT_B16_UNCOUNTED_PARAMS = 768 + 197 * 768


def unet_decoder(batch: int = 1) -> Graph:
    """A U-Net decoder (Ronneberger et al. 2015, with padded convs): from a 256-channel 14x14 bottleneck,
    four stages of a 2x2 stride-2 transposed conv, a concat with the encoder's skip, two 3x3 conv +
    ReLU, halving channels each stage to 16 at 224x224, then a 1x1 conv to 2 classes."""
    b = GraphBuilder("unet_decoder", batch)
    x = b.input("x", (batch, 256, 14, 14))
    c, hw = 256, 14
    for i in range(4):
        skip = b.input(f"skip{i}", (batch, c // 2, hw * 2, hw * 2))
        up = b.deconv(x, c // 2, 2, 2, name=f"up{i}")
        x = b.concat([up, skip], name=f"cat{i}")
        x = b.conv(x, c // 2, 3, name=f"conv{i}a")
        x = b.conv(x, c // 2, 3, name=f"conv{i}b")
        c, hw = c // 2, hw * 2
    b.conv(x, 2, 1, act="", name="head")
    return b.build()


_BUILDERS: dict[str, Callable[..., Graph]] = {
    "alexnet": alexnet,
    "vgg16": lambda n: _vgg("vgg16", n),
    "vgg19": lambda n: _vgg("vgg19", n),
    "resnet18": lambda n: _resnet("resnet18", [2, 2, 2, 2], False, n),
    "resnet34": lambda n: _resnet("resnet34", [3, 4, 6, 3], False, n),
    "resnet50": lambda n: _resnet("resnet50", [3, 4, 6, 3], True, n),
    "resnet101": lambda n: _resnet("resnet101", [3, 4, 23, 3], True, n),
    "resnet152": lambda n: _resnet("resnet152", [3, 8, 36, 3], True, n),
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "googlenet": googlenet,
    "squeezenet1_1": squeezenet1_1,
    "inception_v3": inception_v3,
    "densenet121": densenet121,
    "efficientnet_b0": efficientnet_b0,
    "vit_b16": zt.vit_b16,
    "unet_decoder": unet_decoder,
    "bert_base": zt.bert_base,
    "gpt2_small": zt.gpt2_small,
    "llama_1b": zt.llama_1b,
    "whisper_tiny_encoder": zt.whisper_tiny_encoder,
}


def names() -> list[str]:
    """Names of the built-in networks."""
    return list(_BUILDERS)


def params(name: str) -> dict[str, int]:
    """A network's size parameters besides the batch (e.g. `seq` of a transformer) and their defaults."""
    if name not in _BUILDERS:
        raise AutotuneError(f"unknown zoo network {name!r}; choose one of: {', '.join(_BUILDERS)}")
    sig = inspect.signature(_BUILDERS[name])
    return {k: p.default for k, p in sig.parameters.items()
            if k != "batch" and p.default is not inspect.Parameter.empty}


def build(name: str, batch: int = 1, **sizes: int) -> Graph:
    """A built-in network at the given batch size (and sizes such as `seq=256`), validated."""
    known = params(name)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise AutotuneError(f"batch must be a positive integer, got {batch!r}")
    for k, v in sizes.items():
        if k not in known:
            raise AutotuneError(f"--dim {k}: zoo network {name!r} has no such size"
                                + (f" (it has: {', '.join(known)})" if known else " (only --batch)"))
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 16:
            raise AutotuneError(f"--dim {k}={v!r}: must be an integer from 1 to 65536")
    return _BUILDERS[name](batch, **sizes)
