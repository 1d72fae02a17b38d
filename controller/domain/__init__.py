"""Pure domain: spec, observation, memory, conditions, the remediation policy, status.

No I/O libraries are imported here (enforced by import-linter); time is passed in.
"""

from controller.domain.conditions import (
    Condition,
    ConditionType,
    EventReason,
    EventType,
    Reason,
    merge_conditions,
)
from controller.domain.consistency import spec_contradictions
from controller.domain.memory import (
    ActionKind,
    HistoryEntry,
    Intent,
    Memory,
    MemoryFormatError,
    ReplicaMemory,
    Severity,
    Step,
)
from controller.domain.observation import (
    APPROVE_REBUILD_ANNOTATION,
    UNKNOWN,
    Evidence,
    Observation,
    RateLimit,
    ReplicaObservation,
    SourceState,
    SourceStatus,
    Unknown,
    parse_approvals,
)
from controller.domain.policy import (
    Action,
    ActionOutcome,
    Escalation,
    EventRecord,
    Plan,
    decide,
    evidence_needed,
    record_outcome,
)
from controller.domain.spec import Mode, RebuildPolicy, Spec, SpecError, SpecProblem, parse_spec
from controller.domain.status import build_status

__all__ = [
    "APPROVE_REBUILD_ANNOTATION",
    "UNKNOWN",
    "Action",
    "ActionKind",
    "ActionOutcome",
    "Condition",
    "ConditionType",
    "Escalation",
    "EventReason",
    "EventRecord",
    "EventType",
    "Evidence",
    "HistoryEntry",
    "Intent",
    "Memory",
    "MemoryFormatError",
    "Mode",
    "Observation",
    "Plan",
    "RateLimit",
    "Reason",
    "RebuildPolicy",
    "ReplicaMemory",
    "ReplicaObservation",
    "Severity",
    "SourceState",
    "SourceStatus",
    "Spec",
    "SpecError",
    "SpecProblem",
    "Step",
    "Unknown",
    "build_status",
    "decide",
    "evidence_needed",
    "merge_conditions",
    "parse_approvals",
    "parse_spec",
    "record_outcome",
    "spec_contradictions",
]
