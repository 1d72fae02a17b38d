"""hack/sync-crd.sh copies the one CRD into the chart; hack/check-crd-drift.sh fails on drift."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.chart.conftest import CRD_CHART_COPY, CRD_SOURCE, FIXTURES, ROOT

SYNC = ROOT / "hack" / "sync-crd.sh"
DRIFT = ROOT / "hack" / "check-crd-drift.sh"


def run(script: Path, src: Path, dst: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRD_SRC": str(src), "CRD_DST": str(dst)}
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)


@pytest.fixture
def placeholder(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "crds" / "stemedbclusters.stemedb.io.yaml"
    src.parent.mkdir()
    shutil.copy(FIXTURES / "placeholder-stemedbcluster-crd.yaml", src)
    return src, tmp_path / "chart" / "crds" / "stemedbclusters.stemedb.io.yaml"


def test_sync_copies_the_crd_and_the_drift_check_then_passes(
    placeholder: tuple[Path, Path],
) -> None:
    src, dst = placeholder
    assert run(DRIFT, src, dst).returncode == 1, "no copy yet must count as drift"
    synced = run(SYNC, src, dst)
    assert synced.returncode == 0, synced.stderr
    assert dst.read_bytes() == src.read_bytes()
    ok = run(DRIFT, src, dst)
    assert ok.returncode == 0, ok.stderr
    assert "matches" in ok.stdout
    again = run(SYNC, src, dst)
    assert "up to date" in again.stdout


def test_the_drift_check_fails_with_a_diff_and_the_fix_when_the_copy_is_edited(
    placeholder: tuple[Path, Path],
) -> None:
    src, dst = placeholder
    run(SYNC, src, dst)
    dst.write_text(dst.read_text().replace("v1alpha1", "v1beta1"))
    drift = run(DRIFT, src, dst)
    assert drift.returncode == 1
    assert "-    - name: v1alpha1" in drift.stderr and "+    - name: v1beta1" in drift.stderr
    assert "run hack/sync-crd.sh" in drift.stderr


def test_the_drift_check_fails_when_the_source_changes(placeholder: tuple[Path, Path]) -> None:
    src, dst = placeholder
    run(SYNC, src, dst)
    src.write_text(src.read_text() + "# a new field\n")
    assert run(DRIFT, src, dst).returncode == 1


def test_the_repository_chart_carries_the_current_crd() -> None:
    if not CRD_SOURCE.exists():
        pytest.skip("crds/stemedbclusters.stemedb.io.yaml has not landed yet")
    result = subprocess.run(["bash", str(DRIFT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert CRD_CHART_COPY.read_bytes() == CRD_SOURCE.read_bytes()
