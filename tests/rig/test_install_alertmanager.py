"""hack/install-alertmanager.sh with a stand-in `go` (seconds, no network): it builds
once into the cache from a copy of the module with the UI directory the module zip
leaves out, prints the path, and reuses the cache. The real build is exercised by
tests/e2e/test_alertmanager.py (and `make tools`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "install-alertmanager.sh"

# Stand-in go: `mod download -json M@V` makes a read-only module directory (as the
# module cache does) and prints it; `build -o OUT ... ./cmd/alertmanager` fails
# unless ui/app/dist exists (as `//go:embed app/dist` does), else writes OUT, which
# reports the version given in -X ...version.Version.
FAKE_GO = r"""#!/usr/bin/env bash
set -euo pipefail
echo "$PWD|$*|GOTOOLCHAIN=${GOTOOLCHAIN:-} CGO_ENABLED=${CGO_ENABLED:-}" >> "$FAKE_LOG"
case "$1" in
  mod)
    dir="$FAKE_MODCACHE/alertmanager@v0"
    mkdir -p "$dir/cmd/alertmanager" "$dir/ui/app"
    echo "module github.com/prometheus/alertmanager" > "$dir/go.mod"
    chmod -R a-w "$dir"
    printf '{\n\t"Path": "github.com/prometheus/alertmanager",\n\t"Dir": "%s",\n}\n' "$dir"
    ;;
  build)
    [ -d ui/app/dist/elm ] && [ -d ui/app/dist/mantine ] || {
      echo "ui/web.go:31:12: pattern app/dist: no matching files found" >&2; exit 1; }
    out=$(printf '%s\n' "$@" | sed -n '/^-o$/{n;p}')
    version=$(printf '%s\n' "$@" | sed -n 's/.*common\/version\.Version=\([^ ]*\).*/\1/p')
    printf '#!/bin/sh\necho "alertmanager, version %s (branch: x, revision: y)"\n' \
      "$version" > "$out"
    chmod +x "$out"
    ;;
  *) echo "fake go: unexpected $*" >&2; exit 99 ;;
esac
"""


def run_script(tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    fakes = tmp / "fakes"
    if not fakes.exists():
        fakes.mkdir()
        (fakes / "go").write_text(FAKE_GO)
        (fakes / "go").chmod(0o755)
    dropped = {"ALERTMANAGER", "ALERTMANAGER_VERSION", "GOPATH", "GOMODCACHE", "GOCACHE",
               "XDG_CACHE_HOME"}
    base = {k: v for k, v in os.environ.items() if k not in dropped}
    base.update(PATH=f"{fakes}{os.pathsep}{os.environ['PATH']}",
                STEMEDB_CACHE=str(tmp / "cache"), FAKE_LOG=str(tmp / "go.log"),
                FAKE_MODCACHE=str(tmp / "modcache"))
    return subprocess.run(["bash", str(SCRIPT)], env={**base, **env}, cwd=tmp,
                          capture_output=True, text=True, timeout=60)


def go_calls(tmp: Path) -> list[str]:
    log = tmp / "go.log"
    return log.read_text().splitlines() if log.exists() else []


def test_the_script_builds_into_the_cache_once_and_prints_the_path(tmp_path: Path) -> None:
    result = run_script(tmp_path)
    assert result.returncode == 0, result.stderr
    binary = tmp_path / "cache" / "bin" / "alertmanager-v0.35.0" / "alertmanager"
    assert result.stdout.splitlines() == [str(binary)]
    assert os.access(binary, os.X_OK)
    download, build = go_calls(tmp_path)
    assert "mod download -json github.com/prometheus/alertmanager@v0.35.0" in download
    assert "build -trimpath" in build and build.endswith("GOTOOLCHAIN=local CGO_ENABLED=0")
    # Nothing left behind but the binary (the copied source is removed).
    assert [p.name for p in binary.parent.iterdir()] == ["alertmanager"]

    again = run_script(tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [str(binary)]
    assert len(go_calls(tmp_path)) == 2, "a cached alertmanager is not rebuilt"


def test_another_version_is_built_beside_it(tmp_path: Path) -> None:
    result = run_script(tmp_path, ALERTMANAGER_VERSION="0.34.2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("/alertmanager-v0.34.2/alertmanager")
    assert "github.com/prometheus/alertmanager@v0.34.2" in go_calls(tmp_path)[0]


def test_alertmanager_from_the_environment_is_used_and_nothing_built(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.write_text("#!/bin/sh\necho 'alertmanager, version 0.28.1 (branch: x)'\n")
    mine.chmod(0o755)
    result = run_script(tmp_path, ALERTMANAGER=str(mine))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(mine)]
    assert go_calls(tmp_path) == []
