#!/usr/bin/env bash
# The end-to-end demo (docs/experiment.md): installs what it needs, prepares the corpus, builds the
# experiment driver and runs it: a byte-level GPT is trained on a real corpus with secret canaries
# (tuning and held-out) inserted 1, 10 and 50 times, then made to forget them with each method at
# matched exposure, over 3 seeds; prints the table (mean ± sd) and writes results/<run>/.
#   ./scripts/demo.sh                          default: the KJV Bible, 3 seeds, the default methods
#   ./scripts/demo.sh --full                   all four corpora separately, every method, repeated deletion
#   ./scripts/demo.sh --corpus jargon --methods gradient_ascent fisher_removal/woodbury/empirical
#   ./scripts/demo.sh --dp                     first DP-SGD at eps 1 4 16 64 (examples/dp_sgd_lm), then the driver
#                                              with those points on its frontier plot (docs/dp_sgd.md)
#   ./scripts/demo.sh --llm                    case A on SmolLM2 (examples/case_studies, docs/case_studies.md):
#                                              real names and addresses from Debian changelogs; fetches the model
#   ./scripts/demo.sh --llm --passage          case B instead: a verbatim passage repeated r times
# Every other argument is passed to the driver (build/examples/unlearn_lm or build/examples/case_studies --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$fu_root"

if [ "${1:-}" = "--llm" ]; then
  shift
  study=a
  rest=()
  for a in "$@"; do
    if [ "$a" = "--passage" ]; then study=b; else rest+=("$a"); fi
  done
  needed=("${fu_core_packages[@]}" "${fu_demo_packages[@]}")
  [ "$study" = b ] && needed+=(fortunes)
  ensure_packages "${needed[@]}"
  echo "== fetching SmolLM2-135M-Instruct (scripts/fetch_smollm2.sh) =="
  model="$(./scripts/fetch_smollm2.sh)"
  echo "== extracting Debian changelog entries (scripts/prepare_changelogs.py) =="
  python3 scripts/prepare_changelogs.py data/changelogs/entries.jsonl
  echo "== building the case studies (build/) =="
  configure_build build -DCMAKE_BUILD_TYPE=Release
  cmake --build build --target case_studies -j "$fu_jobs"
  echo "== running: build/examples/case_studies --study $study --model $model ${rest[*]:-} =="
  exec build/examples/case_studies --threads "$fu_jobs" --study "$study" --model "$model" "${rest[@]}"
fi

args=()
corpora=()
full=0
dp=0
want_corpus=0
for a in "$@"; do
  if [ "$a" = "-h" ] || [ "$a" = "--help" ]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
  fi
  if [ "$a" = "--full" ] || [ "$a" = "--large" ]; then full=1; continue; fi
  if [ "$a" = "--dp" ]; then dp=1; continue; fi
  if [ "$a" = "--corpus" ]; then want_corpus=1; args+=("$a"); continue; fi
  if [ "$want_corpus" -eq 1 ] && [[ "$a" != --* ]]; then corpora+=("$a"); args+=("$a"); continue; fi
  want_corpus=0
  args+=("$a")
done
# --full's defaults (every corpus, every method, 5 deletion rounds) give way to what the caller names:
# `--full --corpus fortunes` runs fortunes only, `--full --methods ...` those methods.
has_arg() { local x; for x in "${args[@]}"; do [ "$x" = "$1" ] && return 0; done; return 1; }
if [ "$full" -eq 1 ]; then
  if [ ${#corpora[@]} -eq 0 ]; then corpora=(kjv fortunes jargon wordnet); args=(--corpus "${corpora[@]}" "${args[@]}"); fi
  has_arg --methods || args=(--methods all "${args[@]}")
  has_arg --deletion-rounds || args=(--deletion-rounds 5 "${args[@]}")
fi
[ ${#corpora[@]} -eq 0 ] && corpora=(kjv)

ensure_packages "${fu_core_packages[@]}" "${fu_demo_packages[@]}"
./scripts/prepare_data.sh "${corpora[@]}"

echo "== building the experiment driver (build/) =="
configure_build build -DCMAKE_BUILD_TYPE=Release
cmake --build build --target unlearn_lm -j "$fu_jobs"

if [ "$dp" -eq 1 ]; then
  cmake --build build --target dp_sgd_lm -j "$fu_jobs"
  echo "== running: build/examples/dp_sgd_lm --run dp-sgd ${args[*]} =="
  build/examples/dp_sgd_lm --threads "$fu_jobs" --run dp-sgd "${args[@]}"
  args+=(--frontier-points results/dp-sgd/dp_points.json)
fi
echo "== running: build/examples/unlearn_lm ${args[*]} =="
exec build/examples/unlearn_lm --threads "$fu_jobs" "${args[@]}"
