"""The operator-wide action budget: at most N admin actions per sliding hour,
across every cluster, so a bug or a storm cannot turn the operator into a flood."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class ActionBudget:
    limit: int
    window_seconds: float = 3600.0
    _spent: deque[float] = field(default_factory=deque)

    def remaining(self, now: float) -> int:
        while self._spent and now - self._spent[0] >= self.window_seconds:
            self._spent.popleft()
        return max(0, self.limit - len(self._spent))

    def spend(self, now: float) -> None:
        self._spent.append(now)
