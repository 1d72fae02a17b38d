"""Merkle sync jobs and the sync-duration histogram."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class SyncState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CORRUPTION = "corruption_detected"


@dataclass
class SyncJob:
    """One forced sync: a tree-compare phase (overhead bytes) then the missing data.

    `target` is the backlog when the sync started; `remaining` shrinks as the sync
    (or the stream, which drains the same FIFO) applies it. Progress only rises.
    """

    sync_id: str
    replica_id: str
    force: bool
    started_at: float
    target: float
    remaining: float
    overhead_total: float
    overhead_moved: float = 0.0
    progress: float = 0.0
    state: SyncState = SyncState.RUNNING
    finished_at: float | None = None
    error: str | None = None
    fail_at: float | None = None
    fail_state: SyncState | None = None

    @property
    def running(self) -> bool:
        return self.state is SyncState.RUNNING

    def raw_progress(self, bytes_per_assertion: float) -> float:
        total = self.overhead_total + self.target * bytes_per_assertion
        if total <= 0:
            return 1.0
        done = self.overhead_moved + (self.target - self.remaining) * bytes_per_assertion
        return min(1.0, max(0.0, done / total))

    def to_json(self, iso: Any) -> dict[str, Any]:
        return {
            "sync_id": self.sync_id,
            "replica_id": self.replica_id,
            "state": self.state.value,
            "progress": round(self.progress, 6),
            "started_at": iso(self.started_at),
            "finished_at": None if self.finished_at is None else iso(self.finished_at),
            "error": self.error,
        }


@dataclass
class Histogram:
    buckets: tuple[float, ...] = DURATION_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    sum: float = 0.0
    count: int = 0

    def observe(self, v: float) -> None:
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
        self.sum += v
        self.count += 1
