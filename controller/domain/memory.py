"""What the operator remembers between polls, stored in `.status.memory` as plain JSON.

Everything here is data that changes only when something happens (a threshold
crossed, an action planned, an outcome recorded, a shown lag moved by a step),
never on every poll, so that an unchanged healthy cluster yields identical
memory and the handler writes nothing.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from controller.domain.backoff import Backoff
from controller.domain.codec import camel, to_json

MEMORY_VERSION = 1
HISTORY_LIMIT = 20


class Severity(enum.StrEnum):
    NONE = "None"
    WARNING = "Warning"
    CRITICAL = "Critical"


class Step(enum.StrEnum):
    NONE = "None"
    RESET_BREAKER = "ResetBreaker"
    THROTTLE = "Throttle"
    FORCE_SYNC = "ForceSync"
    REBUILD = "Rebuild"
    EXHAUSTED = "Exhausted"


class ActionKind(enum.StrEnum):
    RESET_BREAKER = "ResetBreaker"
    SET_RATE_LIMIT = "SetRateLimit"
    FORCE_SYNC = "ForceSync"
    MARK_REBUILD = "MarkRebuild"


@dataclass(frozen=True, slots=True)
class Intent:
    """An action planned and written to status before it is performed."""

    key: str
    kind: ActionKind
    replica_id: str | None
    agent_id: str | None
    rate: int | None
    issued_at: float
    deadline: float


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: float
    kind: str
    replica_id: str | None
    reason: str
    message: str
    outcome: str
    key: str | None = None


@dataclass(frozen=True, slots=True)
class ReplicaMemory:
    replica_id: str
    severity: Severity = Severity.NONE
    above_warning_since: float | None = None
    above_critical_since: float | None = None
    below_recovery_since: float | None = None
    episode_started_at: float | None = None
    step: Step = Step.NONE
    step_started_at: float | None = None
    step_baseline_lag: float | None = None
    step_attempts: int = 0
    sync_attempts: int = 0
    sync_seen_running: bool = False
    sync_last_progress: float | None = None
    sync_progress_at: float | None = None
    sync_restarts_base: float | None = None
    sync_errors_base: float | None = None
    last_failed_kind: str | None = None
    corruption_seen: float | None = None
    corrupted_at: float | None = None
    lag_escalated: bool = False
    crash_loop: bool = False
    rebuild_marked: bool = False
    cooldown_until: float | None = None
    last_action: str | None = None
    last_notice: str | None = None
    shown_lag: float | None = None


@dataclass(frozen=True, slots=True)
class ThrottleMemory:
    active: bool = False
    rate_to_restore: int | None = None  # None = no limit was set (restore = remove limit)
    rate_to_restore_known: bool = True  # False: the limit could not be read back
    base_rate: int = 0
    current_rate: int | None = None
    step_at: float | None = None
    baseline_lag: float | None = None
    restoring: bool = False
    restore_index: int = -1
    reissue: bool = False
    # The call that restores the rate in force before the episode is out; the throttle
    # ends only when it succeeds (a failed restore must not be forgotten).
    final_restore: bool = False


@dataclass(frozen=True)
class Memory:
    version: int = MEMORY_VERSION
    replicas: tuple[ReplicaMemory, ...] = ()
    throttle: ThrottleMemory = field(default_factory=ThrottleMemory)
    pending: tuple[Intent, ...] = ()
    action_times: tuple[float, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    seq: int = 0
    escalation_level: int = 0
    escalation_reason: str | None = None
    escalation_message: str | None = None
    escalated_since: float | None = None
    # Since when the primary's metrics have been missing, stale or denied (None: seen).
    blind_since: float | None = None
    backoffs: tuple[Backoff, ...] = ()  # admin calls failing in a row, per action kind
    storm: bool = False
    last_notice: str | None = None
    last_recovery_replica: str | None = None
    last_recovery_seconds: float | None = None

    @classmethod
    def empty(cls) -> Memory:
        return cls()

    def replica(self, replica_id: str) -> ReplicaMemory | None:
        for r in self.replicas:
            if r.replica_id == replica_id:
                return r
        return None

    def with_history(self, *entries: HistoryEntry) -> Memory:
        """The history with `entries` added: an entry carrying the key of one already
        there (an action's outcome) replaces it, so each action is one entry with its
        outcome. Bounded to HISTORY_LIMIT, keeping the opening of the current incident
        (the first entry after the last recovery) so a long incident still shows how
        it began."""
        history = list(self.history)
        for entry in entries:
            at = next((i for i, h in enumerate(history)
                       if entry.key is not None and h.key == entry.key), None)
            if at is None:
                history.append(entry)
            else:
                history[at] = entry
        if len(history) > HISTORY_LIMIT:
            opening = _incident_opening(history)
            if opening < len(history) - (HISTORY_LIMIT - 1):  # it would fall out
                history = [history[opening], *history[-(HISTORY_LIMIT - 1):]]
            else:
                history = history[-HISTORY_LIMIT:]
        return replace(self, history=tuple(history))

    def to_json(self) -> dict[str, Any]:
        """Everything but the history, which status.history already shows (written
        once, read back from there after a restart: see `with_history_from`)."""
        out: dict[str, Any] = to_json(replace(self, history=()), _omittable)
        return out

    @classmethod
    def from_json(cls, data: Any) -> Memory:
        return memory_from_json(data)

    def to_text(self) -> str:
        """Compact JSON for `status.memory`: one opaque line in `kubectl describe`,
        replaced whole by a merge patch (no stale keys, no null-deletion surprises).

        Computed once per instance (a Memory is immutable all the way down)."""
        text: str | None = self.__dict__.get("_text")
        if text is None:
            text = json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)
            object.__setattr__(self, "_text", text)
        return text

    @classmethod
    def from_text(cls, text: Any) -> Memory:
        """Read `status.memory`: the JSON text, or the object form of older writes."""
        if isinstance(text, str):
            try:
                text = json.loads(text)
            except ValueError as exc:
                raise MemoryFormatError(f"memory is not JSON: {exc}") from exc
        return memory_from_json(text)


# Reasons that end an incident: the entry after the last of them opens the current one.
_INCIDENT_ENDS = frozenset({"Recovered", "EscalationCleared"})


def _incident_opening(history: list[HistoryEntry]) -> int:
    """Index of the first entry of the current incident (0 if none ended)."""
    for i in range(len(history) - 1, -1, -1):
        if history[i].reason in _INCIDENT_ENDS:
            return min(i + 1, len(history) - 1)
    return 0


class MemoryFormatError(ValueError):
    """Stored memory has an unknown version or shape; the handler starts afresh."""


def _optional(f: Any) -> bool:
    """The field's type admits None (annotations are strings here)."""
    return "None" in str(f.type)


def _omittable(f: Any, value: Any) -> bool:
    """True when `_build` would read the field back as `value` from its absence:
    an optional field that is None, or any other field at its default. Leaving
    those out halves `status.memory` (it is held in every copy of the object).
    The version is always written."""
    if f.name == "version":
        return False
    if _optional(f):
        return value is None
    if f.default is not MISSING:
        return bool(value == f.default)
    if f.default_factory is not MISSING:
        return bool(value == f.default_factory())
    return False


def _num(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MemoryFormatError(f"expected a number, got {value!r}")
    return float(value)


def _build(cls: type[Any], data: Any, converters: dict[str, Any]) -> Any:
    """An instance of the dataclass `cls` from its camelCase JSON object, each field
    passed through its converter."""
    if not isinstance(data, dict):
        raise MemoryFormatError(f"{cls.__name__} must be an object")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        key = camel(f.name)
        if key not in data:
            # Status is written as a JSON merge patch, where null deletes the key:
            # an absent optional field was None when it was written.
            if _optional(f):
                kwargs[f.name] = None
            continue
        value = data[key]
        convert = converters.get(f.name)
        kwargs[f.name] = convert(value) if convert is not None and value is not None else value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # pragma: no cover - defensive
        raise MemoryFormatError(str(exc)) from exc


_FLOAT_FIELDS = {
    "above_warning_since", "above_critical_since", "below_recovery_since",
    "episode_started_at", "step_started_at", "step_baseline_lag", "sync_last_progress",
    "sync_progress_at", "sync_restarts_base", "sync_errors_base", "corruption_seen",
    "corrupted_at", "cooldown_until", "shown_lag", "step_at", "baseline_lag",
    "issued_at", "deadline", "at", "escalated_since", "last_recovery_seconds",
    "retry_at", "since",
}


def _conv_for(cls: type[Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Numbers for the float fields of `cls`, plus `extra` converters."""
    converters: dict[str, Any] = {f.name: _num for f in fields(cls) if f.name in _FLOAT_FIELDS}
    converters.update(extra)
    return converters


def memory_from_json(data: Any) -> Memory:
    if not isinstance(data, dict):
        raise MemoryFormatError("memory must be an object")
    if data.get("version") != MEMORY_VERSION:
        raise MemoryFormatError(f"unsupported memory version {data.get('version')!r}")

    def enum_of(enum_type: type[enum.Enum]) -> Any:
        def convert(value: Any) -> Any:
            try:
                return enum_type(value)
            except ValueError as exc:
                raise MemoryFormatError(str(exc)) from exc

        return convert

    def many(convert_one: Any) -> Any:
        def convert(value: Any) -> Any:
            if not isinstance(value, list):
                raise MemoryFormatError("expected a list")
            return tuple(convert_one(item) for item in value)

        return convert

    def replica(item: Any) -> Any:
        return _build(ReplicaMemory, item, _conv_for(
            ReplicaMemory, {"severity": enum_of(Severity), "step": enum_of(Step)}))

    def intent(item: Any) -> Any:
        return _build(Intent, item, _conv_for(Intent, {"kind": enum_of(ActionKind)}))

    def history_entry(item: Any) -> Any:
        return _build(HistoryEntry, item, _conv_for(HistoryEntry, {}))

    def throttle(item: Any) -> Any:
        return _build(ThrottleMemory, item, _conv_for(ThrottleMemory, {}))

    def backoff(item: Any) -> Any:
        return _build(Backoff, item, _conv_for(Backoff, {}))

    memory: Memory = _build(
        Memory,
        data,
        _conv_for(
            Memory,
            {
                "replicas": many(replica),
                "throttle": throttle,
                "pending": many(intent),
                "action_times": many(_num),
                "history": many(history_entry),
                "backoffs": many(backoff),
            },
        ),
    )
    return memory


def history_to_json(history: tuple[HistoryEntry, ...]) -> list[dict[str, Any]]:
    """status.history: one object per entry, times in RFC 3339 (whole seconds)."""
    return [
        {
            "time": _dt.datetime.fromtimestamp(int(h.at), tz=_dt.UTC)
            .strftime("%Y-%m-%dT%H:%M:%SZ"),
            "kind": h.kind,
            "replica": h.replica_id,
            "reason": h.reason,
            "message": h.message,
            "outcome": h.outcome,
            **({"key": h.key} if h.key else {}),
        }
        for h in history
    ]


def history_from_json(items: Any) -> tuple[HistoryEntry, ...]:
    """status.history read back after a restart (the memory does not repeat it). An
    entry that is not what the operator writes is left out, never a reason to fail:
    the history only informs humans, no decision reads it."""
    if not isinstance(items, list):
        return ()
    out: list[HistoryEntry] = []
    for item in items[-HISTORY_LIMIT:]:
        if not isinstance(item, dict):
            continue
        try:
            at = _dt.datetime.strptime(str(item["time"]), "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=_dt.UTC).timestamp()
            texts = [item.get(k) for k in ("kind", "reason", "message", "outcome")]
            replica, key = item.get("replica"), item.get("key")
        except (KeyError, ValueError):
            continue
        if not all(isinstance(t, str) for t in texts) or not all(
                v is None or isinstance(v, str) for v in (replica, key)):
            continue
        kind, reason, message, outcome = (str(t) for t in texts)
        out.append(HistoryEntry(at, kind, replica, reason, message, outcome, key))
    return tuple(out)

