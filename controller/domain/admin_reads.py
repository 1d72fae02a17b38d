"""Backing off reads of admin state, per cluster, like the actions' calls.

A read changes nothing, but a read of a failing admin API is still a request to a
struggling server, repeated by the client up to 4 times (issue 14, item 4: the
tripped-breakers list was read every poll with 4 attempts each while the API
answered 500). After a failed read the next waits as an action would
(`backoff.delay_after`: 2.5-5 s, doubling to 5 minutes, jittered per cluster); the
wait is kept in `status.memory` with the actions' backoffs, under the read's name.
"""

from __future__ import annotations

import enum
from dataclasses import replace

from controller.domain.backoff import updated
from controller.domain.memory import Memory


class AdminRead(enum.StrEnum):
    """An admin API read the operator makes; its value names its backoff."""

    TRIPPED_BREAKERS = "ReadTrippedBreakers"
    RATE_LIMIT = "ReadRateLimit"


def read_allowed(memory: Memory, read: AdminRead, now: float) -> bool:
    """Whether the read may go now: no failure, or its backoff is over."""
    backoff = next((b for b in memory.backoffs if b.kind == read.value), None)
    return backoff is None or backoff.allows(now)


def after_read(memory: Memory, read: AdminRead, ok: bool, now: float, cluster: str) -> Memory:
    """The memory after a read succeeded (its backoff ends) or failed (one more)."""
    backoffs = updated(memory.backoffs, read.value, ok, now, cluster)
    return memory if backoffs == memory.backoffs else replace(memory, backoffs=backoffs)
