#!/usr/bin/env python3
"""Tensor-level helpers for the real-pair delta benchmark (run in the harness's venv, with numpy):

    tensor_pairs.py onnx IN.onnx OUT.safetensors    the float initializers of an ONNX model as safetensors
    tensor_pairs.py cast IN OUT f16|bf16            a float32 safetensors file cast, round to nearest even
    tensor_pairs.py change V1 V2                    how far V2's weights moved from V1's (JSON)
    tensor_pairs.py xor-zstd V1 V2 WORK             ZipLLM's baseline: XOR of same-named tensors, byte
                                                    planes, zstd -3; V2's other tensors zstd'd whole (JSON)
"""

import json
import os
import struct
import subprocess
import sys

import numpy

DTYPES = {"F32": numpy.float32, "F16": numpy.float16, "BF16": numpy.uint16, "F64": numpy.float64, "I64": numpy.int64}
WIDTH = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8}


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    out = {}
    for name, v in header.items():
        a, b = v["data_offsets"]
        out[name] = (v["dtype"], v["shape"], data[a:b])
    return meta, out


def write(path, meta, tensors):
    header, off = ({"__metadata__": meta} if meta else {}), 0
    for name, (dt, shape, raw) in tensors.items():
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, _, raw in tensors.values():
            f.write(raw)


# ONNX is protobuf: a field walk over ModelProto.graph (7), GraphProto.initializer (5) and node (1),
# NodeProto.attribute (5) with its tensor (5) and subgraphs (6, 11), TensorProto's dims (1),
# data_type (2), float_data (4), name (8) and raw_data (9).
def varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, w = key >> 3, key & 7
        if w == 0:
            v, i = varint(b, i)
        elif w == 1:
            v, i = b[i:i + 8], i + 8
        elif w == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        elif w == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {w}")
        yield f, w, v


ONNX_FLOAT = {1: "F32", 10: "F16", 16: "BF16", 11: "F64"}


def onnx_tensor(b):
    dims, dt, name, raw, floats = [], 0, "", None, []
    for f, w, v in fields(b):
        if f == 1 and w == 2:
            j = 0
            while j < len(v):
                d, j = varint(v, j)
                dims.append(d)
        elif f == 1:
            dims.append(v)
        elif f == 2:
            dt = v
        elif f == 8:
            name = bytes(v).decode()
        elif f == 9:
            raw = bytes(v)
        elif f == 4:
            floats.append(bytes(v))
    if dt not in ONNX_FLOAT or (raw is None and dt != 1):
        return None
    return name, ONNX_FLOAT[dt], dims, raw if raw is not None else b"".join(floats)


def onnx_graph(b, prefix, out):
    for f, _, v in fields(b):
        if f == 5:
            t = onnx_tensor(v)
            if t:
                out.append((prefix + t[0],) + t[1:])
        elif f == 1:
            onnx_node(v, prefix, out)


def onnx_node(b, prefix, out):
    outputs, attrs, name = [], [], ""
    for f, _, v in fields(b):
        if f == 2:
            outputs.append(bytes(v).decode())
        elif f == 3:
            name = bytes(v).decode()
        elif f == 5:
            attrs.append(v)
    for a in attrs:
        attr, graphs = "", []
        for f, _, v in fields(a):
            if f == 1:
                attr = bytes(v).decode()
            elif f == 5:
                t = onnx_tensor(v)
                if t:  # a Constant node's value takes the node's output name
                    out.append((prefix + (outputs[0] if outputs else name),) + t[1:])
            elif f in (6, 11):
                graphs.append(v)
        for k, g in enumerate(graphs):
            onnx_graph(g, f"{prefix}{name}.{attr}{k}/", out)


def onnx_to_safetensors(src, dst):
    b = memoryview(open(src, "rb").read())
    found = []
    for f, _, v in fields(b):
        if f == 7:
            onnx_graph(v, "", found)
    tensors = {}
    for name, dt, dims, raw in found:
        while name in tensors:
            name += "'"
        tensors[name] = (dt, dims, raw)
    write(dst, {"source": os.path.basename(src)}, tensors)


def bf16(x):
    u = x.astype(numpy.float32).view(numpy.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(numpy.uint16)


def cast(src, dst, to):
    meta, tensors = read(src)
    out = {}
    for name, (dt, shape, raw) in tensors.items():
        if dt == "F32":
            x = numpy.frombuffer(raw, numpy.float32)
            raw = (x.astype(numpy.float16) if to == "f16" else bf16(x)).tobytes()
            dt = to.upper()
        out[name] = (dt, shape, raw)
    write(dst, meta, out)


def as_float(dt, raw):
    if dt == "BF16":
        return (numpy.frombuffer(raw, numpy.uint16).astype(numpy.uint32) << 16).view(numpy.float32).astype(numpy.float64)
    return numpy.frombuffer(raw, DTYPES[dt]).astype(numpy.float64)


def change(v1, v2):
    """‖v2 − v1‖ ÷ ‖v1‖ over the float tensors both hold, and the share of values left equal:
    a fine-tune moves weights by a small fraction, a retrain from scratch by more than their size."""
    _, a = read(v1)
    _, b = read(v2)
    num = den = 0.0
    equal = total = 0
    for name, (dt, shape, raw) in b.items():
        if name not in a or a[name][:2] != (dt, shape) or dt not in ("F32", "F16", "BF16", "F64"):
            continue
        x, y = as_float(dt, a[name][2]), as_float(dt, raw)
        num += float(((y - x) ** 2).sum())
        den += float((x ** 2).sum())
        equal += int((numpy.frombuffer(a[name][2], numpy.uint8).reshape(-1, WIDTH[dt])
                      == numpy.frombuffer(raw, numpy.uint8).reshape(-1, WIDTH[dt])).all(axis=1).sum())
        total += x.size
    return {"relative_change": (num / den) ** 0.5 if den else None, "equal_share": equal / total if total else None}


def xor_zstd(v1, v2, work):
    _, a = read(v1)
    _, b = read(v2)
    planes = os.path.join(work, "xor.planes")
    with open(planes, "wb") as f:
        for name, (dt, shape, raw) in b.items():
            w = WIDTH.get(dt, 1)
            if name in a and a[name][:2] == (dt, shape):
                x = numpy.frombuffer(a[name][2], numpy.uint8) ^ numpy.frombuffer(raw, numpy.uint8)
                # ZipLLM groups the bytes of each position (BitX): plane k holds byte k of every value.
                f.write(numpy.ascontiguousarray(x.reshape(-1, w).T).tobytes())
            else:
                f.write(raw)
    subprocess.run(["zstd", "-q", "-3", "-f", planes, "-o", planes + ".zst"], check=True)
    size = os.path.getsize(planes + ".zst")
    os.remove(planes)
    os.remove(planes + ".zst")
    return {"xor_zstd_bytes": size}


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "onnx":
        onnx_to_safetensors(*rest)
    elif cmd == "cast":
        cast(*rest)
    elif cmd == "change":
        print(json.dumps(change(*rest)))
    elif cmd == "xor-zstd":
        print(json.dumps(xor_zstd(*rest)))
    else:
        sys.exit(__doc__)
