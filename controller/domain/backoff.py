"""Backing off from a failing admin API, per cluster and per action kind.

A StemeDB whose admin endpoints answer 500 or reset connections must not be
hammered: after each failed attempt the next one waits twice as long (from
`BASE_SECONDS` up to `CAP_SECONDS`), with "equal jitter" so that many clusters
failing together do not retry in lockstep. The jitter is derived from the
cluster, the action kind and the attempt number, not from a random source, so
the domain stays pure and a replay of the same incident makes the same choices.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

BASE_SECONDS = 5.0
CAP_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Consecutive failed attempts of one action kind (its ActionKind value, i.e. one
    admin endpoint), and when the next may go. Kept in status.memory, so a restarted
    operator keeps backing off."""

    kind: str = ""
    failures: int = 0
    retry_at: float | None = None
    since: float | None = None  # when the first of these failures happened

    def allows(self, now: float) -> bool:
        return self.retry_at is None or now >= self.retry_at

    def failing_for(self, now: float) -> float:
        return 0.0 if self.since is None else max(0.0, now - self.since)


def delay_after(failures: int, salt: str) -> float:
    """Seconds to wait after the `failures`-th consecutive failure: exponential,
    capped, with equal jitter (half fixed, half spread by a hash of `salt`)."""
    if failures <= 0:
        return 0.0
    ceiling = min(CAP_SECONDS, BASE_SECONDS * 2.0 ** min(failures - 1, 30))
    spread = zlib.crc32(f"{salt}#{failures}".encode()) / 0xFFFFFFFF
    return ceiling / 2.0 + ceiling / 2.0 * spread


def after_failure(previous: Backoff, now: float, salt: str) -> Backoff:
    failures = previous.failures + 1
    return Backoff(kind=previous.kind, failures=failures,
                   retry_at=now + delay_after(failures, f"{salt}:{previous.kind}"),
                   since=previous.since if previous.since is not None else now)


def after_success(previous: Backoff) -> Backoff:
    return Backoff(kind=previous.kind)


def updated(backoffs: tuple[Backoff, ...], kind: str, ok: bool, now: float,
            salt: str) -> tuple[Backoff, ...]:
    """The backoffs after an attempt of `kind` succeeded or failed: a success drops the
    kind's entry, a failure adds one more (the others are kept as they are)."""
    previous = next((b for b in backoffs if b.kind == kind), Backoff(kind=kind))
    others = tuple(b for b in backoffs if b.kind != kind)
    return others if ok else (*others, after_failure(previous, now, salt))
