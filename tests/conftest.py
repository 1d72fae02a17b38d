"""Shared fixtures: one real control plane per test session, one namespace per test."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from localkube import ControlPlane, ensure_binaries


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    return ensure_binaries()


@pytest.fixture(scope="session")
def control_plane(bin_dir: Path) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver, started once; torn down even when tests fail."""
    with ControlPlane.running(bin_dir) as cp:
        yield cp


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A fresh namespace named after the test (no controller-manager: never reclaimed)."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    existing = json.loads(control_plane.kubectl("get", "ns", "-o", "json").stdout)["items"]
    name = f"{base}-{len(existing)}"
    control_plane.kubectl("create", "namespace", name)
    return name
