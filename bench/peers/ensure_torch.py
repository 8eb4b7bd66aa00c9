"""Imports PyTorch, installing it first when it is missing.

Order: the running interpreter's torch; else, on Debian as root, `apt-get install python3-torch` (it
installs for /usr/bin/python3, so the script re-executes itself under that interpreter); else
`pip install torch` for the running interpreter. Prints what it does; raises SystemExit with the
command to run by hand when nothing works.
"""
import os
import shutil
import subprocess
import sys


def _try_import():
    try:
        import torch  # noqa: F401
        return torch
    except ImportError:
        return None


def _reexec_with(python):
    print(f"[peer] re-running under {python} (where python3-torch is installed)", file=sys.stderr, flush=True)
    os.execv(python, [python] + sys.argv)


def import_torch():
    torch = _try_import()
    if torch is not None:
        return torch
    debian_python = "/usr/bin/python3"
    if os.path.realpath(sys.executable) != os.path.realpath(debian_python) and os.path.exists(debian_python):
        probe = subprocess.run([debian_python, "-c", "import torch"], capture_output=True)
        if probe.returncode == 0:
            _reexec_with(debian_python)
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("[peer] torch is missing: apt-get install python3-torch", file=sys.stderr, flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        ok = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "python3-torch"], env=env).returncode == 0
        if not ok:
            subprocess.run(["apt-get", "update"], env=env)
            ok = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "python3-torch"],
                                env=env).returncode == 0
        if ok:
            if os.path.realpath(sys.executable) != os.path.realpath(debian_python):
                _reexec_with(debian_python)
            torch = _try_import()
            if torch is not None:
                return torch
    print("[peer] torch is missing: pip install torch", file=sys.stderr, flush=True)
    if subprocess.run([sys.executable, "-m", "pip", "install", "torch"]).returncode == 0:
        torch = _try_import()
        if torch is not None:
            return torch
    raise SystemExit("PyTorch is not available. Install it with `apt-get install python3-torch` (Debian, then run "
                     "with /usr/bin/python3) or `pip install torch`, and run this script again.")


def functorch_transforms(torch):
    """(vmap, grad): torch.func on PyTorch >= 2.0, the functorch package on 1.13."""
    try:
        from torch.func import grad, vmap
        return vmap, grad
    except ImportError:
        from functorch import grad, vmap
        return vmap, grad
