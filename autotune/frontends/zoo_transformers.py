"""Built-in transformers, laid out as the ONNX importer maps their Hugging Face / torchvision exports.

Each attention block: q/k/v fc, heads split by a reshape and a transpose (layout layers), the score
matmul, one scale (and mask) element-wise pass, softmax, the value matmul, heads merged, output fc.
Embedding lookups read token ids (a layout layer, no MACs); position and token-type tables are
constants added element-wise. Their tables are not layer weights, so `Graph.params` counts the
published total minus the embedding tables (tests/test_zoo.py says which).
"""

from __future__ import annotations

from autotune.ir.graph import Graph, GraphBuilder


def _heads(b: GraphBuilder, x: str, B: int, S: int, h: int, dh: int, name: str) -> str:
    """(B, S, h*dh) -> (B, h, S, dh): a reshape, then a transpose."""
    x = b.add("reshape", [x], f"{name}.split", shape=(B, S, h, dh))
    return b.add("layout", [x], f"{name}.heads", shape=(B, h, S, dh), mode="transpose")


def _rope(b: GraphBuilder, x: str, name: str) -> str:
    """Rotary position embedding as exported: x * cos + rotate_half(x) * sin (cos and sin constants)."""
    s = b.shape(x)
    c = b.add("eltwise", [x], f"{name}.cos", mode="mul")
    r = b.add("layout", [x], f"{name}.rotate_half", shape=s, mode="rotate_half")
    r = b.add("eltwise", [r], f"{name}.sin", mode="mul")
    return b.eltwise([c, r], name=f"{name}.rope")


def attention(b: GraphBuilder, x: str, p: str, heads: int, kv_heads: int | None = None, rope: bool = False,
              bias: bool = True, masked: bool = False, k_bias: bool | None = None) -> str:
    """Multi-head (or grouped-query, kv_heads < heads) self-attention on (B, S, D); returns the output
    projection (before the residual add). `k_bias`: the key projection's bias when it differs (Whisper)."""
    B, S, D = b.shape(x)
    dh, kvh = D // heads, kv_heads or heads
    q = b.fc(x, D, bias=bias, name=f"{p}.q_proj")
    k = b.fc(x, kvh * dh, bias=bias if k_bias is None else k_bias, name=f"{p}.k_proj")
    v = b.fc(x, kvh * dh, bias=bias, name=f"{p}.v_proj")
    q, k, v = (_heads(b, t, B, S, n, dh, f"{p}.{t_name}") for t, n, t_name in ((q, heads, "q"), (k, kvh, "k"),
                                                                                 (v, kvh, "v")))
    if rope:
        q, k = _rope(b, q, f"{p}.q"), _rope(b, k, f"{p}.k")
    if kvh != heads:  # repeat_kv: every query head reads its group's key/value head
        k = b.add("layout", [k], f"{p}.k.repeat_kv", shape=(B, heads, S, dh), mode="expand")
        v = b.add("layout", [v], f"{p}.v.repeat_kv", shape=(B, heads, S, dh), mode="expand")
    kt = b.add("layout", [k], f"{p}.k.transpose", shape=(B, heads, dh, S), mode="transpose")
    s = b.add("matmul", [q, kt], f"{p}.qk")
    s = b.add("eltwise", [s], f"{p}.scale", mode="mul")
    if masked:  # causal (or padding) mask added to the scores
        s = b.add("eltwise", [s], f"{p}.mask", mode="add")
    a = b.add("softmax", [s], f"{p}.softmax")
    o = b.add("matmul", [a, v], f"{p}.av")
    o = b.add("layout", [o], f"{p}.merge_heads", shape=(B, S, heads, dh), mode="transpose")
    o = b.add("reshape", [o], f"{p}.merge", shape=(B, S, D))
    return b.fc(o, D, bias=bias, name=f"{p}.o_proj")


def mlp(b: GraphBuilder, x: str, p: str, hidden: int, act: str = "gelu") -> str:
    D = b.shape(x)[-1]
    return b.fc(b.fc(x, hidden, act=act, name=f"{p}.fc1"), D, name=f"{p}.fc2")


def swiglu(b: GraphBuilder, x: str, p: str, hidden: int) -> str:
    """Llama's MLP: down(silu(gate(x)) * up(x)), no biases."""
    D = b.shape(x)[-1]
    g = b.fc(x, hidden, act="silu", bias=False, name=f"{p}.gate_proj")
    u = b.fc(x, hidden, bias=False, name=f"{p}.up_proj")
    return b.fc(b.eltwise([g, u], mode="mul", name=f"{p}.gate_mul"), D, bias=False, name=f"{p}.down_proj")


def _ids(b: GraphBuilder, batch: int, seq: int, d: int) -> str:
    ids = b.input("input_ids", (batch, seq))
    return b.add("layout", [ids], "embed_tokens", shape=(batch, seq, d), mode="gather")


def bert_base(batch: int = 1, seq: int = 128) -> Graph:
    """BERT-base encoder (Devlin et al. 2019; HF BertModel without the pooler): 12 post-LN layers,
    d=768, 12 heads, FFN 3072, GELU."""
    d, L = 768, 12
    b = GraphBuilder("bert_base", batch)
    x = _ids(b, batch, seq, d)
    x = b.add("eltwise", [x], "embeddings.token_type", mode="add")
    x = b.add("eltwise", [x], "embeddings.position", mode="add")
    x = b.add("norm", [x], "embeddings.LayerNorm", mode="layer")
    for i in range(L):
        p = f"encoder.layer.{i}"
        a = attention(b, x, f"{p}.attention", 12, masked=True)
        x = b.add("norm", [b.eltwise([x, a], name=f"{p}.attention.add")], f"{p}.attention.LayerNorm", mode="layer")
        m = mlp(b, x, f"{p}.mlp", 4 * d)
        x = b.add("norm", [b.eltwise([x, m], name=f"{p}.output.add")], f"{p}.output.LayerNorm", mode="layer")
    return b.build()


def gpt2_small(batch: int = 1, seq: int = 128) -> Graph:
    """GPT-2 small (Radford et al. 2019; HF GPT2Model, no LM head): 12 pre-LN causal layers, d=768,
    12 heads, FFN 3072, GELU, a final LayerNorm."""
    d, L = 768, 12
    b = GraphBuilder("gpt2_small", batch)
    x = b.add("eltwise", [_ids(b, batch, seq, d)], "wpe", mode="add")
    for i in range(L):
        p = f"h.{i}"
        a = attention(b, b.add("norm", [x], f"{p}.ln_1", mode="layer"), f"{p}.attn", 12, masked=True)
        x = b.eltwise([x, a], name=f"{p}.add_1")
        m = mlp(b, b.add("norm", [x], f"{p}.ln_2", mode="layer"), f"{p}.mlp", 4 * d)
        x = b.eltwise([x, m], name=f"{p}.add_2")
    b.add("norm", [x], "ln_f", mode="layer")
    return b.build()


def llama_1b(batch: int = 1, seq: int = 128) -> Graph:
    """A Llama-style decoder at TinyLlama-1.1B's size (Zhang et al. 2024): 22 pre-RMSNorm layers,
    d=2048, 32 query heads sharing 4 key/value heads (grouped-query attention), rotary positions,
    SwiGLU FFN 5632, no biases, a final RMSNorm; no LM head."""
    d, L = 2048, 22
    b = GraphBuilder("llama_1b", batch)
    x = _ids(b, batch, seq, d)
    for i in range(L):
        p = f"layers.{i}"
        h = b.add("norm", [x], f"{p}.input_layernorm", mode="rms")
        a = attention(b, h, f"{p}.self_attn", 32, kv_heads=4, rope=True, bias=False, masked=True)
        x = b.eltwise([x, a], name=f"{p}.add_1")
        m = swiglu(b, b.add("norm", [x], f"{p}.post_attention_layernorm", mode="rms"), f"{p}.mlp", 5632)
        x = b.eltwise([x, m], name=f"{p}.add_2")
    b.add("norm", [x], "norm", mode="rms")
    return b.build()


def whisper_tiny_encoder(batch: int = 1, frames: int = 3000) -> Graph:
    """Whisper-tiny's audio encoder (Radford et al. 2022): two Conv1d + GELU over 80 log-mel bins (the
    second halves the frames), positions added, 4 pre-LN layers, d=384, 6 heads, FFN 1536."""
    d, L = 384, 4
    b = GraphBuilder("whisper_tiny_encoder", batch)
    x = b.input("input_features", (batch, 80, frames))
    x = b.conv(x, d, 3, 1, act="gelu", name="conv1")
    x = b.conv(x, d, 3, 2, act="gelu", name="conv2")
    T = b.shape(x)[2]
    x = b.add("layout", [x], "permute", shape=(batch, T, d), mode="transpose")
    x = b.add("eltwise", [x], "embed_positions", mode="add")
    for i in range(L):
        p = f"layers.{i}"
        a = attention(b, b.add("norm", [x], f"{p}.self_attn_layer_norm", mode="layer"), f"{p}.self_attn", 6,
                      k_bias=False)
        x = b.eltwise([x, a], name=f"{p}.add_1")
        m = mlp(b, b.add("norm", [x], f"{p}.final_layer_norm", mode="layer"), f"{p}.mlp", 4 * d)
        x = b.eltwise([x, m], name=f"{p}.add_2")
    b.add("norm", [x], "layer_norm", mode="layer")
    return b.build()


def vit_b16(batch: int = 1) -> Graph:
    """torchvision's ViT-B/16 at 224x224: patchify conv, class token, 12 pre-norm encoder layers, head.
    q/k/v are three fc layers (torchvision fuses them into one in_proj: same MACs and params). The
    class token and position embedding (152k parameters) are constants, not layer weights."""
    d, seq = 768, 197
    b = GraphBuilder("vit_b16", batch)
    x = b.input("input", (batch, 3, 224, 224))
    x = b.conv(x, d, 16, 16, 0, act="", name="conv_proj")
    x = b.add("reshape", [x], "conv_proj.flatten", shape=(batch, d, seq - 1))
    x = b.add("layout", [x], "conv_proj.permute", shape=(batch, seq - 1, d), mode="transpose")
    x = b.add("layout", [x], "concat_class_token", shape=(batch, seq, d), mode="concat")
    x = b.add("eltwise", [x], "encoder.pos_embedding", mode="add")
    for i in range(12):
        p = f"encoder.layers.encoder_layer_{i}"
        a = attention(b, b.add("norm", [x], f"{p}.ln_1", mode="layer"), f"{p}.self_attention", 12)
        x = b.eltwise([x, a], name=f"{p}.add_1")
        m = mlp(b, b.add("norm", [x], f"{p}.ln_2", mode="layer"), f"{p}.mlp", 4 * d)
        x = b.eltwise([x, m], name=f"{p}.add_2")
    x = b.add("norm", [x], "encoder.ln", mode="layer")
    x = b.add("layout", [x], "select_class_token", shape=(batch, d), mode="gather")
    b.fc(x, 1000, name="heads.head")
    return b.build()
