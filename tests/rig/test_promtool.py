"""promtool: hack/install-promtool.sh, and the chart's alerting rules under it.

The script is checked with a stand-in `go` (seconds, no network). The rules are
checked with the real promtool the script built into the cache (`make test`
builds it first, through `make tools`; from a cold cache this fixture does).
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "install-promtool.sh"
RULES = ROOT / "charts" / "stemedb-operator" / "files" / "prometheus-rules.yaml"
RULE_TESTS = sorted((ROOT / "tests" / "promtool").glob("*.yaml"))

# Stand-in go: `install -ldflags=... PKG@VERSION` writes $GOBIN/promtool, which
# reports the version the script passed in -X ...version.Version.
FAKE_GO = r"""#!/usr/bin/env bash
set -euo pipefail
echo "$PWD|$*|GOTOOLCHAIN=${GOTOOLCHAIN:-} CGO_ENABLED=${CGO_ENABLED:-}" >> "$FAKE_LOG"
[ "$1" = install ] || { echo "fake go: unexpected $*" >&2; exit 99; }
version=$(printf '%s\n' "$@" | sed -n 's/.*common\/version\.Version=\([^ ]*\).*/\1/p')
printf '#!/bin/sh\necho "promtool, version %s (branch: x, revision: y)"\n' "$version" \
  > "$GOBIN/promtool"
chmod +x "$GOBIN/promtool"
"""


def run_script(tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    fakes = tmp / "fakes"
    if not fakes.exists():
        fakes.mkdir()
        (fakes / "go").write_text(FAKE_GO)
        (fakes / "go").chmod(0o755)
    dropped = {"PROMTOOL", "PROMETHEUS_VERSION", "GOPATH", "GOMODCACHE", "GOCACHE",
               "XDG_CACHE_HOME"}
    base = {k: v for k, v in os.environ.items() if k not in dropped}
    base.update(PATH=f"{fakes}{os.pathsep}{os.environ['PATH']}",
                STEMEDB_CACHE=str(tmp / "cache"), FAKE_LOG=str(tmp / "go.log"))
    return subprocess.run(["bash", str(SCRIPT)], env={**base, **env}, cwd=tmp,
                          capture_output=True, text=True, timeout=60)


def go_calls(tmp: Path) -> list[str]:
    log = tmp / "go.log"
    return log.read_text().splitlines() if log.exists() else []


def test_the_script_builds_into_the_cache_once_and_prints_the_path(tmp_path: Path) -> None:
    result = run_script(tmp_path)
    assert result.returncode == 0, result.stderr
    promtool = tmp_path / "cache" / "bin" / "promtool-v3.16.0" / "promtool"
    assert result.stdout.splitlines() == [str(promtool)]
    assert os.access(promtool, os.X_OK)
    [call] = go_calls(tmp_path)
    assert "github.com/prometheus/prometheus/cmd/promtool@v0.316.0" in call
    assert call.endswith("GOTOOLCHAIN=local CGO_ENABLED=0")
    # Nothing left behind but the binary.
    assert [p.name for p in promtool.parent.iterdir()] == ["promtool"]

    again = run_script(tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [str(promtool)]
    assert len(go_calls(tmp_path)) == 1, "a cached promtool is not rebuilt"


@pytest.mark.parametrize(("version", "module"), [("3.5.1", "v0.305.1"), ("3.10.0", "v0.310.0")])
def test_a_prometheus_version_maps_to_its_module_version(
    tmp_path: Path, version: str, module: str
) -> None:
    result = run_script(tmp_path, PROMETHEUS_VERSION=version)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"/promtool-v{version}/promtool")
    assert f"cmd/promtool@{module}" in go_calls(tmp_path)[0]


def test_promtool_from_the_environment_is_used_and_nothing_built(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.write_text("#!/bin/sh\necho 'promtool, version 2.53.0 (branch: x)'\n")
    mine.chmod(mine.stat().st_mode | stat.S_IXUSR)
    result = run_script(tmp_path, PROMTOOL=str(mine))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(mine)]
    assert go_calls(tmp_path) == []


def test_a_promtool_that_is_not_promtool_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_text("#!/bin/sh\necho 'something else'\n")
    other.chmod(0o755)
    result = run_script(tmp_path, PROMTOOL=str(other))
    assert result.returncode != 0
    assert "something else" in result.stderr


@pytest.fixture(scope="module")
def promtool() -> Path:
    """The real promtool from the cache (built there if missing: minutes, network)."""
    result = subprocess.run(["bash", str(SCRIPT)], stdout=subprocess.PIPE, text=True,
                            check=True, timeout=1800)
    return Path(result.stdout.strip().splitlines()[-1])


def test_promtool_accepts_the_chart_rules(promtool: Path) -> None:
    result = subprocess.run([str(promtool), "check", "rules", str(RULES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_alert_unit_tests_pass_under_promtool(promtool: Path) -> None:
    assert RULE_TESTS, "tests/promtool/*.yaml"
    result = subprocess.run([str(promtool), "test", "rules", *map(str, RULE_TESTS)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
