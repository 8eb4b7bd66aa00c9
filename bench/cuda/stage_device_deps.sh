#!/usr/bin/env bash
# Copies the C++ dependencies the GPU machine's image lacks (Eigen 3.4, Catch2 2.13, Google Benchmark,
# each with its CMake package files, relocatable) from this machine into <repo>/.devdeps, and makes git
# ignore that folder, so that a device run can carry it:
#   bash bench/cuda/stage_device_deps.sh           # here, once (about 11 MB)
#   run: bash bench/cuda/run_device_checks.sh "$OUT"   with carry: [".devdeps"]
# run_device_checks.sh uses .devdeps only when it exists. Debian/Ubuntu layouts (x86-64) assumed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
deps="$root/.devdeps"
arch_lib=/usr/lib/x86_64-linux-gnu
rm -rf "$deps"
mkdir -p "$deps/include" "$deps/share" "$deps/lib/cmake" "$deps/lib/x86_64-linux-gnu/cmake"
cp -a /usr/include/eigen3 "$deps/include/"
cp -a /usr/share/eigen3 "$deps/share/"
cp -a /usr/include/catch2 "$deps/include/"
cp -a /usr/lib/cmake/Catch2 "$deps/lib/cmake/"
cp -a /usr/lib/libCatch2WithMain.a "$deps/lib/"
cp -a /usr/include/benchmark "$deps/include/"
cp -a "$arch_lib"/cmake/benchmark "$deps/lib/x86_64-linux-gnu/cmake/"
cp -a "$arch_lib"/libbenchmark.so* "$arch_lib"/libbenchmark_main.a "$deps/lib/x86_64-linux-gnu/"
exclude="$root/.git/info/exclude"
grep -qxF '/.devdeps/' "$exclude" 2>/dev/null || echo '/.devdeps/' >>"$exclude"
du -sh "$deps"
