"""The operator-wide sliding-hour action budget (controller/domain/budget.py)."""

from controller.domain.budget import ActionBudget


def test_budget_spends_and_refills_after_the_window() -> None:
    b = ActionBudget(limit=2)
    assert b.remaining(0.0) == 2
    b.spend(0.0)
    b.spend(10.0)
    assert b.remaining(20.0) == 0
    assert b.remaining(3600.0) == 1
    assert b.remaining(3610.0) == 2
