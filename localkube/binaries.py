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

    `STEMEDB_BIN_DIR` points at a prepared directory; otherwise the build script
    runs, which returns at once when its cache is warm.
    """
    override = os.environ.get("STEMEDB_BIN_DIR")
    if override:
        bin_dir = Path(override)
    else:
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
