#!/usr/bin/env bash
# Installs a current PyTorch (2.x from PyPI) for the peer benchmarks into a virtual environment under
# .cache/ (git-ignored) and prints the venv's python. Idempotent: an existing venv whose torch imports is
# reused (nothing is downloaded).
#
#   bench/peers/setup_torch_venv.sh            # torch 2.15.0 into .cache/torch-venv
#   TORCH_VERSION=2.14.1 TORCH_VENV=/path bench/peers/setup_torch_venv.sh
#
# Why not `pip install torch`: PyPI has no CPU-only torch for Linux; the default wheel pulls ~2.9 GB of
# nvidia-* wheels. This installs torch with --no-deps, its plain Python dependencies (numpy for the peer),
# and then only the nvidia wheels `import torch` itself asks for: it imports torch, reads the missing
# shared library from the error, installs the wheel that provides it (version pins from torch's own
# metadata), and repeats. On this machine that is nvidia-cufile, nvidia-cusparselt-cu13,
# nvidia-nvshmem-cu13 and nvidia-nccl-cu13 (the system NCCL lacks symbols torch needs): a ~2.1 GB venv
# that runs on the CPU (and compiles with torch.compile's C++ backend; triton is not needed there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

version="${TORCH_VERSION:-2.15.0}"
venv="${TORCH_VENV:-.cache/torch-venv}"
python="$venv/bin/python"
log="${venv}.log"
say() { echo "[torch-venv] $*" >&2; }

probe() { "$python" -c "import torch, numpy; assert torch.__version__.split('+')[0] == '$version'" 2>&1; }

if [ -x "$python" ] && probe >/dev/null; then
  echo "$python"
  exit 0
fi

mkdir -p "$(dirname "$venv")"
if [ ! -x "$python" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
pip() { "$python" -m pip install --disable-pip-version-check -q "$@" >>"$log" 2>&1; }

say "installing torch==$version (--no-deps; ~540 MB download) — log: $log"
pip --no-deps "torch==$version"
# The plain dependencies, with torch's own lower bounds (Requires-Dist lines without an nvidia/cuda/triton
# package), and numpy for the peer.
plain=$("$python" - <<'EOF'
import importlib.metadata as md
skip = ("nvidia", "cuda", "triton")
reqs = [r for r in (md.requires("torch") or []) if "extra ==" not in r]
print(" ".join(r.split(";")[0].replace(" ", "") for r in reqs if not r.lower().startswith(skip)))
EOF
)
say "installing the plain dependencies: numpy $plain"
# shellcheck disable=SC2086
pip numpy $plain

# shared library (prefix) → wheel. Pins: torch's Requires-Dist where it names the wheel; nvidia-cufile
# comes through cuda-toolkit[cufile]==13.2.2 in torch's metadata, which pins nvidia-cufile==1.17.1.22.*.
pin() {  # pin WHEEL DEFAULT_SPEC: the spec torch's metadata gives for WHEEL, else DEFAULT_SPEC
  "$python" - "$1" "$2" <<'EOF'
import importlib.metadata as md, sys
name, default = sys.argv[1], sys.argv[2]
for r in md.requires("torch") or []:
    spec = r.split(";")[0].replace(" ", "")
    if spec.lower().startswith(name + "=="):
        print(spec)
        break
else:
    print(default)
EOF
}
wheel_for() {
  case "$1" in
    libcufile*) pin nvidia-cufile 'nvidia-cufile==1.17.1.22.*' ;;
    libcusparseLt*) pin nvidia-cusparselt-cu13 nvidia-cusparselt-cu13 ;;
    libnvshmem*) pin nvidia-nvshmem-cu13 nvidia-nvshmem-cu13 ;;
    libnccl*|nccl*) pin nvidia-nccl-cu13 nvidia-nccl-cu13 ;;
    libcudnn*) pin nvidia-cudnn-cu13 nvidia-cudnn-cu13 ;;
    libcublas*) echo 'nvidia-cublas' ;;
    libcudart*) echo 'nvidia-cuda-runtime' ;;
    libnvrtc*) echo 'nvidia-cuda-nvrtc' ;;
    libnvJitLink*) echo 'nvidia-nvjitlink' ;;
    libcusparse*) echo 'nvidia-cusparse' ;;
    libcufft*) echo 'nvidia-cufft' ;;
    libcurand*) echo 'nvidia-curand' ;;
    libcusolver*) echo 'nvidia-cusolver' ;;
    libcupti*) echo 'nvidia-cuda-cupti' ;;
    libnvToolsExt*|libnvtx*) echo 'nvidia-nvtx' ;;
    *) return 1 ;;
  esac
}

installed=()
for _ in $(seq 1 12); do
  err=$("$python" -c "import torch" 2>&1 | tail -1 || true)
  [ -z "$err" ] && break
  lib=$(sed -nE 's/.*(lib[A-Za-z0-9_]+)\.so[.0-9]*: cannot open shared object file.*/\1/p' <<<"$err")
  if [ -z "$lib" ] && grep -q "undefined symbol: nccl" <<<"$err"; then lib=libnccl; fi
  spec=""
  [ -n "$lib" ] && spec=$(wheel_for "$lib" || true)
  if [ -z "$spec" ]; then
    say "import torch fails with: $err"
    say "no wheel known for it; install the matching nvidia-* wheel into $venv by hand"
    exit 1
  fi
  say "import torch needs $lib: installing $spec (--no-deps)"
  pip --no-deps "$spec"
  installed+=("$spec")
done
if ! out=$(probe); then
  say "torch still does not import: $out"
  exit 1
fi
say "ready: torch $("$python" -c 'import torch; print(torch.__version__)') in $venv (nvidia wheels: ${installed[*]:-none}); $(du -sh "$venv" | cut -f1)"
echo "$python"
