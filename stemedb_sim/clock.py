"""Sim clocks: wall time scaled by --speed plus manual jumps, or fully manual for tests."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    def advance(self, seconds: float) -> float: ...

    def reset(self) -> None: ...


class WallClock:
    """Sim seconds = (monotonic wall seconds since start) x speed + manual offset."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._start = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        return (time.monotonic() - self._start) * self.speed + self._offset

    def advance(self, seconds: float) -> float:
        self._offset += seconds
        return self.now()

    def reset(self) -> None:
        self._start = time.monotonic()
        self._offset = 0.0


class ManualClock:
    """A clock that only moves when told to: for tests and benches."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = start
        self.speed = 0.0

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> float:
        self._t += seconds
        return self._t

    def reset(self) -> None:
        self._t = 0.0
