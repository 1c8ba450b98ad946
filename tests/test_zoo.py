"""Zoo networks against published MAC and parameter counts, and their DAG structure."""

import pytest

from autotune.errors import AutotuneError
from autotune.frontends import zoo

# Published figures: (GMACs, params, source). torchvision = the `_ops` ("GFLOPS" in its model
# docs, which counts multiply-accumulates) and `num_params` of the model's IMAGENET1K_V1 weights
# entry. Inception-V3: 27,161,264 minus the AuxLogits head (1x1 conv 768->128 + BN, 5x5 conv
# 128->768 + BN, fc 768->1000: 3,326,696), which torchvision's MAC count (eval mode) also omits.
# GoogLeNet's published figures already exclude its aux classifiers.
TORCHVISION = "torchvision model docs (IMAGENET1K_V1 meta)"
FLOPCOUNTER = "torch FlopCounterMode / 2 on"
PUBLISHED = {
    "alexnet": (0.714, 61_100_840, TORCHVISION),
    "vgg16": (15.470, 138_357_544, TORCHVISION),
    "vgg19": (19.632, 143_667_240, TORCHVISION),
    "resnet18": (1.814, 11_689_512, TORCHVISION),
    "resnet34": (3.664, 21_797_672, TORCHVISION),
    "resnet50": (4.089, 25_557_032, TORCHVISION),
    "resnet101": (7.801, 44_549_160, TORCHVISION),
    "resnet152": (11.514, 60_192_808, TORCHVISION),
    "mobilenet_v1": (0.569, 4_200_000, "Howard et al. 2017, Table 8 (1.0 MobileNet-224: 569 M mult-adds, 4.2 M)"),
    "mobilenet_v2": (0.301, 3_504_872, TORCHVISION),
    "googlenet": (1.498, 6_624_904, TORCHVISION),
    "squeezenet1_1": (0.349, 1_235_496, TORCHVISION),
    "inception_v3": (5.713, 27_161_264 - 3_326_696, TORCHVISION + ", minus AuxLogits"),
    "densenet121": (2.834, 7_978_856, TORCHVISION),
    "efficientnet_b0": (0.386, 5_288_548, TORCHVISION),
    "vit_b16": (17.564, 86_567_656, TORCHVISION + " (vit_b_16)"),
    # Hugging Face definitions, counted by torch.utils.flop_counter.FlopCounterMode (torch 2.14,
    # transformers 5.24, eager attention) at batch 1 and the default size; params from the model's
    # named_parameters minus the embedding tables (constants the IR reads, not layer weights).
    "bert_base": (11.173625856, 85_056_000, FLOPCOUNTER + " BertModel(BertConfig()), no pooler, seq 128"),
    "gpt2_small": (11.173625856, 85_056_000, FLOPCOUNTER + " GPT2Model(GPT2Config()), seq 128"),
    "llama_1b": (125.493575680, 968_976_384, FLOPCOUNTER + " LlamaModel, TinyLlama-1.1B config, seq 128"),
    "whisper_tiny_encoder": (18.468864, 7_632_384, FLOPCOUNTER + " WhisperEncoder, whisper-tiny config, 3000 frames"),
    "unet_decoder": (1.491632128, 762_354, FLOPCOUNTER + " of the same decoder written in torch.nn"),
}
#: The same counter at other sizes: (network, sizes, GMACs).
SIZED = [("bert_base", {"seq": 256}, 22.951231488), ("gpt2_small", {"seq": 256}, 22.951231488),
         ("llama_1b", {"seq": 256}, 253.939941376), ("llama_1b", {"batch": 8}, 1003.948605440),
         ("bert_base", {"batch": 8}, 89.389006848)]
REQUIRED = ["alexnet", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
            "mobilenet_v1", "mobilenet_v2", "googlenet", "squeezenet1_1", "inception_v3", "densenet121"]
NO_BN = {"alexnet", "vgg16", "vgg19", "squeezenet1_1", "vit_b16", "bert_base", "gpt2_small", "llama_1b",
         "whisper_tiny_encoder", "unet_decoder"}  # conv biases are real biases


@pytest.fixture(scope="module")
def graphs():
    return {n: zoo.build(n) for n in zoo.names()}


def test_zoo_names_are_the_published_networks():
    assert set(REQUIRED) <= set(zoo.names())
    assert set(zoo.names()) == set(PUBLISHED)  # every network in the zoo is checked below


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_macs_and_params_match_published_figures(graphs, name):
    g = graphs[name]
    gmacs, params, _ = PUBLISHED[name]
    # torchvision gives MACs to 3 decimals; the paper's 569 M is rounded too
    assert g.total_macs / 1e9 == pytest.approx(gmacs, rel=0.01)
    assert g.params == pytest.approx(params, rel=0.03 if name == "mobilenet_v1" else 0.01)


#: Networks that are not ImageNet classifiers (their outputs are hidden states or masks).
NOT_CLASSIFIERS = {"bert_base", "gpt2_small", "llama_1b", "whisper_tiny_encoder", "unet_decoder"}


@pytest.mark.parametrize("name,sizes,gmacs", SIZED)
def test_sizes_follow_the_independent_count(name, sizes, gmacs):
    assert zoo.build(name, **sizes).total_macs / 1e9 == pytest.approx(gmacs, rel=1e-9)


def test_size_parameters_are_checked():
    assert zoo.params("bert_base") == {"seq": 128} and zoo.params("resnet50") == {}
    with pytest.raises(AutotuneError, match=r"--dim seq: zoo network 'resnet50' has no such size \(only --batch\)"):
        zoo.build("resnet50", seq=3)
    with pytest.raises(AutotuneError, match=r"--dim seq=0: must be an integer"):
        zoo.build("gpt2_small", seq=0)


def _folded_bn_channels(g) -> int:
    """Bias values that stand for a folded BatchNorm: every conv bias except SE convs (real biases)."""
    return sum(lyr.attrs.out_channels for lyr in g.order
               if lyr.op == "conv" and lyr.attrs.bias and ".se." not in lyr.name)


@pytest.mark.parametrize("name", sorted(set(PUBLISHED) - {"mobilenet_v1"}))
def test_params_agree_exactly_with_torchvision_up_to_bn_folding(graphs, name):
    """torchvision counts 2C per BN, a folded conv C biases: the counts differ by exactly the
    folded channels, which pins every kernel shape and every BN to the reference architecture."""
    g = graphs[name]
    extra = 0 if name in NO_BN else _folded_bn_channels(g)
    if name == "vit_b16":
        extra = zoo.VIT_B16_UNCOUNTED_PARAMS  # the class token and the position table: constants
        assert extra == 768 + 197 * 768
    assert g.params + extra == PUBLISHED[name][1]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_output_is_n_by_1000_and_batch_scales_macs_not_params(graphs, name):
    a, b = graphs[name], zoo.build(name, batch=3)
    assert len(a.outputs) == 1 and b.shape_of(b.outputs[0]) == (3, *a.shape_of(a.outputs[0])[1:])
    if name not in NOT_CLASSIFIERS:
        assert a.shape_of(a.outputs[0]) == (1, 1000) and len(a.inputs) == 1
    assert b.total_macs == 3 * a.total_macs and b.params == a.params and b.batch == 3
    assert b.validate() is b and [lyr.name for lyr in b.order] == [lyr.name for lyr in a.order]


def test_input_resolutions():
    assert zoo.build("inception_v3").inputs["input"] == (1, 3, 299, 299)
    assert zoo.build("resnet50", batch=2).inputs["input"] == (2, 3, 224, 224)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_order_is_insertion_order_topological_and_deterministic(graphs, name):
    g = graphs[name]
    assert [lyr.name for lyr in g.order] == list(g.layers)  # built in topological order
    pos = {lyr.name: k for k, lyr in enumerate(g.order)}
    for lyr in g.order:
        for t in lyr.inputs:
            assert t in g.inputs or pos[g.producer[t].name] < pos[lyr.name]
    assert [lyr.name for lyr in g.order] == [lyr.name for lyr in zoo.build(name).order]


def test_activation_epilogues_not_layers_and_no_dropout(graphs):
    for name, g in graphs.items():
        assert not any(lyr.op == "act" for lyr in g.order), name
        assert not any("dropout" in lyr.name.lower() for lyr in g.order), name
    r = graphs["resnet50"]
    assert r.layers["layer1.0.conv1"].attrs.act == "relu" and r.layers["layer1.0.conv3"].attrs.act == ""
    assert r.layers["layer1.0.add"].attrs.act == "relu"  # the ReLU after the residual add
    m = graphs["mobilenet_v2"]
    assert m.layers["features.2.dw"].attrs.act == "relu6" and m.layers["features.2.project"].attrs.act == ""
    d = graphs["densenet121"]
    assert d.layers["features.denseblock1.denselayer1.conv2"].attrs.act == ""  # feeds a concat, then BN
    assert d.layers["features.denseblock1.denselayer2.norm1"].attrs.act == "relu"


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet152", "mobilenet_v2", "efficientnet_b0", "vit_b16"])
def test_residual_adds_have_two_producer_inputs(graphs, name):
    g = graphs[name]
    adds = [lyr for lyr in g.order if lyr.op == "eltwise" and lyr.attrs.mode in ("", "add") and len(lyr.inputs) > 1]
    assert adds
    for lyr in adds:
        assert len(lyr.inputs) == 2 and all(t in g.producer for t in lyr.inputs), lyr.name
        assert len(set(lyr.inputs)) == 2 and lyr.in_shapes[0] == lyr.in_shapes[1], lyr.name
    # ResNet-50 has 16 bottlenecks; MobileNet-V2 10 and EfficientNet-B0 9 residual blocks; ViT 2 per layer
    assert len(adds) == {"resnet18": 8, "resnet50": 16, "resnet152": 50, "mobilenet_v2": 10,
                         "efficientnet_b0": 9, "vit_b16": 24}[name]


def test_resnet_v15_puts_the_stride_on_the_3x3(graphs):
    g = graphs["resnet50"]
    assert g.layers["layer2.0.conv1"].attrs.stride == (1, 1) and g.layers["layer2.0.conv2"].attrs.stride == (2, 2)
    assert g.layers["layer2.0.downsample"].attrs.stride == (2, 2)
    assert g.shape_of("layer4.2.add") == (1, 2048, 7, 7)


def test_inception_and_dense_concats_take_all_branches(graphs):
    g = graphs["googlenet"]
    cat = g.layers["inception3a.concat"]
    assert len(cat.inputs) == 4 and cat.out_shape == (1, 256, 28, 28)
    assert all(len(lyr.inputs) >= 2 for lyr in g.order if lyr.op == "concat")
    v3 = graphs["inception_v3"]
    assert len(v3.layers["Mixed_7b.concat"].inputs) == 4 and v3.shape_of("Mixed_7c.concat") == (1, 2048, 8, 8)
    assert all(len(lyr.inputs) >= 2 for lyr in v3.order if lyr.op == "concat")
    d = graphs["densenet121"]
    blk = d.layers["features.denseblock1.cat"]
    assert len(blk.inputs) == 7 and blk.out_shape == (1, 64 + 6 * 32, 56, 56)
    assert len(d.layers["features.denseblock4.denselayer16.cat"].inputs) == 16
    assert d.shape_of("features.denseblock4.cat") == (1, 1024, 7, 7)
    assert all(len(lyr.inputs) >= 2 for lyr in d.order if lyr.op == "concat")


def test_inception_branches_are_built_branch_by_branch(graphs):
    g = graphs["inception_v3"]
    names = [lyr.name for lyr in g.order if lyr.name.startswith("Mixed_5b.")]
    assert names == ["Mixed_5b." + n for n in ("branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1",
                                               "branch3x3dbl_2", "branch3x3dbl_3", "avgpool", "branch_pool",
                                               "concat")]


def test_ceil_mode_pooling_where_torchvision_uses_it(graphs):
    g = graphs["googlenet"]
    assert g.layers["maxpool1"].attrs.ceil_mode and g.shape_of("maxpool1") == (1, 64, 56, 56)
    assert g.shape_of("maxpool3") == (1, 480, 14, 14) and g.shape_of("maxpool4") == (1, 832, 7, 7)
    s = graphs["squeezenet1_1"]
    assert s.shape_of("features.2") == (1, 64, 55, 55) and s.shape_of("features.8") == (1, 256, 13, 13)


@pytest.mark.parametrize("name,count", [("mobilenet_v1", 13), ("mobilenet_v2", 17), ("efficientnet_b0", 16)])
def test_depthwise_convs_are_flagged(graphs, name, count):
    g = graphs[name]
    dw = [lyr for lyr in g.order if lyr.depthwise]
    assert len(dw) == count
    assert all(lyr.attrs.groups == lyr.in_channels == lyr.out_channels for lyr in dw)
    assert all(lyr.name.endswith(".dw") for lyr in dw)
    assert not any(lyr.depthwise for lyr in graphs["resnet50"].order)


def test_squeeze_excite_broadcasts_a_channel_scale(graphs):
    g = graphs["efficientnet_b0"]
    mul = g.layers["features.2.0.se.scale"]
    assert mul.attrs.mode == "mul" and mul.in_shapes == ((1, 96, 56, 56), (1, 96, 1, 1))
    assert g.layers["features.2.0.se.fc1"].attrs.out_channels == 4  # input channels 16 // 4
    assert g.layers["features.2.0.se.fc2"].attrs.act == "sigmoid"


def test_vit_attention_shapes(graphs):
    g = graphs["vit_b16"]
    p = "encoder.layers.encoder_layer_0.self_attention"
    assert g.layers[f"{p}.qk"].out_shape == (1, 12, 197, 197) and g.layers[f"{p}.av"].out_shape == (1, 12, 197, 64)
    assert g.layers[f"{p}.qk"].macs == 12 * 197 * 197 * 64
    assert sum(lyr.op == "matmul" for lyr in g.order) == 24 and sum(lyr.op == "softmax" for lyr in g.order) == 12
    assert g.layers["encoder.layers.encoder_layer_11.mlp.fc1"].attrs.act == "gelu"


def test_llama_uses_grouped_query_attention_swiglu_and_rmsnorm(graphs):
    g = graphs["llama_1b"]
    p = "layers.0.self_attn"
    assert g.layers[f"{p}.q_proj"].attrs.out_channels == 2048 and g.layers[f"{p}.k_proj"].attrs.out_channels == 256
    assert g.layers[f"{p}.k.repeat_kv"].out_shape == (1, 32, 128, 64)
    assert g.layers[f"{p}.qk"].out_shape == (1, 32, 128, 128)
    assert g.layers["layers.0.mlp.gate_proj"].attrs.act == "silu"
    assert g.layers["layers.0.input_layernorm"].attrs.mode == "rms"
    assert not any(lyr.attrs.bias for lyr in g.order if lyr.op == "fc")


def test_whisper_and_unet_use_1d_and_transposed_convs(graphs):
    w = graphs["whisper_tiny_encoder"]
    assert w.layers["conv2"].in_shape == (1, 384, 3000) and w.layers["conv2"].out_shape == (1, 384, 1500)
    assert w.layers["conv2"].spec.plane(w.layers["conv2"]) == (1500, 1)  # a row split divides the frames
    u = graphs["unet_decoder"]
    assert [lyr.op for lyr in u.order].count("deconv") == 4 and u.layers["up0"].out_shape == (1, 128, 28, 28)
    assert u.layers["up0"].macs == 256 * 14 * 14 * 128 * 2 * 2  # every input pixel times the kernel


def test_bad_names_and_batches_are_refused():
    with pytest.raises(AutotuneError, match="unknown zoo network 'resnet5'"):
        zoo.build("resnet5")
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(AutotuneError, match="batch must be a positive integer"):
            zoo.build("resnet18", batch=bad)
