#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_gguf (tests/fuzz/corpus/fuzz_gguf/, each file < 64 kB):
  smollm2_header.gguf  the real SmolLM2-135M-Instruct.Q4_1.gguf's metadata (large arrays cut to their
                       first 64 entries) and all 272 tensor infos with their real names and types,
                       each shrunk to one block row so the file stays small (made with PyPI gguf)
  smollm2_prefix.bin   the first 16 kB of the real file (a truncated real header)
  synthetic.gguf       tests/gguf/synthetic.gguf (every metadata type, 13 tensor types)
  /work/.venvs/gguf/bin/python tests/fuzz/make_gguf_seeds.py [--model PATH]"""
import argparse
import os
import shutil

import numpy as np
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "corpus", "fuzz_gguf")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, ".cache", "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    shutil.copy(os.path.join(ROOT, "tests", "gguf", "synthetic.gguf"), os.path.join(OUT, "synthetic.gguf"))
    with open(args.model, "rb") as f:
        prefix = f.read(16384)
    with open(os.path.join(OUT, "smollm2_prefix.bin"), "wb") as f:
        f.write(prefix)
    r = gguf.GGUFReader(args.model)
    w = gguf.GGUFWriter(os.path.join(OUT, "smollm2_header.gguf"), arch=None)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        t = field.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            items = field.contents()[:64]
            w.add_key_value(name, items, t, sub_type=field.types[-1])
        else:
            w.add_key_value(name, field.contents(), t)
    w.add_key_value("general.architecture", "llama", gguf.GGUFValueType.STRING)
    for t in r.tensors:
        block, size = gguf.GGML_QUANT_SIZES[t.tensor_type]
        data = np.asarray(t.data).view(np.uint8).reshape(-1)[:size]  # one block of real data
        w.add_tensor(t.name, data.reshape(1, size), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)))


if __name__ == "__main__":
    main()
