#!/usr/bin/env bash
# The end-to-end demo (docs/experiment.md): installs what it needs, prepares the corpus, builds the
# experiment driver and runs it: a byte-level GPT is trained on a real corpus with secret canaries
# inserted 1, 10 and 50 times, then made to forget them with every unlearning method; prints the table.
#   ./scripts/demo.sh                          default: the KJV Bible, a small model (minutes on 2 cores)
#   ./scripts/demo.sh --large                  all four corpora, 100 kB each, 1000 steps (about twice as long)
#   ./scripts/demo.sh --corpus jargon --methods gradient_ascent fisher_removal/woodbury/empirical
# Every other argument is passed to the driver (build/examples/unlearn_lm --help lists them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$fu_root"

args=()
corpora=()
large=0
want_corpus=0
for a in "$@"; do
  if [ "$a" = "-h" ] || [ "$a" = "--help" ]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
  fi
  if [ "$a" = "--large" ]; then large=1; continue; fi
  if [ "$a" = "--corpus" ]; then want_corpus=1; args+=("$a"); continue; fi
  if [ "$want_corpus" -eq 1 ] && [[ "$a" != --* ]]; then corpora+=("$a"); args+=("$a"); continue; fi
  want_corpus=0
  args+=("$a")
done
if [ "$large" -eq 1 ]; then
  corpora=(kjv fortunes jargon wordnet)
  args=(--corpus "${corpora[@]}" --train-bytes 100000 --valid-bytes 20000 --steps 1000 "${args[@]}")
fi
[ ${#corpora[@]} -eq 0 ] && corpora=(kjv)

ensure_packages "${fu_core_packages[@]}" "${fu_demo_packages[@]}"
./scripts/prepare_data.sh "${corpora[@]}"

echo "== building the experiment driver (build/) =="
configure_build build -DCMAKE_BUILD_TYPE=Release
cmake --build build --target unlearn_lm -j "$fu_jobs"

echo "== running: build/examples/unlearn_lm ${args[*]} =="
exec build/examples/unlearn_lm --threads "$fu_jobs" "${args[@]}"
