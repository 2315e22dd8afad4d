#!/usr/bin/env python3
"""A real fine-tune for the delta benchmark: all-MiniLM-L6-v2 trained further with AdamW on
real text, so the base/fine-tune pair carries what gradient descent does to weights (not noise).

PyPI ships no base and fine-tune of the same model (see Benchmarks/results/latest-deltas.md), so
the benchmark makes one the way a team would: the sentence-transformers recipe (mean pooling,
in-batch negatives loss, AdamW lr 2e-5, weight decay 0.01, linear warm-up) on (summary, body)
pairs from the docstrings of Python's standard library. numpy with HIPS autograd, in float32.

    finetune.py MODEL.safetensors VOCAB.txt OUT.safetensors [--steps N] [--batch B] [--seq L]
"""

import argparse
import inspect
import json
import pkgutil
import importlib
import re
import struct
import sys
import time
import unicodedata

import autograd.numpy as np
from autograd import grad
import numpy

HEADS, LAYERS, EPS = 12, 6, 1e-12


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        a, b = v["data_offsets"]
        dt = {"F32": numpy.float32, "I64": numpy.int64}[v["dtype"]]
        out[name] = numpy.frombuffer(data[a:b], dt).reshape(v["shape"]).copy()
    return header.get("__metadata__"), out


def write_safetensors(path, meta, tensors):
    """The same names and order of bytes as the base, so only the values differ."""
    header, off = {}, 0
    if meta:
        header["__metadata__"] = meta
    for name, a in tensors.items():
        dt = {numpy.dtype(numpy.float32): "F32", numpy.dtype(numpy.int64): "I64"}[a.dtype]
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for a in tensors.values():
            f.write(numpy.ascontiguousarray(a).tobytes())


class WordPiece:
    """BERT's uncased tokenizer: lower case, strip accents, split on punctuation, greedy longest match."""

    def __init__(self, vocab_path):
        self.vocab = {w.rstrip("\n"): i for i, w in enumerate(open(vocab_path, encoding="utf-8"))}

    def words(self, text):
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        return re.findall(r"\w+|[^\w\s]", text)

    def encode(self, text, limit):
        ids = [self.vocab["[CLS]"]]
        for w in self.words(text):
            start, pieces = 0, []
            while start < len(w):
                end = len(w)
                while end > start:
                    piece = ("##" if start else "") + w[start:end]
                    if piece in self.vocab:
                        pieces.append(self.vocab[piece])
                        break
                    end -= 1
                if end == start:
                    pieces = [self.vocab["[UNK]"]]
                    break
                start = end
            ids += pieces
            if len(ids) >= limit - 1:
                break
        return ids[:limit - 1] + [self.vocab["[SEP]"]]


def docstring_pairs():
    """(first paragraph, the rest) of every documented function, class and method in the standard library."""
    names = sorted(m.name for m in pkgutil.iter_modules() if not m.name.startswith("_") and m.module_finder
                   and "site-packages" not in str(getattr(m.module_finder, "path", "")))
    pairs, seen = [], set()
    for name in names:
        if name in ("antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "autograd", "numpy"):
            continue
        try:
            mod = importlib.import_module(name)
        except Exception:
            continue
        members = [o for _, o in sorted(vars(mod).items()) if inspect.isfunction(o) or inspect.isclass(o) or inspect.isbuiltin(o)]
        members += [o for c in members if inspect.isclass(c) for _, o in sorted(vars(c).items()) if inspect.isfunction(o)]
        for obj in members:
            doc = inspect.getdoc(obj)
            if not doc or doc in seen:
                continue
            seen.add(doc)
            head, _, body = doc.partition("\n\n")
            if len(head) > 12 and len(body) > 40:
                pairs.append((head.replace("\n", " "), body.replace("\n", " ")))
    return pairs


def forward(p, ids, mask):
    """BertModel as all-MiniLM-L6-v2 runs it, then mean pooling and L2 normalisation."""
    b, t = ids.shape
    h = p["embeddings.word_embeddings.weight"][ids] + p["embeddings.position_embeddings.weight"][:t] \
        + p["embeddings.token_type_embeddings.weight"][0]
    h = layer_norm(h, p, "embeddings.LayerNorm")
    bias = (1.0 - mask[:, None, None, :]) * -1e4
    d = h.shape[-1] // HEADS
    for i in range(LAYERS):
        L = f"encoder.layer.{i}."
        lin = lambda x, n: np.dot(x, p[L + n + ".weight"].T) + p[L + n + ".bias"]
        split = lambda x: np.transpose(np.reshape(x, (b, t, HEADS, d)), (0, 2, 1, 3))
        q, k, v = split(lin(h, "attention.self.query")), split(lin(h, "attention.self.key")), split(lin(h, "attention.self.value"))
        s = np.einsum("bhqd,bhkd->bhqk", q, k) / numpy.sqrt(d) + bias
        s = np.exp(s - np.max(s, axis=-1, keepdims=True))
        a = np.einsum("bhqk,bhkd->bhqd", s / np.sum(s, axis=-1, keepdims=True), v)
        a = np.reshape(np.transpose(a, (0, 2, 1, 3)), (b, t, h.shape[-1]))
        h = layer_norm(lin(a, "attention.output.dense") + h, p, L + "attention.output.LayerNorm")
        m = lin(h, "intermediate.dense")
        m = 0.5 * m * (1.0 + erf(m / numpy.sqrt(2.0)))
        h = layer_norm(lin(m, "output.dense") + h, p, L + "output.LayerNorm")
    pooled = np.sum(h * mask[:, :, None], axis=1) / np.sum(mask, axis=1, keepdims=True)
    return pooled / np.sqrt(np.sum(pooled * pooled, axis=1, keepdims=True))


def erf(x):
    """Abramowitz and Stegun 7.1.26 (error below 1.5e-7, under float32's step near 1): numpy has no
    erf, and BERT's GELU is the exact one, not the tanh approximation."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
    return s * y


def layer_norm(x, p, name):
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * p[name + ".weight"] + p[name + ".bias"]


def loss(p, a_ids, a_mask, b_ids, b_mask):
    """In-batch negatives (MultipleNegativesRankingLoss): each summary against every body, scale 20."""
    s = 20.0 * np.dot(forward(p, a_ids, a_mask), forward(p, b_ids, b_mask).T)
    s = s - np.max(s, axis=1, keepdims=True)
    return -np.mean(np.diag(s) - np.log(np.sum(np.exp(s), axis=1)))


def batch(tok, texts, seq):
    ids = numpy.zeros((len(texts), seq), numpy.int64)
    mask = numpy.zeros((len(texts), seq), numpy.float32)
    for i, t in enumerate(texts):
        e = tok.encode(t, seq)
        ids[i, :len(e)], mask[i, :len(e)] = e, 1.0
    return ids, mask


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("vocab")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-5)
    args = ap.parse_args()
    meta, tensors = read_safetensors(args.model)
    trainable = {k: v for k, v in tensors.items() if v.dtype == numpy.float32}
    tok = WordPiece(args.vocab)
    pairs = docstring_pairs()
    rng = numpy.random.default_rng(20261205)
    order = rng.permutation(len(pairs))
    print(f"{len(pairs)} (summary, body) pairs from the standard library's docstrings", file=sys.stderr)
    g = grad(loss)
    m = {k: numpy.zeros_like(v) for k, v in trainable.items()}
    v2 = {k: numpy.zeros_like(v) for k, v in trainable.items()}
    b1, b2, wd, warm = 0.9, 0.999, 0.01, max(1, args.steps // 10)
    start = time.time()
    for step in range(1, args.steps + 1):
        pick = [pairs[order[(step * args.batch + j) % len(pairs)]] for j in range(args.batch)]
        a_ids, a_mask = batch(tok, [x for x, _ in pick], args.seq)
        b_ids, b_mask = batch(tok, [y for _, y in pick], args.seq)
        grads = g(trainable, a_ids, a_mask, b_ids, b_mask)
        lr = args.lr * min(step / warm, (args.steps - step + 1) / (args.steps - warm + 1))
        for k, w in trainable.items():
            gk = grads[k].astype(numpy.float32)
            m[k] = b1 * m[k] + (1 - b1) * gk
            v2[k] = b2 * v2[k] + (1 - b2) * gk * gk
            mh, vh = m[k] / (1 - b1 ** step), v2[k] / (1 - b2 ** step)
            # AdamW as torch.optim.AdamW: decoupled weight decay, then the Adam step.
            w *= numpy.float32(1 - lr * wd)
            w -= (lr * mh / (numpy.sqrt(vh) + 1e-8)).astype(numpy.float32)
        if step == 1 or step % 20 == 0 or step == args.steps:
            l = loss(trainable, a_ids, a_mask, b_ids, b_mask)
            print(f"step {step}/{args.steps} loss {float(l):.4f} ({time.time() - start:.0f} s)", file=sys.stderr)
    write_safetensors(args.out, meta, tensors)


if __name__ == "__main__":
    main()
