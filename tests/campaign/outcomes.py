"""What an incident came to, against doing nothing on the same seed: time to recover,
assertions held back by throttling, admin requests, escalation, and whether a human
was called when the fault needed one (and not when it did not)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from controller.domain import parse_spec
from tests.campaign.incidents import FAULT_WEIGHTS, raw_spec
from tests.campaign.invariants import Violation, blind, exercised
from tests.campaign.world import Trace

NEEDS_A_HUMAN = {"corruption"}  # data integrity: the runbook escalates at once


@dataclass(frozen=True)
class Outcome:
    seed: int
    kinds: tuple[str, ...]
    ttr: float | None  # seconds from the first fault to lasting recovery; None: not by the end
    ttr_nothing: float | None
    held_back: float  # assertions rate-limited
    admin_requests: int
    max_admin_per_minute: int
    level: int  # highest escalation level shown
    needed_human: bool
    violations: tuple[Violation, ...] = ()
    exercised: tuple[str, ...] = ()  # invariants this run put to the test (exercised())
    clusters: int = 1  # the incident's cluster and its neighbours


def time_to_recover(samples: list[tuple[float, dict[str, float]]], start: float,
                    threshold: float) -> float | None:
    bad = [t for t, lags in samples if t >= start and max(lags.values()) >= threshold]
    if not bad:
        return 0.0
    if bad[-1] >= samples[-1][0]:
        return None
    return bad[-1] - start


def blind_for(trace: Trace) -> float:
    """The longest stretch in which the primary's metrics could not be read (a human
    must look: a critical replica would go unnoticed, issue 14 item 7)."""
    longest, since = 0.0, None
    for p in trace.polls:
        if blind(p):
            since = p.t if since is None else since
            longest = max(longest, p.t - since)
        else:
            since = None
    return longest


def outcome(trace: Trace, nothing: Trace, violations: Iterable[Violation] = ()) -> Outcome:
    inc = trace.incident
    spec = parse_spec(raw_spec(inc.spec, inc.replicas))
    faults = [e for e in inc.events if e.what in FAULT_WEIGHTS]
    start = min((e.at for e in faults), default=0.0)
    threshold = spec.detection.recovery.lag_seconds
    times = sorted(r.t for p in trace.polls for r in p.requests
                   if r.path.startswith("/v1/admin/"))
    per_minute, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 60.0:
            j += 1
        per_minute = max(per_minute, i - j + 1)
    ttr = time_to_recover(trace.samples, start, threshold)
    over = any(max(lags.values()) > spec.detection.escalation_lag_seconds
               for _, lags in trace.samples)
    needed = (ttr is None or over or bool(NEEDS_A_HUMAN & {e.what for e in faults})
              or blind_for(trace) > max(spec.detection.critical.for_seconds,
                                        3 * spec.detection.poll_interval_seconds))
    return Outcome(
        seed=inc.seed,
        kinds=tuple(sorted({e.what for e in faults})),
        ttr=ttr,
        ttr_nothing=time_to_recover(nothing.samples, start, threshold),
        held_back=trace.rate_limited_total,
        admin_requests=len(times),
        max_admin_per_minute=per_minute,
        level=max((int((p.status.get("escalation") or {}).get("level") or 0)
                   for p in trace.polls), default=0),
        needed_human=needed,
        violations=tuple(violations),
        exercised=tuple(sorted(exercised(trace))),
        clusters=1 + len(inc.neighbours),
    )


def _median(xs: list[float]) -> str:
    return f"{statistics.median(xs):.0f}" if xs else "-"


def exercise_counts(outcomes: list[Outcome]) -> str:
    """How often the invariants that need a particular situation met it."""
    storm = sum("tripped_breaker_reset" in o.exercised for o in outcomes)
    fleet = [o for o in outcomes if o.clusters > 1]
    fair = sum("fair_share" in o.exercised for o in outcomes)
    return (f"tripped_breaker_reset exercised in {storm} incidents (a visibly tripped breaker "
            f"of a critical replica in a storm, the operator able to act); fair_share in "
            f"{fair} of {len(fleet)} multi-cluster incidents (the healthy cluster acted after "
            "its neighbours had spent a fair share of the operator-wide budget)")


def table(outcomes: list[Outcome]) -> str:
    """One Markdown row per fault kind (an incident with several faults counts in each)."""
    rows: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        for k in o.kinds:
            rows[k].append(o)
        rows["(all)"].append(o)
    head = ("| fault kind | incidents | recovered (operator / nothing) | median time to recover, "
            "s (operator / nothing) | assertions held back by throttling (median) | admin "
            "requests (median, max/min) | escalated L1+ / L2+ / L3 | human called when needed "
            "| called when not needed | incidents with a violation |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for kind in sorted(rows, key=lambda k: (k == "(all)", k)):
        os_ = rows[kind]
        n = len(os_)

        def pct(k: int, of: int) -> str:
            return f"{100 * k / of:.0f} %" if of else "-"

        needed = [o for o in os_ if o.needed_human]
        not_needed = [o for o in os_ if not o.needed_human]
        lines.append(
            f"| {kind} | {n} "
            f"| {pct(sum(o.ttr is not None for o in os_), n)} / "
            f"{pct(sum(o.ttr_nothing is not None for o in os_), n)} "
            f"| {_median([o.ttr for o in os_ if o.ttr is not None])} / "
            f"{_median([o.ttr_nothing for o in os_ if o.ttr_nothing is not None])} "
            f"| {_median([o.held_back for o in os_])} "
            f"| {_median([float(o.admin_requests) for o in os_])}, "
            f"{max(o.max_admin_per_minute for o in os_)} "
            f"| {pct(sum(o.level >= 1 for o in os_), n)} / {pct(sum(o.level >= 2 for o in os_), n)}"
            f" / {pct(sum(o.level >= 3 for o in os_), n)} "
            f"| {pct(sum(o.level >= 1 for o in needed), len(needed))} "
            f"| {pct(sum(o.level >= 1 for o in not_needed), len(not_needed))} "
            f"| {sum(bool(o.violations) for o in os_)} |")
    return head + "\n".join(lines) + "\n"
