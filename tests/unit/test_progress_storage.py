"""Kopf's retry state of the on.delete handler is each replica's own.

With leader election or sharding every replica runs on.delete for a deleting
cluster; those that must not act retry it. Sharing one annotation, their retries
set the actor's "delayed until" and retry count: a sharded deletion could wait
until a replica stopped.
"""

from __future__ import annotations

import re
from typing import Any

import kopf
import pytest

from controller import handlers
from controller.handlers import LeaderElection, Sharding, _Config, _progress_storage

# An annotation key: an optional DNS-subdomain prefix, a name of at most 63 characters.
KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?"
                 r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
RECORD: Any = {"started": "2026-11-30T03:22:04+00:00", "delayed": "2026-11-30T03:22:06+00:00",
               "purpose": "delete", "retries": 3, "success": False, "failure": False}


def _storage(monkeypatch: pytest.MonkeyPatch, mode: str, identity: str) -> kopf.ProgressStorage:
    monkeypatch.setattr(_Config, "sharding", None)
    monkeypatch.setattr(_Config, "leader_election", None)
    if mode == "sharding":
        monkeypatch.setattr(_Config, "sharding", Sharding("ops", "ring", identity))
    elif mode == "leader election":
        monkeypatch.setattr(_Config, "leader_election", LeaderElection("ops", "lease", identity))
    return _progress_storage()


def _annotations(patch: kopf.Patch) -> dict[str, Any]:
    return dict(patch.get("metadata", {}).get("annotations", {}))


@pytest.mark.parametrize("mode", ["sharding", "leader election"])
@pytest.mark.parametrize("other", ["op-b", "stemedb-operator-7d9c5b6f4-x2k8q",
                                   "Worker.Host_3f2b0c1e-9a7d-4d54-8a4e-2b6f0f1c9e77"])
def test_a_replica_never_reads_or_touches_another_replicas_retry_state(
        monkeypatch: pytest.MonkeyPatch, mode: str, other: str) -> None:
    mine = _storage(monkeypatch, mode, "op-a")
    theirs = _storage(monkeypatch, mode, other)
    patch = kopf.Patch()
    theirs.store(key=kopf.HandlerId("restore_rate"), record=RECORD,
                 body=kopf.Body({"metadata": {}}), patch=patch)
    theirs.touch(body=kopf.Body({"metadata": {}}), patch=patch, value="now")
    written = _annotations(patch)
    assert written and all(KEY.match(key) for key in written), written
    body = kopf.Body({"metadata": {"annotations": written}})
    assert mine.fetch(key=kopf.HandlerId("restore_rate"), body=body) is None
    assert theirs.fetch(key=kopf.HandlerId("restore_rate"), body=body) == RECORD
    # Its own purge and touch leave the other's keys alone.
    own = kopf.Patch()
    mine.purge(key=kopf.HandlerId("restore_rate"), body=body, patch=own)
    mine.touch(body=body, patch=own, value="later")
    assert not set(_annotations(own)) & set(written)


def test_a_single_replica_keeps_kopfs_shared_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator upgraded in place mid-deletion reads the record it wrote before."""
    storage = _storage(monkeypatch, "alone", "")
    patch = kopf.Patch()
    storage.store(key=kopf.HandlerId("restore_rate"), record=RECORD,
                  body=kopf.Body({"metadata": {}}), patch=patch)
    assert f"{handlers.GROUP}/restore_rate" in _annotations(patch)
