"""The operator-wide action budget: at most N admin actions per sliding hour,
across every cluster, so a bug or a storm cannot turn the operator into a flood.

The budget is shared fairly: no one cluster may take more than `share` of it in
the window (at least one action), so a few broken or stormy clusters cannot use
up what a healthy cluster's breaker reset needs. Who spends is up to the caller:
the reconcile loop spends only for actions that reached StemeDB (or may have),
while refused attempts are bounded by the per-cluster backoff instead.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field

DEFAULT_SHARE = 0.25


@dataclass
class ActionBudget:
    limit: int
    window_seconds: float = 3600.0
    share: float = DEFAULT_SHARE
    _spent: deque[tuple[float, str]] = field(default_factory=deque)
    _by_owner: Counter[str] = field(default_factory=Counter)

    @property
    def per_owner(self) -> int:
        """The most one cluster may spend in the window."""
        return max(1, math.ceil(self.limit * self.share)) if self.limit > 0 else 0

    def _expire(self, now: float) -> None:
        while self._spent and now - self._spent[0][0] >= self.window_seconds:
            _, owner = self._spent.popleft()
            self._by_owner[owner] -= 1
            if self._by_owner[owner] <= 0:
                del self._by_owner[owner]

    def remaining(self, now: float, owner: str | None = None) -> int:
        """What is left for `owner` (or for anyone, without one) at `now`."""
        self._expire(now)
        left = max(0, self.limit - len(self._spent))
        if owner is None:
            return left
        return max(0, min(left, self.per_owner - self._by_owner[owner]))

    def spend(self, now: float, owner: str = "") -> None:
        self._spent.append((now, owner))
        self._by_owner[owner] += 1
