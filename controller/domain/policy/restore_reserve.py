"""The writes lifting a throttle will take, kept out of maxActionsPerHour's reach.

Lifting the operator's own throttle is never held by a budget (a throttle left for an
hour is the harm budgets exist to prevent), yet every write counts against
maxActionsPerHour. So the other actions leave room for it: an action is taken only if
the restore it leaves to do still fits in the hour's budget (issue 14, item 4: the
restore ramp took the writes in an hour past maxActionsPerHour).
"""

from __future__ import annotations

import math

from controller.domain.memory import ThrottleMemory
from controller.domain.spec import Spec


def restore_writes(spec: Spec, throttle: ThrottleMemory, current: int | None) -> int:
    """Writes left to lift `throttle` from the limit `current`: each restore-ramp step
    still ahead that raises it, and the final restore; 0 without a throttle."""
    if not throttle.active:
        return 0
    if throttle.final_restore:
        return 1
    base = throttle.rate_to_restore if throttle.rate_to_restore is not None \
        else throttle.base_rate
    ahead = spec.remediation.throttle.restore_ramp[throttle.restore_index + 1:]
    return 1 + sum(1 for fraction in ahead
                   if current is None or math.floor(base * fraction) > current)
