"""The operator-wide sliding-hour action budget (controller/domain/budget.py)."""

import pytest

from controller.domain.budget import ActionBudget


def test_budget_spends_and_refills_after_the_window() -> None:
    b = ActionBudget(limit=2, share=1.0)
    assert b.remaining(0.0) == 2
    b.spend(0.0)
    b.spend(10.0)
    assert b.remaining(20.0) == 0
    assert b.remaining(3600.0) == 1
    assert b.remaining(3610.0) == 2


@pytest.mark.parametrize(("limit", "share", "per_owner"), [
    (100, 0.25, 25), (10, 0.25, 3), (2, 0.25, 1), (0, 0.25, 0), (7, 1.0, 7),
], ids=["default", "rounded up", "at least one", "no budget", "no fairness"])
def test_one_cluster_gets_at_most_its_share(limit: int, share: float, per_owner: int) -> None:
    assert ActionBudget(limit=limit, share=share).per_owner == per_owner


def test_broken_clusters_cannot_take_what_a_healthy_one_needs() -> None:
    b = ActionBudget(limit=8, share=0.25)  # two actions each per hour
    for t, owner in enumerate(["ns/broken-a"] * 5 + ["ns/broken-b"] * 5 + ["ns/broken-c"] * 5):
        if b.remaining(float(t), owner):
            b.spend(float(t), owner)
    assert b.remaining(20.0, "ns/broken-a") == 0
    assert b.remaining(20.0, "ns/healthy") == 2
    assert b.remaining(20.0) == 2
    assert b.remaining(3600.0, "ns/broken-a") == 1  # its first action left the window
