#!/usr/bin/env python3
"""Tokenizes the parity corpus (.cache/bpe/corpus.bin, from tests/bpe/make_corpus.py) with llama.cpp
itself -- llama-cpp-python 0.3.36, Llama(model_path, vocab_only=True).tokenize(bytes, add_bos=False,
special=False), i.e. llama_tokenize(add_special=false, parse_special=false) -- and writes
tests/bpe/smollm2_tokens.json: per chunk its label, byte count, SHA-256 of its bytes, token count and
SHA-256 of the token ids (int32 little-endian); the ids themselves for the hand-written edge cases,
and for those also with special=True (parse_special=true).
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \\
      pip install llama-cpp-python==0.3.36        # into e.g. /work/.venvs/llamacpp
  /work/.venvs/llamacpp/bin/python tests/bpe/make_fixtures.py [--model PATH] [--corpus PATH]
"""
import argparse
import hashlib
import json
import os
import struct

import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_corpus(path):
    chunks = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        _, size, label = data[pos:nl].split(b" ", 2)
        size = int(size)
        chunks.append((label.decode(), data[nl + 1:nl + 1 + size]))
        pos = nl + 1 + size + 1
    return chunks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, ".cache", "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--corpus", default=os.path.join(ROOT, ".cache", "bpe", "corpus.bin"))
    args = ap.parse_args()
    llm = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False)
    out = {"tokenizer": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}", "model": os.path.basename(args.model),
           "chunks": []}
    total_bytes = total_tokens = 0
    for label, text in read_corpus(args.corpus):
        ids = llm.tokenize(text, add_bos=False, special=False)
        packed = struct.pack("<%di" % len(ids), *ids)
        entry = {"label": label, "bytes": len(text), "text_sha256": hashlib.sha256(text).hexdigest(),
                 "n_tokens": len(ids), "tokens_sha256": hashlib.sha256(packed).hexdigest()}
        if label == "edge":
            entry["tokens"] = ids
            entry["tokens_special"] = llm.tokenize(text, add_bos=False, special=True)
        out["chunks"].append(entry)
        total_bytes += len(text)
        total_tokens += len(ids)
    out["total_bytes"], out["total_tokens"] = total_bytes, total_tokens
    path = os.path.join(ROOT, "tests", "bpe", "smollm2_tokens.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=0)
    print(f"wrote {path}: {len(out['chunks'])} chunks, {total_bytes} bytes, {total_tokens} tokens")


if __name__ == "__main__":
    main()
