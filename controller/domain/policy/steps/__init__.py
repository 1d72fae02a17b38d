"""The ladder's steps, one module each; their order is `policy.ladder.LADDER`."""

from controller.domain.policy.steps.base import LadderStep, Progress, StepContext
from controller.domain.policy.steps.breaker_reset import BreakerReset
from controller.domain.policy.steps.forced_sync import ForcedSync
from controller.domain.policy.steps.rebuild import Rebuild
from controller.domain.policy.steps.throttle import Throttle

__all__ = ["BreakerReset", "ForcedSync", "LadderStep", "Progress", "Rebuild", "StepContext",
           "Throttle"]
