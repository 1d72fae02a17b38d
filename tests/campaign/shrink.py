"""Shrink a failing incident to a small one that still fails the same way: greedy
passes that drop events, spec overrides, fault parameters and replicas, and cut the
horizon, keeping each change that still fails (delta debugging, one element at a time).
Hypothesis's shrinker needs the incident drawn through its own strategies; the
incident is plain data, so shrinking it directly keeps a seed's incident as it is."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from tests.campaign.incidents import FAULT_WEIGHTS, Event, Incident
from tests.campaign.invariants import Violation
from tests.campaign.runner import violations


def failing_like(invariant: str, pattern: str = "") -> Callable[[Incident], bool]:
    def fails(incident: Incident) -> bool:
        try:
            found = violations(incident)
        except Exception:  # an incident the harness cannot run is not a smaller case
            return False
        return any(v.invariant == invariant and re.search(pattern, v.detail) for v in found)
    return fails


def _candidates(inc: Incident) -> list[Incident]:
    out: list[Incident] = []
    for i in range(len(inc.events)):
        out.append(replace(inc, events=inc.events[:i] + inc.events[i + 1:]))
    for key in sorted(inc.spec):
        out.append(replace(inc, spec={k: v for k, v in inc.spec.items() if k != key}))
    for i, e in enumerate(inc.events):
        if e.what not in FAULT_WEIGHTS:
            continue
        for arg in sorted(e.args):
            if arg in ("kind", "replica", "node"):
                continue
            smaller = Event(e.at, e.what, {k: v for k, v in e.args.items() if k != arg})
            out.append(replace(inc, events=(*inc.events[:i], smaller, *inc.events[i + 1:])))
    for i in range(len(inc.neighbours)):
        out.append(replace(inc, neighbours=inc.neighbours[:i] + inc.neighbours[i + 1:]))
    used = {e.args.get("replica") for e in inc.events}
    if inc.replicas > 2 and f"node{inc.replicas + 1}" not in used:
        out.append(replace(inc, replicas=inc.replicas - 1))
    if inc.initial_rate is not None:
        out.append(replace(inc, initial_rate=None))
    return out


def shrink(incident: Incident, fails: Callable[[Incident], bool],
           first: Violation | None = None, max_runs: int = 400) -> Incident:
    """The smallest incident found that still `fails` (the input if none is smaller)."""
    best = incident
    runs = 0
    if first is not None:
        cut = replace(best, horizon=min(best.horizon, round(first.t + 30.0, 1)))
        runs += 1
        if cut != best and fails(cut):
            best = cut
    progress = True
    while progress and runs < max_runs:
        progress = False
        for cand in _candidates(best):
            runs += 1
            if fails(cand):
                best = cand
                progress = True
                break
            if runs >= max_runs:
                break
    return best
