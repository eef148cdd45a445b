#!/usr/bin/env python3
"""Computes reference sentence embeddings with an independent NumPy
implementation of BERT and of MPNet (no candle, no ask code), so that ask's
encoder can be tested against vectors it did not produce.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy tokenizers
    /tmp/ref/bin/python scripts/reference-embedding.py MODELS/all-MiniLM-L6-v2 > fixtures/reference/minilm.json
    /tmp/ref/bin/python scripts/reference-embedding.py MODELS/all-mpnet-base-v2 > fixtures/reference/mpnet.json

Follows sentence-transformers: the encoder (config.json's model_type), mean
pooling over the attention mask, L2 normalisation. MPNet follows Hugging
Face's modeling_mpnet.py: positions count from pad_token_id + 1, no token
types, and one learned relative-position bias (32 buckets, shared by all
layers) added to every layer's attention scores.
"""
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

SENTENCES = [
    "The landlord will return the deposit by March 15.",
    "Bake the loaf in a Dutch oven at 250 degrees.",
    "short",
]


def load_safetensors(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            continue  # position_ids buffers and the like
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(raw[base + a : base + b], dtype="<f4").reshape(meta["shape"])
    return out


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def relative_position_bucket(rel, num_buckets=32, max_distance=128):
    """MPNet's (and T5's) bidirectional bucket of a relative position
    (key position minus query position)."""
    ret = 0
    n = -rel
    num_buckets //= 2
    if n < 0:
        ret += num_buckets
    n = abs(n)
    max_exact = num_buckets // 2
    if n < max_exact:
        return ret + n
    large = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact))
    return ret + min(large, num_buckets - 1)


# Tensor names inside a layer: query, key, value, attention output, its norm.
NAMES = {
    "bert": ("attention.self.query", "attention.self.key", "attention.self.value",
             "attention.output.dense", "attention.output.LayerNorm"),
    "mpnet": ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o", "attention.LayerNorm"),
}


def embed(w, cfg, ids):
    family = "mpnet" if cfg.get("model_type") == "mpnet" else "bert"
    p = "" if "embeddings.word_embeddings.weight" in w else family + "."
    g = lambda k: w[p + k].astype(np.float64)
    n = len(ids)
    if family == "mpnet":
        # Positions count from the padding id + 1; no token types.
        positions = [cfg["pad_token_id"] + 1 + i for i in range(n)]
        x = g("embeddings.word_embeddings.weight")[ids] + g("embeddings.position_embeddings.weight")[positions]
        table = g("encoder.relative_attention_bias.weight")  # [buckets, heads]
        buckets = np.array([[relative_position_bucket(j - i, cfg.get("relative_attention_num_buckets", 32))
                             for j in range(n)] for i in range(n)])
        bias = table[buckets].transpose(2, 0, 1)  # [heads, n, n], the same in every layer
    else:
        x = g("embeddings.word_embeddings.weight")[ids] + g("embeddings.position_embeddings.weight")[:n] \
            + g("embeddings.token_type_embeddings.weight")[0]
        bias = 0.0
    eps = cfg["layer_norm_eps"]
    x = layer_norm(x, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"), eps)
    heads = cfg["num_attention_heads"]
    hd = cfg["hidden_size"] // heads
    q_name, k_name, v_name, o_name, norm_name = NAMES[family]
    for i in range(cfg["num_hidden_layers"]):
        L = f"encoder.layer.{i}."
        lin = lambda k, h: h @ g(L + k + ".weight").T + g(L + k + ".bias")
        q = lin(q_name, x).reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin(k_name, x).reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin(v_name, x).reshape(n, heads, hd).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(n, heads * hd)
        x = layer_norm(lin(o_name, a) + x, g(L + norm_name + ".weight"), g(L + norm_name + ".bias"), eps)
        h = gelu(lin("intermediate.dense", x))
        x = layer_norm(lin("output.dense", h) + x, g(L + "output.LayerNorm.weight"), g(L + "output.LayerNorm.bias"), eps)
    v = x.mean(0)
    return v / np.linalg.norm(v)


def main():
    d = Path(sys.argv[1])
    cfg = json.loads((d / "config.json").read_text())
    w = load_safetensors(d / "model.safetensors")
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    out = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        out.append({"text": s, "tokens": len(ids), "vector": [round(float(x), 6) for x in embed(w, cfg, ids)]})
    json.dump({"model": d.name, "pooling": "mean", "normalized": True, "embeddings": out}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
