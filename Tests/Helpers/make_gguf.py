#!/usr/bin/env python3
"""Test-only: writes small GGUF models with llama.cpp's own Python writer (the `gguf` package).

usage: make_gguf.py OUT TYPE SEED [--changed K] [--template TEXT] [--layers N] [--dim D]
TYPE: f16, bf16, f32 or q8_0 (the type of the 2-D weight tensors; norms stay f32).
--changed K: tensors 0..K-1 of the weights get new values (a fine-tune that touched K tensors);
everything else is bit-identical to the same SEED without it. --template: the chat template.
"""
import argparse
import numpy as np
import gguf

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("type", choices=["f16", "bf16", "f32", "q8_0"])
p.add_argument("seed", type=int)
p.add_argument("--changed", type=int, default=0)
p.add_argument("--template", default="{% for m in messages %}{{ m.content }}{% endfor %}")
p.add_argument("--layers", type=int, default=4)
p.add_argument("--dim", type=int, default=256)
a = p.parse_args()

w = gguf.GGUFWriter(a.out, "llama")
w.add_name("slmstore-test")
w.add_block_count(a.layers)
w.add_context_length(2048)
w.add_embedding_length(a.dim)
w.add_chat_template(a.template)
w.add_tokenizer_model("gpt2")
w.add_token_list([f"tok{i}" for i in range(512)])

rng = np.random.default_rng(a.seed)
names = ["token_embd.weight"] + [f"blk.{i}.{t}.weight" for i in range(a.layers) for t in ("attn_q", "attn_k", "ffn_up")]
for n, name in enumerate(names):
    base = rng.standard_normal((a.dim, a.dim)).astype(np.float32) * 0.02
    if n < a.changed:
        # A fine-tune: every weight of the tensor nudged a little.
        base = base + np.random.default_rng(a.seed * 1000 + n).standard_normal(base.shape).astype(np.float32) * 0.002
    if a.type == "f32":
        w.add_tensor(name, base)
    elif a.type == "f16":
        w.add_tensor(name, base.astype(np.float16))
    elif a.type == "bf16":
        q = gguf.quants.quantize(base, gguf.GGMLQuantizationType.BF16)
        w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.BF16)
    else:
        q = gguf.quants.quantize(base, gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    if n == 0:
        w.add_tensor("output_norm.weight", np.ones(a.dim, dtype=np.float32))

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
