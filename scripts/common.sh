# Shared by scripts/*.sh: install what the project needs from Debian's packages.
# Sourced, not run. Root installs missing packages with apt-get; anyone else is told what to install.

fu_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fu_jobs="${FISHER_UNLEARN_JOBS:-$(nproc 2>/dev/null || echo 2)}"

# ensure_packages PKG... : every named Debian package is installed afterwards, or the script stops.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "[setup] installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || { echo "[setup] apt-get update failed" >&2; exit 1; }
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      { echo "[setup] apt-get install ${missing[*]} failed" >&2; exit 1; }
  else
    echo "[setup] missing Debian packages: ${missing[*]}" >&2
    echo "[setup] install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
}

# The build toolchain and the libraries every build needs.
fu_core_packages=(cmake g++ make ninja-build ccache libeigen3-dev catch2)

# What scripts/demo.sh and the experiment driver (examples/unlearn_lm) need on top of the core set:
# CLI11 and nlohmann/json (driver), gnuplot (plots), python3 (corpus extraction, scripts/prepare_data.py).
fu_demo_packages=(libcli11-dev nlohmann-json3-dev gnuplot-nox python3)

# configure_build DIR [cmake args...]: configures DIR with Ninja (Makefiles for a directory first
# configured that way) and ccache, so a rebuild of the same sources, in any clone, reuses objects.
configure_build() {
  local dir="$1"; shift
  local gen=()
  [ -f "$dir/CMakeCache.txt" ] || gen=(-G Ninja)
  export CCACHE_BASEDIR="$fu_root" CCACHE_NOHASHDIR=true CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-8G}"
  cmake -S "$fu_root" -B "$dir" "${gen[@]}" -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
        -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache "$@" >/dev/null
}
