#!/usr/bin/env python3
"""Computes reference sentence embeddings for all-MiniLM-L6-v2 with an
independent NumPy implementation of BERT (no candle, no ask code), so that
ask's encoder can be tested against vectors it did not produce.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy tokenizers
    /tmp/ref/bin/python scripts/reference-embedding.py MODEL_DIR > fixtures/reference/minilm.json

Follows sentence-transformers: BERT encoder, mean pooling over the attention
mask, L2 normalisation.
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


def embed(w, cfg, ids):
    p = "" if "embeddings.word_embeddings.weight" in w else "bert."
    g = lambda k: w[p + k].astype(np.float64)
    n = len(ids)
    x = g("embeddings.word_embeddings.weight")[ids] + g("embeddings.position_embeddings.weight")[:n] \
        + g("embeddings.token_type_embeddings.weight")[0]
    eps = cfg["layer_norm_eps"]
    x = layer_norm(x, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"), eps)
    heads = cfg["num_attention_heads"]
    hd = cfg["hidden_size"] // heads
    for i in range(cfg["num_hidden_layers"]):
        L = f"encoder.layer.{i}."
        lin = lambda k, h: h @ g(L + k + ".weight").T + g(L + k + ".bias")
        q = lin("attention.self.query", x).reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(n, heads, hd).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(n, heads * hd)
        x = layer_norm(lin("attention.output.dense", a) + x,
                       g(L + "attention.output.LayerNorm.weight"), g(L + "attention.output.LayerNorm.bias"), eps)
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
    json.dump({"model": "all-MiniLM-L6-v2", "pooling": "mean", "normalized": True, "embeddings": out}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
