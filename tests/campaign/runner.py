"""Run incidents (in worker processes) and sort their violations into known defects,
each with the issue-14 item it belongs to, and new ones."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import structlog

from tests.campaign.incidents import Incident, generate
from tests.campaign.invariants import Violation, check
from tests.campaign.outcomes import Outcome, outcome
from tests.campaign.world import run


@dataclass(frozen=True)
class Known:
    """A violation the current code is known to commit (fixed separately): matched by
    invariant and a pattern on the detail, with a regression seed."""

    name: str
    invariant: str
    pattern: str
    issue: str
    seed: int
    diagnosis: str

    def matches(self, v: Violation) -> bool:
        return v.invariant == self.invariant and re.search(self.pattern, v.detail) is not None


# Known defects of the current controller code (issue 14), each with a regression case
# in test_campaign.py (xfail, strict: fixing one makes its case pass and the suite fail
# until its entry is removed here).
KNOWN: tuple[Known, ...] = (
)

# Defects the campaign found and the controller has since fixed: each seed must stay
# free of its violation (a plain regression case in test_campaign.py).
FIXED: tuple[Known, ...] = (
    Known("rebuild_marked_during_human_sync", "no_rebuild_while_sync_progresses", r"",
          "item 1 (class)", 4986,
          "a replica whose breaker re-trips every 5 s (resets and syncs used up, rebuild "
          "approved) is marked for rebuild while a sync a human started 7 s before "
          "progresses 0 -> 0.45 (found in a fleet incident; shrunk to one cluster with a "
          "restart: breaker_retrip, approve, restart, human_sync). Fixed: the rebuild step "
          "waits while a sync of the replica runs and its progress moved within "
          "stallTimeoutSeconds"),
    Known("backoff_hold_unreported_after_pause", "held_action_reported",
          r"AdminApiBackingOff", "item 8 (class)", 4779,
          "after a 30 s pause the restore's SetRateLimit is held by the admin backoff again, "
          "but RemediationAllowed names ClusterBudgetExhausted and the backoff's "
          "once-per-failure-count notice was given before the pause (shrunk: admin API "
          "refusing connections, a breaker trip, a pause, maxActionsPerHour 6). No longer "
          "seen once maxActionsPerHour kept room for the restore (restore_reserve.py): "
          "the restore is no longer budget-held after the pause; kept as a regression seed"),
    Known("restore_retried_beyond_max_actions", "admin_writes_per_hour", r"", "items 4 and 7",
          755,
          "a failed restore was issued again after its backoff, past the hour's "
          "maxActionsPerHour (7 writes under 6): two rules met. Settled as a rule, not a "
          "code change: lifting the operator's own throttle is never held by a budget, so the "
          "repeats of a failed restore do not count against maxActionsPerHour; the invariant "
          "checks that they keep to the backoff instead"),
    Known("failing_admin_api_hammered", "admin_requests_per_minute", r"", "items 4 and 6", 15,
          "the tripped-breakers list was read every poll while a reset awaited "
          "confirmation (shrunk: one breaker trip at a 2 s poll, 30 reads a minute) and for "
          "a whole storm, with up to 4 attempts each when the admin API failed (fixed: the "
          "breaker step asks for the list when it chooses, and failed reads back off)"),
    Known("acts_on_truncated_metrics", "no_action_on_bad_data", r"", "item 9 (class)", 2467,
          "a /metrics body cut at a line boundary parsed: the series after the cut (sync "
          "progress, errors, breaker) were missing and the policy acted on the rest (fixed: "
          "a replica without a series the decisions need makes the scrape incomplete)"),
    Known("failed_attempts_beyond_max_actions", "admin_writes_per_hour", r"", "item 4", 175,
          "failed admin writes were retried by the client (4 attempts per call) and not "
          "counted against maxActionsPerHour: more write attempts per hour than the spec "
          "allows (fixed: a write that reached StemeDB is never repeated by the client)"),
    Known("sync_requested_while_a_human_sync_runs", "one_sync_per_replica", r"", "item 1",
          804, "a sync started by hand was running when the ladder reached the forced "
               "sync, and the operator requested its own (409, the same sync)"),
    Known("lag_list_against_threshold", "messages_match_numbers", r"said to be past", "item 8",
          2, "Degraded's 'N of M replicas past critical X s: nodeK Y s' lists memory's shown "
             "lag, below X for a replica kept critical (hysteresis) or recovering"),
    Known("attempt_zero", "messages_match_numbers", r"attempt 0/", "item 8", 208,
          "Remediating says 'attempt 0/N' for a step whose first action is held (budget)"),
    Known("sync_requested_while_running", "one_sync_per_replica", r"", "item 1", 209,
          "a sync the operator counted as failed (stalled: progress frozen, still running) "
          "is followed by another sync request for the same replica, answered 409 with the "
          "same sync; shrunk: disk_saturation + sync_stall on one replica"),
    Known("stalled_sync_requested_after_restart", "no_duplicate_action_across_restart", r"",
          "item 1", 6351,
          "sync_requested_while_running with a restart in between: the operator's own "
          "stalled sync is counted failed and requested again (409 naming it); the restart "
          "is incidental"),
    Known("failed_restore_forgotten", "rate_restored", r"^(?!.*held by)", "item 4 (class)", 870,
          "a restore-ramp SetRateLimit that fails (500/502, timeout) is treated as done: the "
          "ramp moves on, status says RateRestored/Idle while the old limit stays; the next "
          "episode then reads that leftover limit back as the rate to restore"),
    Known("restore_held_by_budget", "rate_restored", r"held by ClusterBudgetExhausted",
          "item 7 (class)", 98,
          "after recovery the restore ramp is held by maxActionsPerHour (the incident used "
          "it up): ingestion stays throttled for up to an hour after the lag is gone"),
)


def known(v: Violation) -> Known | None:
    return next((k for k in KNOWN if k.matches(v)), None)


def quiet() -> None:
    """The operator's logs cost more than the incident; the campaign reads the trace.
    For a process of its own (a worker, the bench): it changes structlog for good."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
                        cache_logger_on_first_use=True)


@contextlib.contextmanager
def quieted() -> Iterator[None]:
    """`quiet` for a run inside another process (pytest): structlog's configuration is
    put back afterwards, and no logger caches the quiet one (later tests read logs)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
                        cache_logger_on_first_use=False)
    try:
        yield
    finally:
        structlog.configure(**saved)


def evaluate(incident: Incident) -> Outcome:
    """One incident with the operator and without it (the same seed), its violations and
    which invariants it exercised."""
    with quieted():
        trace = run(incident)
        nothing = run(incident, operator=False)
    return outcome(trace, nothing, check(trace))


def violations(incident: Incident) -> list[Violation]:
    with quieted():
        return check(run(incident))


def _evaluate_seed(seed: int) -> Outcome:
    return evaluate(generate(seed))


def _untraced() -> None:
    """Worker start: stop the coverage measurement a forked worker inherits from
    `make test` (pytest --cov); it made the campaign four times slower, and the
    campaign is not there for coverage. The worker is its own process: quiet for good."""
    quiet()
    try:
        import coverage
    except ImportError:  # pragma: no cover - coverage is in the dev extra
        return
    cov = coverage.Coverage.current()
    if cov is not None:
        cov.stop()


def run_seeds(seeds: Iterable[int], workers: int | None = None) -> list[Outcome]:
    return list(iter_seeds(seeds, workers))


def iter_seeds(seeds: Iterable[int], workers: int | None = None) -> Iterator[Outcome]:
    """The outcomes in seed order as they come (a long run can stop early and keep what
    it has: closing the iterator cancels the chunks not started)."""
    seeds = list(seeds)
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1:
        yield from (_evaluate_seed(s) for s in seeds)
        return
    pool = ProcessPoolExecutor(workers, initializer=_untraced)
    try:
        yield from pool.map(_evaluate_seed, seeds, chunksize=25)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
