"""The writes `approve-rebuild`, `pause` and `resume` make, decided from the object
alone (pure), so that what they write is exactly what the operator reads.

An approval names the request the operator shows (`<replica>@<episode start>`,
`domain.observation.rebuild_request`): a bare replica id approves nothing, and an
approval is used up with its episode. So the plugin writes the request waiting now,
and refuses when none waits for that replica, rather than leave an approval lying
around for some later incident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.domain.observation import APPROVE_REBUILD_ANNOTATION, parse_approvals
from controller.kubectl_plugin.view import rebuild_request


class Refused(Exception):
    """Nothing is written; the message says why and what to do instead."""


@dataclass(frozen=True)
class Approval:
    request: str  # `node2@1795981285`
    value: str  # the whole annotation value to write
    already: bool  # the request was approved before: nothing to write


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def approve(obj: Mapping[str, Any], replica_id: str) -> Approval:
    """The approve-rebuild annotation that approves the rebuild request waiting for
    `replica_id`; keeps other replicas' requests and drops this replica's old ones
    (used up with their episodes). Refused when no rebuild of it waits for approval."""
    meta, spec, status = (_map(obj.get(k)) for k in ("metadata", "spec", "status"))
    name = meta.get("name")
    ids = [str(_map(r).get("id")) for r in spec.get("replicas") or [] if _map(r).get("id")]
    if replica_id not in ids:
        raise Refused(f"{name} has no replica {replica_id!r} (replicas: "
                      f"{', '.join(ids) or 'none'})")
    policy = _map(_map(spec.get("remediation")).get("rebuild"))
    if policy.get("policy") == "Automatic":
        raise Refused(f"{name}: rebuild policy is Automatic; the operator needs no approval")
    row = next((_map(r) for r in status.get("replicas") or []
                if _map(r).get("id") == replica_id), {})
    if row.get("rebuildMarked") is True:
        raise Refused(f"{name}: {replica_id} is already marked for rebuild; nothing to approve")
    request = rebuild_request(status, replica_id)
    if request is None:
        step = row.get("step") or "unknown"
        raise Refused(f"{name}: no rebuild of {replica_id} waits for approval (its step is "
                      f"{step}); an approval names the request the operator shows when "
                      f"it reaches the Rebuild step (kubectl stemedb status {name})")
    current = parse_approvals(_map(meta.get("annotations")))
    if request in current:
        return Approval(request, str(_map(meta.get("annotations"))[APPROVE_REBUILD_ANNOTATION]),
                        already=True)
    kept = sorted(a for a in current if a.partition("@")[0] != replica_id)
    return Approval(request, ",".join([*kept, request]), already=False)


def approval_patch(obj: Mapping[str, Any], approval: Approval) -> dict[str, Any]:
    """A merge patch with the object's resourceVersion: a concurrent edit of the
    annotation makes it fail with 409 (read again and retry) instead of being lost."""
    meta = _map(obj.get("metadata"))
    return {"metadata": {"resourceVersion": meta.get("resourceVersion"),
                         "annotations": {APPROVE_REBUILD_ANNOTATION: approval.value}}}


def pause_patch(paused: bool) -> dict[str, Any]:
    """The operator honours `spec.remediation.paused`: it keeps detecting, escalating
    and reporting, and takes no action (docs/remediation-policy.md)."""
    return {"spec": {"remediation": {"paused": paused}}}
