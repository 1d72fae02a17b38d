"""The remediation policy: the runbook as a pure, deterministic escalation state machine.

`decide(observation, spec, memory, now, operator_budget_remaining=...)` returns a `Plan`.
The handler writes `plan.memory` to status (intents recorded as pending) BEFORE it
performs `plan.actions`, then reports each outcome with `record_outcome`.

See docs/remediation-policy.md for the state diagram and every reason code, and
docs/adding-a-step.md for how the package is laid out.
"""

from controller.domain.policy.decision import decide
from controller.domain.policy.detection import is_in_sync, quantize_lag
from controller.domain.policy.evidence import evidence_needed
from controller.domain.policy.intents import record_outcome
from controller.domain.policy.ladder import current_step
from controller.domain.policy.plan import (
    Action,
    ActionOutcome,
    Escalation,
    EventRecord,
    Outcome,
    Plan,
)
from controller.domain.policy.work import HOUR, MIN_REQUEUE

__all__ = [
    "HOUR",
    "MIN_REQUEUE",
    "Action",
    "ActionOutcome",
    "Escalation",
    "EventRecord",
    "Outcome",
    "Plan",
    "current_step",
    "decide",
    "evidence_needed",
    "is_in_sync",
    "quantize_lag",
    "record_outcome",
]
