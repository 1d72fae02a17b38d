"""FIFO of unapplied assertions as (t0, t1, count) chunks, uniform in ingest time.

Keeping ingest times lets lag be the exact age of the oldest unapplied assertion,
and lets a throttled or blocked stream be integrated exactly for piecewise-constant
rates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

EPS = 1e-6
#: chunks are coalesced while the last one spans less than this (sim seconds)
COALESCE_SPAN = 1.0


@dataclass(slots=True)
class Chunk:
    t0: float
    t1: float
    count: float


class Backlog:
    def __init__(self) -> None:
        self._q: deque[Chunk] = deque()
        self.total = 0.0

    def __len__(self) -> int:
        return len(self._q)

    def push(self, t0: float, t1: float, count: float) -> None:
        if count <= 0:
            return
        self.total += count
        if self._q:
            last = self._q[-1]
            if abs(last.t1 - t0) < 1e-9:
                span = last.t1 - last.t0
                same_rate = span > 0 and abs(last.count / span - count / (t1 - t0)) < 1e-9 * (
                    1 + count / (t1 - t0)
                )
                if same_rate or span < COALESCE_SPAN:
                    last.t1 = t1
                    last.count += count
                    return
        self._q.append(Chunk(t0, t1, count))

    def oldest(self) -> float | None:
        """Ingest time of the oldest unapplied assertion, or None when caught up."""
        if self.total <= EPS or not self._q:
            return None
        return self._q[0].t0

    def consume(self, budget: float, available_before: float) -> float:
        """Remove up to `budget` assertions ingested before `available_before`, oldest first."""
        taken = 0.0
        q = self._q
        while budget > EPS and q:
            c = q[0]
            if c.t0 >= available_before:
                break
            partial = c.t0 < available_before < c.t1
            avail = c.count * (available_before - c.t0) / (c.t1 - c.t0) if partial else c.count
            take = min(avail, budget)
            if take >= c.count - EPS:
                take = c.count
                q.popleft()
            else:
                c.t0 += (c.t1 - c.t0) * take / c.count
                c.count -= take
            taken += take
            budget -= take
            if partial:
                break  # the rest of this chunk has not arrived yet
        self.total -= taken
        if not q or self.total < EPS:
            self.total = 0.0 if not q else max(self.total, 0.0)
        return taken

    def clear(self) -> float:
        """Drop everything (a replica rebuilt from scratch); returns how much was dropped."""
        dropped = self.total
        self._q.clear()
        self.total = 0.0
        return dropped
