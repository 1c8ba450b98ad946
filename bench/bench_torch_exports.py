"""Import real PyTorch / Hugging Face ONNX exports and compare their MACs with torch's own count.

Needs torch, torchvision, transformers and onnxscript (not dependencies of autotune; install them in
another environment and point --python at it, or run this with them installed). For each network it
exports fixed-shape files with both exporters (TorchScript and dynamo), TorchScript files with every
module a local function, dynamo files at opset 23 (its fused Attention op), and symbolic-axis files
(batch, and seq for the language models), counts MACs with torch.utils.flop_counter.FlopCounterMode
(flops / 2) at batch 1 and 8, imports every file with `--strict` at batch 1 and 8 (seq set with
--dim), and prints the ratio imported / counted. Example:

    python bench/bench_torch_exports.py --work /tmp/exports --python /path/to/torch/venv/bin/python

torchvision's ViT runs a fused attention kernel that FlopCounter does not count; its reference is
torchvision's published 17.564 GMACs instead. DETR imports at 0.9958 of the count: its first decoder
layer's self-attention and cross-attention queries are computed from constants only (learned query
embeddings through a target of zeros), which the importer folds as a compiler would.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

EXPORT = r'''
import json, sys, warnings
import torch, torchvision
from torch.utils.flop_counter import FlopCounterMode
warnings.filterwarnings("ignore")
out, names = sys.argv[1], sys.argv[2].split(",")
torch.manual_seed(0)

def macs(model, args):
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*args)
    return fc.get_total_flops() // 2

class UNetDecoder(torch.nn.Module):  # the zoo's unet_decoder
    def __init__(self, c=256):
        super().__init__()
        self.ups, self.convs = torch.nn.ModuleList(), torch.nn.ModuleList()
        for _ in range(4):
            self.ups.append(torch.nn.ConvTranspose2d(c, c // 2, 2, 2))
            self.convs.append(torch.nn.Sequential(torch.nn.Conv2d(c, c // 2, 3, padding=1), torch.nn.ReLU(),
                                                  torch.nn.Conv2d(c // 2, c // 2, 3, padding=1), torch.nn.ReLU()))
            c //= 2
        self.head = torch.nn.Conv2d(c, 2, 1)
    def forward(self, x, s0, s1, s2, s3):
        for up, conv, skip in zip(self.ups, self.convs, (s0, s1, s2, s3)):
            x = conv(torch.cat([up(x), skip], 1))
        return self.head(x)

class Hidden(torch.nn.Module):  # a Hugging Face model's last hidden state
    def __init__(self, m):
        super().__init__(); self.m = m
    def forward(self, *a):
        o = self.m(*a)
        return o.last_hidden_state if hasattr(o, "last_hidden_state") else o[0]

def hf(name):
    import transformers as T
    if name == "bert":
        m = T.BertModel(T.BertConfig(), add_pooling_layer=False)
    elif name == "gpt2":
        m = T.GPT2Model(T.GPT2Config())
    elif name == "llama":
        m = T.LlamaModel(T.LlamaConfig(hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                                       num_attention_heads=8, num_key_value_heads=2))
    elif name == "sam":  # SAM's ViT image encoder: windowed and global attention with relative positions
        from transformers.models.sam.modeling_sam import SamVisionEncoder
        cfg = T.SamVisionConfig(num_hidden_layers=4, image_size=512, global_attn_indexes=[1, 3])
        cfg._attn_implementation = "eager"  # SAM picks its attention class when built, not when run
        m = SamVisionEncoder(cfg)
    elif name == "detr":
        m = T.DetrModel(T.DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False, encoder_layers=2,
                                     decoder_layers=2))
    elif name == "deberta":  # disentangled attention: relative positions gathered by index
        m = T.DebertaV2Model(T.DebertaV2Config(num_hidden_layers=4))
    else:
        m = T.WhisperModel(T.WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6,
                                           encoder_ffn_dim=1536, num_mel_bins=80, max_source_positions=1500)).encoder
    m.config._attn_implementation = "eager"
    return Hidden(m.eval())

def build(name):
    if name in ("bert", "gpt2", "llama"):
        return hf(name), (torch.ones(1, 128, dtype=torch.long),), ["input_ids"]
    if name == "whisper":
        return hf(name), (torch.randn(1, 80, 3000),), ["input_features"]
    if name == "unet_dec":
        return UNetDecoder().eval(), tuple(torch.randn(1, c, s, s) for c, s in
                                           ((256, 14), (128, 28), (64, 56), (32, 112), (16, 224))), \
            ["x", "s0", "s1", "s2", "s3"]
    if name == "deberta":
        return hf(name), (torch.ones(1, 128, dtype=torch.long),), ["input_ids"]
    if name in ("sam", "detr"):
        return hf(name), (torch.randn(1, 3, 512, 512) if name == "sam" else torch.randn(1, 3, 320, 320),), ["x"]
    if name == "swin3d_t":  # shifted 3-D windows: rolls by 0 in some axes
        return torchvision.models.video.swin3d_t(weights=None).eval(), (torch.randn(1, 3, 16, 112, 112),), ["x"]
    if name == "mvit_v2_s":  # a video transformer: clips of 16 frames
        return torchvision.models.video.mvit_v2_s(weights=None).eval(), (torch.randn(1, 3, 16, 224, 224),), ["x"]
    kw = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    return getattr(torchvision.models, name)(weights=None, **kw).eval(), (torch.randn(1, 3, 224, 224),), ["x"]

ref = {}
for name in names:
    model, args, inputs = build(name)
    b8 = tuple(a.repeat(8, *[1] * (a.dim() - 1)) for a in args)
    ref[name] = {"b1": macs(model, args), "b8": macs(model, b8), "files": []}
    seq = name in ("bert", "gpt2", "llama")
    for dynamo in (False, True):
        tag = "dynamo" if dynamo else "torchscript"
        jobs = [("fixed", None)]
        if not dynamo:
            jobs.append(("symbolic", {n: ({0: "batch", 1: "seq"} if seq else {0: "batch"}) for n in inputs}))
            jobs.append(("functions", None))  # each module a local function of the file
        else:
            jobs.append(("opset23", None))  # fused Attention / RMSNormalization ops
        for kind, axes in jobs:
            path = f"{out}/{name}_{tag}_{kind}.onnx"
            try:
                kw = {"dynamo": dynamo, "input_names": inputs, "opset_version": 23 if kind == "opset23" else 18}
                if axes:
                    kw["dynamic_axes"] = axes
                if kind == "functions":
                    kw["export_modules_as_functions"] = True
                torch.onnx.export(model, args, path, **kw)
                ref[name]["files"].append([path, tag, kind])
            except Exception as e:
                print(f"{name} {tag} {kind}: export failed: {type(e).__name__}", file=sys.stderr)
json.dump(ref, open(f"{out}/reference.json", "w"), indent=1)
'''

NETWORKS = ["resnet50", "mobilenet_v2", "googlenet", "efficientnet_b0", "vit_b_16", "shufflenet_v2_x1_0",
            "alexnet", "bert", "gpt2", "llama", "whisper", "unet_dec", "mvit_v2_s", "swin3d_t", "sam", "detr",
            "deberta"]
#: torchvision's published count for ViT-B/16 (its fused attention kernel is invisible to FlopCounter)
PUBLISHED = {"vit_b_16": 17_563_828_224}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/autotune_exports", help="folder for the exported files")
    ap.add_argument("--python", default=sys.executable, help="a Python with torch, torchvision, transformers")
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--reuse", action="store_true", help="skip the export if reference.json is there")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    ref_path = Path(args.work) / "reference.json"
    if not (args.reuse and ref_path.exists()):
        subprocess.run([args.python, "-c", EXPORT, args.work, args.networks], check=True)
    ref = json.loads(ref_path.read_text())
    from autotune.errors import AutotuneError
    from autotune.frontends.onnx_import import load_onnx

    print(f"{'network':20s} {'exporter':12s} {'axes':9s} {'batch 1':>8s} {'batch 8':>8s}  {'import s (b1, b8)':>18s}"
          "   (MACs imported / counted, --strict)")
    worst = 0.0
    import time
    for name, r in ref.items():
        for path, tag, kind in r["files"]:
            cells, secs = [], []
            for batch in (1, 8):
                want = PUBLISHED[name] * batch if name in PUBLISHED else r["b1"] if batch == 1 else r["b8"]
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("error")
                        dims = {"seq": 128} if kind == "symbolic" and name in ("bert", "gpt2", "llama") else None
                        t0 = time.perf_counter()
                        g = load_onnx(path, batch=batch, strict=True, dims=dims)
                        secs.append(f"{time.perf_counter() - t0:.2f}")
                    ratio = g.total_macs / want
                    worst = max(worst, abs(ratio - 1))
                    cells.append(f"{ratio:8.4f}")
                except (AutotuneError, Warning) as err:
                    cells.append(f"  FAILED ({str(err)[-80:]})")
            print(f"{name:20s} {tag:12s} {kind:9s} {cells[0]} {cells[1]}  {', '.join(secs):>18s}")
    print(f"worst deviation {100 * worst:.3f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
