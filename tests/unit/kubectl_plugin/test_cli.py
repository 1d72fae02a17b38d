"""The commands' flow over the Kubernetes client seam: flags where kubectl users put
them, an approval that loses a race is read again rather than overwriting, and
nothing is written when nothing needs to be."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _objects import edit, level2

from controller.adapters.kube import KubeError
from controller.kubectl_plugin import cli

APPROVE = "stemedb.io/approve-rebuild"


class FakeKube:
    """KubeClient's plugin calls over a list of object versions: each get returns the
    next version; a patch whose resourceVersion is not the latest answers 409."""

    def __init__(self, *versions: dict[str, Any]) -> None:
        self.versions = list(versions)
        self.gets = 0
        self.patches: list[dict[str, Any]] = []

    async def get_cluster(self, namespace: str, name: str) -> dict[str, Any]:
        obj = self.versions[min(self.gets, len(self.versions) - 1)]
        self.gets += 1
        return obj

    async def patch_cluster(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        rv = patch.get("metadata", {}).get("resourceVersion")
        if rv is not None and rv != self.versions[-1]["metadata"]["resourceVersion"]:
            raise KubeError("patching: HTTP 409 Conflict", status=409)
        self.patches.append(patch)


def run(command: Any, kube: FakeKube, *argv: str) -> str:
    args = cli._parser().parse_args(list(argv))
    return str(asyncio.run(command(kube, args, "stemedb")))


@pytest.mark.parametrize(("argv", "namespace", "context"), [
    (["status", "demo", "-n", "a"], "a", None),
    (["-n", "a", "status", "demo"], "a", None),
    (["--context", "c", "-n", "a", "status", "demo", "-o", "json"], "a", "c"),
    (["approve-rebuild", "demo", "node2", "--namespace=b", "--context=c"], "b", "c"),
    (["pause", "demo"], None, None),
])
def test_the_standard_flags_go_before_or_after_the_command(
    argv: list[str], namespace: str | None, context: str | None,
) -> None:
    args = cli._parser().parse_args(argv)
    assert (getattr(args, "namespace", None), getattr(args, "context", None)) == (
        namespace, context)


def test_an_approval_that_loses_a_race_is_read_again() -> None:
    # Someone annotated node3's request between our read and our write.
    mine = edit(level2(), "metadata.resourceVersion", "41")
    theirs = edit(level2(), "metadata.annotations", {APPROVE: "node3@1795985000"})
    kube = FakeKube(mine, theirs)
    out = run(cli._approve, kube, "approve-rebuild", "demo", "node2")
    assert kube.patches == [{"metadata": {"resourceVersion": "42", "annotations": {
        APPROVE: "node3@1795985000,node2@1795986000"}}}]
    assert out.startswith("approved rebuild request node2@1795986000 on stemedb/demo")


def test_an_approval_already_written_is_not_written_again() -> None:
    kube = FakeKube(edit(level2(), "metadata.annotations", {APPROVE: "node2@1795986000"}))
    out = run(cli._approve, kube, "approve-rebuild", "demo", "node2")
    assert kube.patches == []
    assert out.startswith("node2@1795986000 is already approved")


@pytest.mark.parametrize(("verb", "paused", "patches"), [
    ("pause", False, [{"spec": {"remediation": {"paused": True}}}]),
    ("pause", True, []),
    ("resume", True, [{"spec": {"remediation": {"paused": False}}}]),
    ("resume", False, []),
])
def test_pause_and_resume_write_only_a_change(verb: str, paused: bool,
                                              patches: list[dict[str, Any]]) -> None:
    kube = FakeKube(edit(level2(), "spec.remediation", {"paused": paused}))
    run(cli._pause, kube, verb, "demo")
    assert kube.patches == patches
