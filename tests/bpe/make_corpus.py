#!/usr/bin/env python3
"""Builds the tokenizer parity corpus (> 1 MB of real text) into .cache/bpe/corpus.bin from files a
Debian system has: the King James Bible as the `bible` program prints it (package bible-kjv), the
Debian changelogs of installed packages (/usr/share/doc/*/changelog.Debian.gz, raw bytes, some not
UTF-8), and C++ source (Eigen's headers, package libeigen3-dev), plus hand-written edge cases.
Chunks of about 4 kB (whole lines). Format: for each chunk, a line "CHUNK <bytes> <label>\\n", the
bytes, "\\n". tests/bpe/make_fixtures.py tokenizes it with llama.cpp; the C++ test compares every
chunk whose text hash the fixture knows (chunks from packages of another version are skipped).
  python3 tests/bpe/make_corpus.py [OUT]
"""
import glob
import gzip
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHUNK = 4096

EDGE_CASES = [
    "Hello world! I'm here, you're there; we've, they'll, she'd, it's, don't. 'S 'T 'RE shouldn't",
    "Numbers: 1 12 123 1234 12345 3.14159 -42 1e10 0x1F 2026-12-04 ١٢٣ ½ ² Ⅻ 〇",
    "Spaces:  two   three    four\tTab\t\tTwo tabs\nNew line\n\nTwo\r\nCRLF   \n  trailing   ",
    "Unicode: naïve café déjà vu Ångström ñandú Straße İstanbul ǅ Ǆ Ὀδυσσεύς Москва 東京 서울 مرحبا שלום नमस्ते",
    "Emoji 😀👍🏽 👨‍👩‍👧 ✓ ✗ → ← ∀x∈ℝ: x²≥0 — “quotes” ‘single’ … «guillemets» ¿qué? ¡sí!",
    "Code: for (int i = 0; i < n; ++i) { a[i] += b[i] * 2; } // comment\n#include <vector>\nx->y && z || !w",
    "Special-looking text: <|im_start|>user\nhi<|im_end|> <|endoftext|> <repo_name> not parsed as special",
    "Whitespace zoo: a\u00a0b\u2009c\u3000d\u200be\u2028f\u0085g \u000bh\u000ci",
    "Mixed: abc123def 4ever x86_64 GPT-2's tokenizer (v1.0) costs $5.99/month @home #tag 50% off!!!",
    "    indented code\n\tif x:\n\t\treturn y  \n",
    "'''quoted''' \"\"\"doc\"\"\" ''' '' ' 's 'll'",
    "Invalid UTF-8: \udcff\udcfe ok \udcc3( and \udce2\udc82 lone",
]


def edge_bytes(s):
    return s.encode("utf-8", "surrogateescape")


def chunks_of(data, label):
    out, start = [], 0
    while start < len(data):
        end = min(len(data), start + CHUNK)
        if end < len(data):
            nl = data.rfind(b"\n", start, end)
            if nl > start:
                end = nl + 1
        out.append((label, data[start:end]))
        start = end
    return out


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".cache", "bpe", "corpus.bin")
    chunks = [("edge", edge_bytes(s)) for s in EDGE_CASES]
    try:
        kjv = subprocess.run(["bible", "-p", "/usr/lib", "Gen1:1-Rev22:21"], check=True, capture_output=True).stdout
        chunks += chunks_of(kjv[:700_000], "kjv")
    except (OSError, subprocess.CalledProcessError) as e:
        print("make_corpus: no KJV (install bible-kjv):", e, file=sys.stderr)
    total = 0
    for path in sorted(glob.glob("/usr/share/doc/*/changelog.Debian.gz")):
        if total > 400_000:
            break
        data = gzip.open(path).read()[:20_000]
        chunks += chunks_of(data, "changelog:" + path.split("/")[4])
        total += len(data)
    code = b""
    for path in sorted(glob.glob("/usr/include/eigen3/Eigen/src/Core/*.h")):
        code += open(path, "rb").read()
        if len(code) > 250_000:
            break
    chunks += chunks_of(code, "eigen")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path + ".tmp", "wb") as f:
        for label, data in chunks:
            f.write(b"CHUNK %d %s\n" % (len(data), label.encode()))
            f.write(data)
            f.write(b"\n")
    os.replace(out_path + ".tmp", out_path)
    print(f"make_corpus: {len(chunks)} chunks, {sum(len(d) for _, d in chunks)} bytes -> {out_path}")


if __name__ == "__main__":
    main()
