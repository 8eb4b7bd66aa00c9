#!/usr/bin/env bash
# Installs and prepares the real text corpora used by the experiment driver (docs/data.md):
#   kjv       King James Bible, verses           (Debian: bible-kjv)
#   fortunes  fortune(6) cookies                  (Debian: fortunes)
#   jargon    the Jargon File 4.4.7, paragraphs   (Debian: jargon-text)
#   wordnet   WordNet 3.0 synsets with glosses    (Debian: wordnet-base)
# into data/<corpus>/{train,valid}.txt (one normalised ASCII record per line, deterministic 95/5 split).
#   ./scripts/prepare_data.sh              all four corpora
#   ./scripts/prepare_data.sh kjv jargon   only these
# Idempotent: a corpus is rebuilt only when its stamp (extractor checksum + package version) changed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$fu_root"

declare -A package=([kjv]=bible-kjv [fortunes]=fortunes [jargon]=jargon-text [wordnet]=wordnet-base)
all=(kjv fortunes jargon wordnet)

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
corpora=("$@")
[ ${#corpora[@]} -eq 0 ] && corpora=("${all[@]}")
for c in "${corpora[@]}"; do
  [ -n "${package[$c]:-}" ] || { echo "unknown corpus '$c'; choose from: ${all[*]}" >&2; exit 2; }
done

needed=(python3)
for c in "${corpora[@]}"; do needed+=("${package[$c]}"); done
ensure_packages "${needed[@]}"

extractor_sum="$(md5sum scripts/prepare_data.py | cut -d' ' -f1)"
for c in "${corpora[@]}"; do
  out="data/$c"
  version="$(dpkg-query -W -f='${Version}' "${package[$c]}")"
  stamp="extractor=$extractor_sum package=${package[$c]}=$version"
  if [ -f "$out/train.txt" ] && [ -f "$out/valid.txt" ] && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "[data] $c: up to date ($out)"
    continue
  fi
  echo "[data] $c: extracting from ${package[$c]} $version ..."
  rm -f "$out/.stamp"
  python3 scripts/prepare_data.py "$c" "$out"
  printf '%s\n' "$stamp" > "$out/.stamp"
  printf '[data] %s: train %s lines %s bytes, valid %s lines %s bytes\n' "$c" \
    "$(wc -l < "$out/train.txt")" "$(wc -c < "$out/train.txt")" \
    "$(wc -l < "$out/valid.txt")" "$(wc -c < "$out/valid.txt")"
done
