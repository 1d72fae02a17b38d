"""`kubectl stemedb status`: what the document and the screen say for each shape of
status the operator writes (docs/kubectl-plugin.md), read as on-call would."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _objects import BLIND, NOW, T, cond, conditions_with, edit, healthy, level2, replica

from controller.kubectl_plugin import view
from controller.kubectl_plugin.render import render_fleet, render_status


@pytest.mark.parametrize(("obj", "phase", "max_lag", "lags", "unknown_since"), [
    (healthy(), "Healthy", 0.4, [0.2, 0.4, 0.3], None),
    (level2(), "Escalated", 25.0, [25.0, 0.4, 0.3], None),
    (BLIND, "Blind", None, [None, None, None], T.format("05:00")),
    (conditions_with(level2(), cond("MetricsAvailable", False, "ObservationStale", "stale",
                                    T.format("25:00"))),
     "Escalated", None, [None, None, None], T.format("25:00")),
    (edit(healthy(), "status", None), "Pending", None, [None, None, None], None),
    (edit(healthy(), "status.replicas.1.lagSeconds", None), "Healthy", 0.3, [0.2, None, 0.3],
     None),
    (conditions_with(healthy(), cond("Ready", False, "ReplicasLagging", "lagging"),
                     cond("Degraded", True, "LagWarning", "node2 past warning")),
     "Degraded", 0.4, [0.2, 0.4, 0.3], None),
], ids=["healthy", "level 2", "metrics unavailable", "stale at level 2", "no status yet",
        "one lag missing", "warning"])
def test_lag_is_shown_only_while_the_metrics_vouch_for_it(
    obj: dict[str, Any], phase: str, max_lag: float | None, lags: list[float | None],
    unknown_since: str | None,
) -> None:
    doc = view.status_document(obj, NOW)
    assert doc["phase"] == phase
    assert doc["maxLagSeconds"] == max_lag
    assert [r["lagSeconds"] for r in doc["replicas"]] == lags
    assert doc["lagUnknownSince"] == unknown_since
    screen = render_status(obj, NOW)
    if unknown_since:
        assert "Max lag      Unknown since 21:05:00Z (21m ago)" in screen or \
            "Max lag      Unknown since 21:25:00Z (1m ago)" in screen
    assert ("Unknown" in screen.split("Replicas")[1].split("Do now")[0]) == (None in lags)


@pytest.mark.parametrize(("obj", "replica_id", "expected"), [
    (level2(), "node2", "node2@1795986000"),
    (level2(), "node3", None),
    # The condition names the furthest replica only; another is named by its episode start.
    (edit(level2(), "status.replicas.1", replica("node3", 30.0, "Critical", "Rebuild",
                                                 since=T.format("01:40"))),
     "node3", "node3@1795986100"),
    (edit(level2(), "status.replicas.0.rebuildMarked", True), "node2", None),
    (edit(edit(level2(), "status.conditions.3.message", "node2: Rebuild"),
          "status.manualAction", {"what": "Approve", "command":
                                  "kubectl annotate sdb demo stemedb.io/approve-rebuild="
                                  "node2@1795986001"}),
     "node2", "node2@1795986001"),
    (edit(edit(level2(), "status.conditions.3.message", "x"), "status.replicas.0.since", None),
     "node2", None),
], ids=["condition", "in sync", "second replica", "already marked", "manualAction",
        "no anchor"])
def test_the_rebuild_request_is_the_one_the_operator_shows(
    obj: dict[str, Any], replica_id: str, expected: str | None,
) -> None:
    assert view.rebuild_request(obj["status"], replica_id) == expected


@pytest.mark.parametrize(("obj", "actions"), [
    (healthy(), []),
    (level2(), [("Approve the rebuild of node2 (request node2@1795986000):",
                 "kubectl stemedb approve-rebuild demo node2 -n stemedb")]),
    (edit(level2(), "metadata.annotations", {"stemedb.io/approve-rebuild": "node2@1795986000"}),
     [("Nothing: the rebuild of node2 is approved (node2@1795986000); the operator marks it "
       "at its next poll if the safety limits allow", None)]),
    (edit(level2(), "status.replicas.0.rebuildMarked", True),
     [("Rebuild node2: the operator marked it for rebuild and does not rebuild replicas "
       "itself (runbook: rebuild-replica.md)", None)]),
    (edit(edit(level2(), "status.replicas.0.step", "Throttle"), "spec.remediation",
          {"paused": True}),
     [("Remediation is paused and replicas lag: act by hand, or resume the operator",
       "kubectl stemedb resume demo -n stemedb")]),
    (edit(level2(), "status.manualAction",
          {"what": "Approve node2's rebuild", "command":
           "kubectl annotate sdb demo -n stemedb stemedb.io/approve-rebuild=node2@1795986000"}),
     [("Approve node2's rebuild",
       "kubectl annotate sdb demo -n stemedb stemedb.io/approve-rebuild=node2@1795986000")]),
    (edit(healthy(), "status.manualAction", "Restore the rate limit by hand"),
     [("Restore the rate limit by hand", None)]),
], ids=["healthy", "approval", "approved", "marked", "paused", "operator's", "operator's text"])
def test_do_now_says_what_a_human_should_do_with_the_exact_command(
    obj: dict[str, Any], actions: list[tuple[str, str | None]],
) -> None:
    doc = view.status_document(obj, NOW)
    assert [(a["what"], a["command"]) for a in doc["manualActions"]] == actions
    screen = render_status(obj, NOW).split("Do now\n")[1].split("\n\n")[0]
    for what, command in actions:
        assert what[:70] in screen
        if command:
            assert f"\n    {command}" in "\n" + screen


def test_level_2_with_three_replicas_fits_one_screen() -> None:
    screen = render_status(level2(), NOW).splitlines()
    assert len(screen) <= 40 and max(map(len, screen)) <= 80
    assert screen[:8] == [
        "StemeDBCluster stemedb/demo   as of 21:26:40Z",
        "Phase        Escalated, level 2: 1 of 3 replicas past critical 10 s",
        "Max lag      25.0 s, 1 of 3 replicas lagging",
        "Remediation  Mode Auto; 17 of 20 left",
        "Step         node2: Rebuild, after 3 failed syncs; approve with stemedb.io/ap...",
        "",
        "Escalation",
        "  Level 2    since 21:20:00Z (6m ago)",
    ]
    assert "  Call now   Distributed systems engineer" in screen
    assert "  Why        node2 ladder exhausted after 3 syncs (LadderExhausted)" in screen
    assert "  node2    25.0 s  Critical  Rebuild  3 syncs  ForceSync    -" in screen
    assert "History (last 6 of 14)" in screen


@pytest.mark.parametrize(("path", "value", "shown"), [
    ("status.nextStep", {"what": "Promote to level 3", "at": T.format("50:00"),
                         "why": "escalated for promoteAfterSeconds"},
     ["Next step    Promote to level 3 at 21:50:00Z (in 23m)",
      "             because escalated for promoteAfterSeconds"]),
    ("status.nextStep", "Wait for the sync", ["Next step    Wait for the sync"]),
    ("status.replicas.0.nextStep", {"what": "Mark for rebuild", "at": None}, ["Mark for rebuild"]),
    ("status.replicas.0.deadline", T.format("30:00"), ["by 21:30:00Z (in 3m)"]),
    ("spec.escalation", {"principalEngineer": "Alice (+1 555 0100)"},
     ["  Then       level 3: Alice (+1 555 0100)"]),
    ("status.escalation", {"level": 2, "reason": "LadderExhausted", "contact": "Storage (#s)",
                           "message": "Level 2 (Storage (#s)): node2 ladder exhausted"},
     ["  Call now   Storage (#s)\n  Why        node2 ladder exhausted (LadderExhausted)"]),
    ("metadata.generation", 2, ["Note         status is for spec generation 1; the spec is at 2"]),
    ("spec.remediation", {"paused": True},
     ["Remediation  PAUSED (spec.remediation.paused); Mode Auto; 17 of 20 left"]),
], ids=["nextStep", "nextStep text", "replica next step", "replica deadline", "contacts",
        "contact in parentheses", "spec not seen yet", "paused"])
def test_what_the_status_carries_is_shown(path: str, value: Any, shown: list[str]) -> None:
    screen = render_status(edit(level2(), path, value), NOW)
    for text in shown:
        assert text in screen, screen


def test_strings_from_the_object_cannot_drive_the_terminal() -> None:
    hostile = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\u202eevil"
    obj = edit(edit(level2(), "spec.escalation", {"distributedSystemsEngineer": hostile}),
               "status.escalation.contact", hostile)
    obj = edit(obj, "status.history.13.message", hostile)
    screen = render_status(obj, NOW)
    assert not any(ch in screen for ch in "\x1b\x07\u202e")
    assert json.loads(json.dumps(view.status_document(obj, NOW)))["escalation"]["contact"] == \
        hostile, "-o json keeps the value (JSON escapes it)"


def test_history_shows_each_action_once_with_its_outcome() -> None:
    entries = [
        {"time": T.format("00:00"), "kind": "ForceSync", "replica": "node2",
         "reason": "ForceSync", "message": "Force sync", "outcome": "Pending", "key": "k1"},
        {"time": T.format("00:00"), "kind": "ForceSync", "replica": "node2",
         "reason": "ActionConfirmed", "message": "ok", "outcome": "Ok", "key": "k1"},
        {"time": T.format("01:00"), "kind": "SetRateLimit", "replica": None,
         "reason": "ThrottleStep", "message": "limit", "outcome": "Pending", "key": "k2"},
    ]
    doc = view.status_document(edit(level2(), "status.history", entries), NOW)
    assert [(h["reason"], h["outcome"]) for h in doc["history"]] == [
        ("ActionConfirmed", "Ok"), ("ThrottleStep", "Pending")]


def test_the_fleet_overview_has_one_line_per_cluster() -> None:
    other = edit(BLIND, "metadata.namespace", "a-team")
    lines = render_fleet([other, level2(), edit(healthy(), "status", None)], NOW).splitlines()
    assert [line.split()[:7] for line in lines] == [
        ["NAMESPACE", "NAME", "PHASE", "MAX", "LAG", "LAGGING", "LEVEL"],
        ["a-team", "demo", "Blind", "Unknown", "21m", "-", "0"],
        ["stemedb", "demo", "Escalated", "25.0", "s", "1/3", "2"],
        ["stemedb", "demo", "Pending", "Unknown", "-", "0", "-"],
    ]
    assert render_fleet([], NOW) == "No StemeDBClusters found.\n"


def test_the_json_document_is_stable() -> None:
    doc = view.status_document(level2(), NOW)
    assert list(doc) == [
        "apiVersion", "kind", "namespace", "name", "generation", "observedGeneration", "phase",
        "mode", "paused", "metricsAvailable", "lagUnknownSince", "maxLagSeconds",
        "laggingReplicas", "currentStep", "throttle", "escalation", "replicas", "nextStep",
        "manualActions", "conditions", "history", "observedAt"]
    assert doc["apiVersion"] == "stemedb.io/kubectl-stemedb/v1"
    assert doc["escalation"] == {
        "level": 2, "reason": "LadderExhausted",
        "message": "Level 2 (Distributed systems engineer): node2 ladder exhausted after 3 syncs",
        "contact": "Distributed systems engineer", "since": T.format("20:00"),
        "contacts": {"1": "Cluster SRE", "2": "Distributed systems engineer",
                     "3": "Principal engineer"}}
    assert list(doc["replicas"][0]) == [
        "id", "lagSeconds", "state", "step", "attempts", "syncAttempts", "lastAction", "since",
        "rebuildMarked", "rebuildRequest", "nextStep", "deadline"]
