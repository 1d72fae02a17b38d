"""What `approve-rebuild`, `pause` and `resume` write: exactly what the operator
reads, or nothing with a reason."""

from __future__ import annotations

from typing import Any

import pytest
from _objects import edit, level2

from controller.adapters.kubeconfig import Login
from controller.domain.observation import APPROVE_REBUILD_ANNOTATION, parse_approvals
from controller.kubectl_plugin import approval
from controller.kubectl_plugin.api import endpoint

ANNOTATED = "metadata.annotations"


@pytest.mark.parametrize(("obj", "value", "already"), [
    (level2(), "node2@1795986000", False),
    # Other replicas' requests stay; node2's used-up ones (earlier episodes) go.
    (edit(level2(), ANNOTATED, {APPROVE_REBUILD_ANNOTATION: "node2@1700000000,node3@1795985000"}),
     "node3@1795985000,node2@1795986000", False),
    (edit(level2(), ANNOTATED, {APPROVE_REBUILD_ANNOTATION: "node2"}), "node2@1795986000", False),
    (edit(level2(), ANNOTATED, {APPROVE_REBUILD_ANNOTATION: "node2@1795986000"}),
     "node2@1795986000", True),
], ids=["first", "keeps others", "bare id replaced", "already approved"])
def test_the_approval_names_the_request_the_operator_waits_for(
    obj: dict[str, Any], value: str, already: bool,
) -> None:
    found = approval.approve(obj, "node2")
    assert (found.request, found.value, found.already) == ("node2@1795986000", value, already)
    assert "node2@1795986000" in parse_approvals({APPROVE_REBUILD_ANNOTATION: found.value})
    assert approval.approval_patch(obj, found) == {"metadata": {
        "resourceVersion": "42", "annotations": {APPROVE_REBUILD_ANNOTATION: value}}}


@pytest.mark.parametrize(("obj", "replica_id", "says"), [
    (level2(), "node3", "demo: no rebuild of node3 waits for approval (its step is None)"),
    (level2(), "node9", "demo has no replica 'node9' (replicas: node2, node3, node4)"),
    (edit(level2(), "spec.remediation", {"rebuild": {"policy": "Automatic"}}), "node2",
     "demo: rebuild policy is Automatic; the operator needs no approval"),
    (edit(level2(), "status.replicas.0.rebuildMarked", True), "node2",
     "demo: node2 is already marked for rebuild; nothing to approve"),
    (edit(level2(), "status", None), "node2",
     "demo: no rebuild of node2 waits for approval (its step is unknown)"),
], ids=["in sync", "no such replica", "automatic", "marked", "no status"])
def test_approve_refuses_when_no_rebuild_waits(obj: dict[str, Any], replica_id: str,
                                               says: str) -> None:
    with pytest.raises(approval.Refused) as refused:
        approval.approve(obj, replica_id)
    assert str(refused.value).startswith(says)


@pytest.mark.parametrize("paused", [True, False])
def test_pause_and_resume_write_the_field_the_operator_honours(paused: bool) -> None:
    assert approval.pause_patch(paused) == {"spec": {"remediation": {"paused": paused}}}


@pytest.mark.parametrize(("login", "headers", "tls"), [
    ({"server": "https://k:6443", "token": "t0k"}, {"Authorization": "Bearer t0k"}, True),
    ({"server": "https://k:6443", "token": "t0k", "scheme": "Bearer"},
     {"Authorization": "Bearer t0k"}, True),
    ({"server": "https://k:6443", "username": "u", "password": "p"},
     {"Authorization": "Basic dTpw"}, True),
    ({"server": "http://127.0.0.1:8080"}, {}, False),
], ids=["token", "auth-provider scheme", "basic", "plain http"])
def test_the_kubeconfig_login_becomes_the_clients_endpoint(
    login: dict[str, Any], headers: dict[str, str], tls: bool,
) -> None:
    found = endpoint(Login(**login))
    assert dict(found.headers) == headers
    assert (found.ssl is not False) == tls
    assert "t0k" not in repr(found)
