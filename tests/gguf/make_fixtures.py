#!/usr/bin/env python3
"""Reference fixtures for the GGUF reader, dequantiser and writer tests, made with PyPI `gguf`
(the llama.cpp project's own Python package) -- the reference implementation users trust.

  python3 -m venv /work/.venvs/gguf && /work/.venvs/gguf/bin/pip install gguf numpy
  /work/.venvs/gguf/bin/python tests/gguf/make_fixtures.py [--model PATH]     # writes the fixtures
  /work/.venvs/gguf/bin/python tests/gguf/make_fixtures.py --read-back FILE   # prints FILE's digest

Writes (all committed, small):
  tests/gguf/smollm2_digest.json  every tensor of SmolLM2-135M-Instruct.Q4_1.gguf: name, type, shape
      (ggml order), byte size, sha256 of the data as stored and of gguf.quants.dequantize()'s float32
      little-endian bytes; every metadata key: type, and value (scalars, strings) or count + sha256 of
      the value's GGUF encoding (arrays).
  tests/gguf/synthetic.gguf       a tiny file written by gguf.GGUFWriter: every metadata type, a
      nested array, tensors of F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 (gguf.quants.quantize of seeded
      random data) and Q2_K..Q6_K (seeded random blocks with finite scales), alignment 64.
  tests/gguf/synthetic_digest.json  the same digest of synthetic.gguf, plus for the quantisable types
      the sha256 of gguf.quants.quantize(float32 input) given as input_sha256/input file.
With --read-back, the digest of any GGUF file (used by the writer test to check that the reference
reads our output) is printed as JSON on stdout.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_MODEL = os.path.join(ROOT, ".cache", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def sha(b):
    return hashlib.sha256(b).hexdigest()


def digest(path):
    r = gguf.GGUFReader(path, "r")
    meta = []
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue  # the reader's pseudo-fields (version, counts)
        t = field.types[0]
        entry = {"key": name, "type": t.name.lower()}
        value_bytes = b"".join(p.tobytes() for p in field.parts[3:])
        if t == V.ARRAY:
            entry["element_type"] = field.types[1].name.lower()
            entry["count"] = int(field.parts[4][0])
            entry["sha256"] = sha(value_bytes)
        elif t == V.STRING:
            entry["value"] = field.parts[-1].tobytes().decode("utf-8")
        elif t in (V.FLOAT32, V.FLOAT64):
            entry["value"] = float(field.parts[-1][0])
            entry["sha256"] = sha(value_bytes)  # exact bits
        elif t == V.BOOL:
            entry["value"] = bool(field.parts[-1][0])
        else:
            entry["value"] = int(field.parts[-1][0])
        meta.append(entry)
    tensors = []
    for t in r.tensors:
        raw = np.asarray(t.data).tobytes()
        entry = {"name": t.name, "type": t.tensor_type.name, "shape": [int(x) for x in t.shape],
                 "byte_size": int(t.n_bytes), "raw_sha256": sha(raw)}
        try:
            deq = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
            entry["f32_sha256"] = sha(np.ascontiguousarray(deq, dtype="<f4").tobytes())
        except NotImplementedError:
            pass
        tensors.append(entry)
    alignment = r.alignment if hasattr(r, "alignment") else 32
    return {"version": int(r.fields["GGUF.version"].parts[-1][0]), "alignment": int(alignment),
            "data_offset": int(r.data_offset), "metadata": meta, "tensors": tensors}


def write_synthetic(path):
    rng = np.random.default_rng(20261204)
    w = gguf.GGUFWriter(path, arch="synthetic")
    w.data_alignment = 64
    w.add_uint32("general.alignment", 64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.15625)
    w.add_uint64("test.u64", 18000000000000000000)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float64("test.f64", -2.5e-300)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo, GGUF ✓")
    w.add_string("test.empty_string", "")
    w.add_array("test.array_i32", [1, -2, 3, -4])
    w.add_array("test.array_f32", [0.5, -1.25])
    w.add_array("test.array_str", ["a", "", "Ġthe", "日本"])
    w.add_array("test.array_bool", [True, False, True])
    w.add_array("test.array_nested", [[1, 2], [3], ["x", "yz"]])
    w.add_key_value("test.array_u8", [1, 2, 255], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("test.array_f64", [1e300, -0.0], V.ARRAY, sub_type=V.FLOAT64)

    inputs = {}
    shape = (3, 64)  # numpy order: 3 rows of 64 (ggml ne = [64, 3])
    for qt in (Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0):
        x = rng.standard_normal(shape).astype(np.float32) * np.float32(0.7)
        inputs[qt.name] = x
        data = gguf.quants.quantize(x, qt)
        w.add_tensor("t." + qt.name.lower(), data, raw_dtype=qt)
    # K-quants: gguf.quants cannot quantise them; random blocks with finite, moderate f16 scales.
    kshape = (2, 512)
    for qt, scale_offsets in ((Q.Q2_K, (80, 82)), (Q.Q3_K, (108,)), (Q.Q4_K, (0, 2)), (Q.Q5_K, (0, 2)),
                              (Q.Q6_K, (208,))):
        block_size, type_size = gguf.GGML_QUANT_SIZES[qt]
        n_blocks = kshape[0] * kshape[1] // block_size
        blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
        for off in scale_offsets:
            d = (rng.standard_normal(n_blocks) * 0.01).astype(np.float16)
            blocks[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
        data = blocks.reshape(kshape[0], -1)
        w.add_tensor("t." + qt.name.lower(), data, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return inputs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.environ.get("FISHER_UNLEARN_SMOLLM2", DEFAULT_MODEL))
    ap.add_argument("--read-back")
    args = ap.parse_args()
    if args.read_back:
        json.dump(digest(args.read_back), sys.stdout, indent=1)
        return
    syn = os.path.join(HERE, "synthetic.gguf")
    inputs = write_synthetic(syn)
    d = digest(syn)
    # The float32 inputs that were quantised, for the quantiser parity test (Q8_0, F16, BF16, F32).
    d["quantize_inputs"] = {k: [float(v) for v in x.reshape(-1)] for k, x in inputs.items()
                            if k in ("F32", "F16", "BF16", "Q8_0")}
    with open(os.path.join(HERE, "synthetic_digest.json"), "w") as f:
        json.dump(d, f, indent=1)
    print(f"wrote {syn} ({os.path.getsize(syn)} bytes) and synthetic_digest.json")
    if os.path.exists(args.model):
        with open(os.path.join(HERE, "smollm2_digest.json"), "w") as f:
            json.dump(digest(args.model), f, indent=1)
        print("wrote smollm2_digest.json from", args.model)
    else:
        print("model not found at", args.model, "- run scripts/fetch_smollm2.sh; smollm2_digest.json not rewritten")


if __name__ == "__main__":
    main()
