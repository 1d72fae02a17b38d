"""What must hold in every incident, checked from the trace of one run: the requests
the simulator answered (its admin log, seen at the transport), the status after each
poll, the Events, the actions held, and the model's truth. Each check returns the
violations it found; `check` runs them all."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from controller.domain import Mode, RebuildPolicy, Spec, backoff, parse_spec
from controller.domain.budget import DEFAULT_SHARE
from controller.domain.memory import Memory, MemoryFormatError, Severity, Step
from tests.campaign.incidents import raw_spec
from tests.campaign.world import EPOCH, NAME, NS, Poll, Request, Trace

# Admin requests one cluster may receive in any minute, failures and retries
# included (issue 14 saw ~150 while the admin API answered 500).
ADMIN_REQUESTS_PER_MINUTE = 30
REBUILD_ANNOTATION = "stemedb.io/rebuild-requested"
# Polls in a row a visibly tripped breaker may wait for its reset while nothing holds it
# (the policy resets in the poll that finds the replica critical; two more for slack).
RESET_WITHIN_POLLS = 3
OWNER = f"{NS}/{NAME}"  # the incident's cluster as the operator-wide budget names it
API_FAULTS = frozenset({"http_error", "admin_timeout", "connection_reset", "garbled_metrics",
                        "truncated_metrics"})


@dataclass(frozen=True)
class Violation:
    invariant: str
    t: float
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant} at t={self.t:g}s: {self.detail}"


def _spec(trace: Trace) -> Spec:
    return parse_spec(raw_spec(trace.incident.spec, trace.incident.replicas))


def _admin(poll: Poll) -> Iterator[Request]:
    return (r for r in poll.requests if r.path.startswith("/v1/admin/"))


def _writes(poll: Poll) -> list[Request]:
    return [r for r in _admin(poll) if r.method == "POST"]


def blind(poll: Poll) -> bool:
    """The primary's metrics were not readable in this poll (its last answer was bad)."""
    scrapes = [r for r in poll.requests if r.path == "/metrics" and r.node == "node1"]
    return not scrapes or scrapes[-1].bad_metrics


def no_action_on_bad_data(trace: Trace, spec: Spec) -> list[Violation]:
    return [Violation("no_action_on_bad_data", p.t,
                      f"{len(_writes(p))} admin writes and {len(p.annotations)} Pod marks in a "
                      "poll whose primary /metrics answer was unusable")
            for p in trace.polls if blind(p) and (_writes(p) or p.annotations)]


def throttle_floor(trace: Trace, spec: Spec) -> list[Violation]:
    floor = spec.remediation.throttle.floor_assertions_per_sec
    return [Violation("throttle_floor", r.t, f"rate limit set to {r.body} (floor {floor}/s)")
            for p in trace.polls for r in _writes(p)
            if r.path == "/v1/admin/rate-limit" and _limit(r) < floor]


def one_sync_per_replica(trace: Trace, spec: Spec) -> list[Violation]:
    out = []
    for p in trace.polls:
        shown = next((r.sync_running for r in reversed(p.requests)
                      if r.sync_running is not None), None) or {}
        for r in _writes(p):
            if r.path != "/v1/admin/cluster/sync" or r.status != 409:
                continue
            rid = r.body.get("replica_id")
            started = trace.operator_syncs.get(r.running_sync or "")
            if started is not None and any(started[1] < t <= r.t for t in trace.restarts):
                out.append(Violation("no_duplicate_action_across_restart", r.t,
                                     f"sync of {rid} requested again after a restart while "
                                     f"its own {r.running_sync} (started t={started[1]:g}s) "
                                     "ran"))
            elif shown.get(rid):
                out.append(Violation("one_sync_per_replica", r.t,
                                     f"sync of {rid} requested while the scrape it had just "
                                     f"read showed {r.running_sync} running"))
    return out


def _since(status: dict, rid: str) -> float | None:
    for rep in status.get("replicas") or []:
        if rep.get("id") == rid and rep.get("since"):
            return datetime.fromisoformat(rep["since"].replace("Z", "+00:00")).timestamp()
    return None


def rebuild_marks(trace: Trace, spec: Spec) -> list[Violation]:
    out = []
    rem = spec.remediation
    warning = spec.detection.warning.lag_seconds
    for i, p in enumerate(trace.polls):
        marked = [rep["id"] for rep in p.status.get("replicas") or [] if rep.get("rebuildMarked")]
        if len(marked) > rem.max_concurrent_rebuilds:
            out.append(Violation("rebuild_limits", p.t, f"{len(marked)} replicas marked "
                                 f"({', '.join(marked)}), maxConcurrentRebuilds "
                                 f"{rem.max_concurrent_rebuilds}"))
        for pod, ann in p.annotations:
            if REBUILD_ANNOTATION not in ann:
                continue
            rid = f"node{int(pod.rsplit('-', 1)[1]) + 1}"
            if rid == spec.primary.id:
                out.append(Violation("rebuild_limits", p.t, "the primary marked for rebuild"))
            running, progress = p.sync.get(rid, (False, 0.0))
            # Progressing: its progress rose within the spec's own stall window (a sync
            # frozen that long is stalled, and a rebuild may follow it).
            window = spec.remediation.merkle_sync.stall_timeout_seconds
            earlier = [q.sync[rid][1] for q in trace.polls[:i]
                       if p.t - window <= q.t and q.sync.get(rid, (False, 0.0))[0]]
            if running and earlier and progress > min(earlier):
                out.append(Violation("no_rebuild_while_sync_progresses", p.t,
                                     f"{rid} marked while its sync progressed "
                                     f"{min(earlier):.3f} -> {progress:.3f}"))
            in_sync = [o for o, lag in p.lags.items()
                       if o != rid and lag < warning and o not in marked]
            if len(in_sync) < max(1, rem.min_in_sync_replicas):
                out.append(Violation("rebuild_keeps_in_sync_replicas", p.t,
                                     f"{rid} marked with {len(in_sync)} other replicas in sync "
                                     f"(minInSyncReplicas {rem.min_in_sync_replicas})"))
            if rem.rebuild.policy is RebuildPolicy.MANUAL:
                since = _since(p.status, rid)
                start = None if since is None else since - EPOCH
                fresh = [v for t, v in trace.human_approvals
                         if v.startswith(f"{rid}@") and start is not None and t >= start
                         and v in (p.approvals or "")]
                if not fresh:
                    out.append(Violation("rebuild_needs_fresh_approval", p.t,
                                         f"{rid} marked under Manual with annotation "
                                         f"{p.approvals!r}, no approval given this episode"))
    return out


def admin_request_rate(trace: Trace, spec: Spec) -> list[Violation]:
    times = sorted(r.t for p in trace.polls for r in _admin(p))
    out = []
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - 60.0:
            j += 1
        if i - j + 1 > ADMIN_REQUESTS_PER_MINUTE:
            out.append(Violation("admin_requests_per_minute", t,
                                 f"{i - j + 1} admin requests in the minute before "
                                 f"(bound {ADMIN_REQUESTS_PER_MINUTE})"))
            break
    retries, early = _restore_retries(trace)
    out += early
    writes = sorted(r.t for p in trace.polls for r in _writes(p) if id(r) not in retries)
    limit = spec.remediation.max_actions_per_hour
    for i, t in enumerate(writes):
        n = sum(1 for u in writes[: i + 1] if u > t - 3600.0)
        if n > limit:
            out.append(Violation("admin_writes_per_hour", t,
                                 f"{n} admin write attempts within an hour "
                                 f"(maxActionsPerHour {limit})"))
            break
    return out


def _failed(r: Request) -> bool:
    return r.status is None or r.status >= 500


def _rate(r: Request) -> float | None:
    """The limit a rate-limit write sets (None: it lifts the limit)."""
    value = r.body.get("max_assertions_per_sec") if isinstance(r.body, dict) else None
    return None if value is None else float(value)


def _limit(r: Request) -> float:
    rate = _rate(r)
    return float("inf") if rate is None else rate


def _restore_retries(trace: Trace) -> tuple[set[int], list[Violation]]:
    """The rate-limit writes that repeat a failed restore (a POST raising the limit, or
    lifting it), and any that came sooner than the backoff allows.

    Lifting the operator's own throttle is never held by a budget (leaving ingestion
    throttled is the worse harm), so these repeats are not counted against
    maxActionsPerHour; what bounds them is the backoff: the k-th consecutive failure
    waits at least half of min(CAP, BASE * 2^(k-1)) (equal jitter)."""
    retries: set[int] = set()
    early: list[Violation] = []
    previous: float | None = None  # the last attempted limit (a timed-out write may land)
    failed: Request | None = None  # the last restore write, while it failed
    failures = 0
    for r in (r for p in trace.polls for r in _writes(p) if r.path == "/v1/admin/rate-limit"):
        value = _rate(r)
        retry = failed is not None and _limit(r) >= _limit(failed)
        if retry and failed is not None:
            retries.add(id(r))
            least = min(backoff.CAP_SECONDS, backoff.BASE_SECONDS * 2.0 ** (failures - 1)) / 2
            if r.t - failed.t < least - 1e-6:
                early.append(Violation("admin_writes_per_hour", r.t,
                                       f"a failed restore repeated after {r.t - failed.t:.1f} s,"
                                       f" sooner than its backoff ({least:g} s after "
                                       f"{failures} failures)"))
        raising = value is None or (previous is not None and value > previous)
        if (retry or raising) and _failed(r):
            failed, failures = r, failures + 1
        else:
            failed, failures = None, 0
        previous = value
    return retries, early


def rate_restored(trace: Trace, spec: Spec) -> list[Violation]:
    inc = trace.incident
    set_by_operator = any(r.path == "/v1/admin/rate-limit"
                          for p in trace.polls for r in _writes(p))
    if not set_by_operator or spec.remediation.mode is not Mode.AUTO:
        return []
    if trace.paused_until == float("inf"):
        return []
    d, t = spec.detection, spec.remediation.throttle
    quiet = (d.recovery.for_seconds + (len(t.restore_ramp) + 2) * t.restore_step_seconds
             + 3 * d.poll_interval_seconds + t.step_interval_seconds)
    last_bad = max((at for at, lags in trace.samples
                    if max(lags.values()) >= d.recovery.lag_seconds), default=0.0)
    # The incident ends when the lag is gone and the admin API answers again.
    api = [e.at + e.args.get("duration_seconds", float("inf")) for e in inc.events
           if e.what in API_FAULTS]
    if inc.horizon - max(last_bad, trace.paused_until, *api) < quiet:
        return []
    if trace.final_rate == inc.initial_rate:
        return []
    held = sorted({g for a, g in trace.polls[-1].suppressed if a == "SetRateLimit"})
    return [Violation("rate_restored", inc.horizon,
                      f"ingestion limit {trace.final_rate} at the end, was {inc.initial_rate} "
                      f"before the incident; lag below recovery since t={last_bad:g}s"
                      + (f"; the restore held by {', '.join(held)}" if held else ""))]


def held_actions_reported(trace: Trace, spec: Spec) -> list[Violation]:
    out = []
    told: dict[str, bool] = {}  # gate -> reported in the current stretch of holds
    for p in trace.polls:
        gates = {g for _, g in p.suppressed}
        for g in list(told):
            if g not in gates:
                del told[g]
        shown = {c.get("reason") for c in p.status.get("conditions") or []}
        shown |= {h.get("reason") for h in p.status.get("history") or []}
        for g in gates:
            # An ActionSkipped Event says in words what holds an action ("failed 4 times
            # in a row; next attempt at ...") while a condition may name another gate.
            if g in shown or any(g in reason or g in msg or reason == "ActionSkipped"
                                 for _, reason, msg in p.events):
                told[g] = True
            if not told.get(g):
                out.append(Violation("held_action_reported", p.t,
                                     f"an action held by {g} with no condition, history entry "
                                     "or Event saying so"))
                told[g] = True
    return out


_NUM = r"(\d+(?:\.\d+)?)"
_ABOVE = re.compile(rf"lag {_NUM} s (?:over|above)(?: \w+)? {_NUM} s")
_OVER_ESC = re.compile(rf"lag {_NUM} s above \w+ {_NUM} s \(over escalation {_NUM} s\)")
_BELOW = re.compile(rf"lag {_NUM} s below {_NUM} s")
_PAST = re.compile(rf"past (?:critical|warning) {_NUM} s: ([^;]*)")
_LISTED = re.compile(rf"(\S+) {_NUM} s")
_ATTEMPT = re.compile(r"attempt (\d+)/(\d+)")
_FLOOR = re.compile(r"at the floor (\d+)/s")
_LIMITED = re.compile(r"ingestion limited to (\d+)/s")


def _message_problems(text: str, status: dict) -> Iterator[str]:
    # A lag printed rounded may equal its threshold (6.04 s "6.0 s above 6 s"): only a
    # lag printed below the threshold it is said to be over contradicts it.
    for m in _ABOVE.finditer(text):
        if float(m[1]) < float(m[2]):
            yield f"lag {m[1]} s said to be over {m[2]} s"
    for m in _OVER_ESC.finditer(text):
        if float(m[1]) < float(m[3]):
            yield f"lag {m[1]} s said to be over escalation {m[3]} s"
    for m in _BELOW.finditer(text):
        if not float(m[1]) < float(m[2]):
            yield f"lag {m[1]} s said to be below {m[2]} s"
    for m in _PAST.finditer(text):
        for item in _LISTED.finditer(m[2]):
            if float(item[2]) < float(m[1]):
                yield f"{item[1]} at {item[2]} s said to be past {m[1]} s"
    for m in _ATTEMPT.finditer(text):
        if not 1 <= int(m[1]) <= int(m[2]):
            yield f"attempt {m[1]}/{m[2]}"
    current = (status.get("throttle") or {}).get("currentRate")
    for m in _FLOOR.finditer(text):
        if current is not None and int(m[1]) != current:
            yield f"limit said to be at the floor {m[1]}/s while status shows {current}/s"
    for m in _LIMITED.finditer(text):
        if int(m[1]) != current:
            yield f"summary says {m[1]}/s, throttle.currentRate {current}"


def messages_match_numbers(trace: Trace, spec: Spec) -> list[Violation]:
    out = []
    seen: set[str] = set()
    for p in trace.polls:
        st = p.status
        texts = [str(c.get("message", "")) for c in st.get("conditions") or []]
        texts += [str((st.get("escalation") or {}).get("message") or ""), str(st.get("summary"))]
        texts += [str(h.get("message", "")) for h in st.get("history") or []]
        texts += [msg for _, _, msg in p.events]
        for text in texts:
            if text in seen:
                continue
            seen.add(text)
            for problem in _message_problems(text, st):
                out.append(Violation("messages_match_numbers", p.t, f"{problem}: {text!r}"))
    return out


def unknown_while_blind(trace: Trace, spec: Spec) -> list[Violation]:
    """While the lag cannot be read, status says so instead of last-known values."""
    out = []
    for prev, p in zip(trace.polls, trace.polls[1:], strict=False):
        if not (blind(prev) and blind(p)):
            continue
        degraded = next((c for c in p.status.get("conditions") or []
                         if c.get("type") == "Degraded"), {})
        if p.status.get("maxLagSeconds") is not None or degraded.get("reason") == "NoLag":
            out.append(Violation("unknown_while_blind", p.t,
                                 f"metrics unreadable for two polls, status shows maxLagSeconds "
                                 f"{p.status.get('maxLagSeconds')} and Degraded "
                                 f"{degraded.get('status')}/{degraded.get('reason')}"))
            break
    return out


def token_rotation(trace: Trace, spec: Spec) -> list[Violation]:
    """A token rotated in StemeDB and in the Secret together costs at most one rejected
    request per node (the Secret is read again on a 401), issue 14 item 5."""
    out = []
    times = [t for t, _ in trace.rotations] + [float("inf")]
    for (at, lagging), until in zip(trace.rotations, times[1:], strict=False):
        if lagging:
            continue
        rejected: dict[str, int] = {}
        for p in trace.polls:
            for r in p.requests:
                if at <= r.t < until and r.status == 401:
                    rejected[r.node] = rejected.get(r.node, 0) + 1
        for node, n in rejected.items():
            if n > 1:
                out.append(Violation("token_rotation", at, f"{n} requests to {node} rejected "
                                     "with 401 after one rotation of the token"))
    return out


def _memory(status: dict) -> Memory | None:
    """The operator's memory as this poll stored it (None before the first write)."""
    text = status.get("memory")
    return _parsed_memory(text) if isinstance(text, str) else None


@functools.lru_cache(maxsize=64)
def _parsed_memory(text: str) -> Memory | None:
    try:
        return Memory.from_text(text)
    except MemoryFormatError:
        return None


def _tripped_shown(poll: Poll) -> frozenset[str]:
    """Replicas whose tripped breaker this poll's primary scrape showed (truth at the
    scrape); nothing while the scrape was unusable."""
    if blind(poll):
        return frozenset()
    scrape = next(r for r in reversed(poll.requests) if r.path == "/metrics" and r.node == "node1")
    return scrape.tripped or frozenset()


def _storm(memory: Memory, spec: Spec) -> bool:
    critical = sum(r.severity is Severity.CRITICAL for r in memory.replicas)
    return memory.storm or critical >= spec.detection.storm_replicas


def _reset_owed(p: Poll, memory: Memory | None, rid: str, spec: Spec) -> bool:
    """After poll `p`, `rid`'s breaker reset is owed and nothing may hold it: the breaker
    is tripped and the scrape shows it, the replica is critical with its ladder not past
    a reset it has not tried yet, no cooldown, corruption or pending action of its own,
    not paused, and in this poll no reset was held by a gate (budget, backoff, mode) and
    no admin request failed (the tripped list may have been unreadable)."""
    if memory is None or p.paused or rid not in _tripped_shown(p):
        return False
    rm = next((r for r in memory.replicas if r.replica_id == rid), None)
    now = EPOCH + p.t
    if (rm is None or rm.severity is not Severity.CRITICAL
            or rm.step not in (Step.NONE, Step.RESET_BREAKER) or rm.step_attempts
            or (rm.cooldown_until is not None and now < rm.cooldown_until)
            or rm.corrupted_at is not None
            or any(i.replica_id == rid for i in memory.pending)):
        return False
    if any(action in ("ResetBreaker", "any") for action, _ in p.suppressed):
        return False
    return not any(r.status is None or r.status >= 500 or r.status == 401 for r in _admin(p))


def tripped_breaker_reset(trace: Trace, spec: Spec) -> list[Violation]:
    """A visibly tripped breaker of a critical replica is reset within a few polls when
    the operator can act, storm or not (issue 14 item 3: a storm held it for minutes)."""
    rem = spec.remediation
    if rem.mode is not Mode.AUTO or not rem.breaker_reset.enabled:
        return []
    out = []
    owed: dict[str, list[Poll]] = {}
    for p in trace.polls:
        memory = _memory(p.status)
        for replica in spec.replicas:
            rid = replica.id
            if not _reset_owed(p, memory, rid, spec):
                owed.pop(rid, None)
                continue
            owed.setdefault(rid, []).append(p)
            if len(owed[rid]) == RESET_WITHIN_POLLS:
                assert memory is not None
                first = owed[rid][0]
                out.append(Violation(
                    "tripped_breaker_reset", p.t,
                    f"{rid}'s breaker tripped and shown in the metrics, {rid} critical, "
                    f"nothing holding a reset: none requested in {RESET_WITHIN_POLLS} polls "
                    f"(t={first.t:g}s..{p.t:g}s)"
                    + ("; a storm is on" if _storm(memory, spec) else "")))
    return out


def fair_share(trace: Trace, spec: Spec) -> list[Violation]:
    """A broken cluster never takes a healthy cluster's remediation with it: with at most
    1/share clusters on one operator, a cluster is refused for the operator-wide budget
    only once it has itself spent its fair share (issue 14 item 4, second half)."""
    neighbours = trace.incident.neighbours
    limit = trace.budget[0]
    fair = max(1, math.ceil(limit * DEFAULT_SHARE))
    if not neighbours or (len(neighbours) + 1) * fair > limit:
        return []
    out = []
    for p in trace.polls:
        if not any(g == "OperatorBudgetExhausted" for _, g in p.suppressed):
            continue
        since = max([p.t - 3600.0, *(t for t in trace.restarts if t <= p.t)])
        mine = sum(1 for t, o in trace.spends if o == OWNER and since <= t < p.t)
        # this poll's own actions come out of the same share before the refused one
        mine += len({(r.path, json.dumps(r.body, sort_keys=True)) for r in _writes(p)})
        mine += sum(REBUILD_ANNOTATION in ann for _, ann in p.annotations)
        if mine < fair:
            others = sum(1 for t, o in trace.spends if o != OWNER and since <= t < p.t)
            out.append(Violation("fair_share", p.t,
                                 f"an action refused for OperatorBudgetExhausted after this "
                                 f"cluster spent {mine} of its fair share {fair} (budget "
                                 f"{limit}/h); {len(neighbours)} other clusters spent {others}"))
            break
    return out


def exercised(trace: Trace) -> frozenset[str]:
    """The invariants this run put to the test (not merely vacuous): a visibly tripped
    breaker of a critical replica, its ladder not past the reset, in a storm while the
    operator could act; the healthy cluster acting while its neighbours spent at least a
    fair share of the operator-wide budget."""
    spec = _spec(trace)
    found = set()
    rem = spec.remediation
    if rem.mode is Mode.AUTO and rem.breaker_reset.enabled:
        for p in trace.polls:
            memory = _memory(p.status)
            if memory is None or p.paused or not _storm(memory, spec):
                continue
            shown = _tripped_shown(p)
            if any(r.replica_id in shown and r.severity is Severity.CRITICAL
                   and r.step in (Step.NONE, Step.RESET_BREAKER) for r in memory.replicas):
                found.add("tripped_breaker_reset")
                break
    if trace.incident.neighbours:
        fair = max(1, math.ceil(trace.budget[0] * DEFAULT_SHARE))
        for p in trace.polls:
            if not _writes(p):
                continue
            since = max([p.t - 3600.0, *(t for t in trace.restarts if t <= p.t)])
            if sum(1 for t, o in trace.spends if o != OWNER and since <= t < p.t) >= fair:
                found.add("fair_share")
                break
    return frozenset(found)


CHECKS: dict[str, Callable[[Trace, Spec], list[Violation]]] = {
    "no_action_on_bad_data": no_action_on_bad_data,
    "throttle_floor": throttle_floor,
    "one_sync_per_replica": one_sync_per_replica,
    "rebuild_marks": rebuild_marks,
    "admin_request_rate": admin_request_rate,
    "rate_restored": rate_restored,
    "held_actions_reported": held_actions_reported,
    "messages_match_numbers": messages_match_numbers,
    "unknown_while_blind": unknown_while_blind,
    "token_rotation": token_rotation,
    "tripped_breaker_reset": tripped_breaker_reset,
    "fair_share": fair_share,
}
INVARIANTS = (
    "no_action_on_bad_data", "throttle_floor", "one_sync_per_replica",
    "no_duplicate_action_across_restart", "no_rebuild_while_sync_progresses", "rebuild_limits",
    "rebuild_keeps_in_sync_replicas", "rebuild_needs_fresh_approval",
    "admin_requests_per_minute", "admin_writes_per_hour", "rate_restored",
    "held_action_reported", "messages_match_numbers", "unknown_while_blind", "token_rotation",
    "tripped_breaker_reset", "fair_share",
)


def check(trace: Trace) -> list[Violation]:
    spec = _spec(trace)
    return [v for fn in CHECKS.values() for v in fn(trace, spec)]
