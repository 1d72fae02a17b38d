"""The randomized incident campaign (issue 14) in `make test`: a fixed set of seeded
incidents, each run through the real reconcile loop, policy and metrics parsing against
the simulator's model on one fake clock, with every invariant checked on every run.

A violation fails the campaign unless it is a known defect of the current controller
code (runner.KNOWN, each naming its issue-14 item); every known defect has a regression
case below, marked xfail(strict=True): fixing the defect makes its case pass, which
fails the suite until the entry moves from KNOWN to FIXED (then a plain regression
case). A failing seed reproduces with
`.venv/bin/python bench/campaign.py --seed N --shrink` (printed on failure).
"""

from __future__ import annotations

import os
import time

import pytest

from controller.domain.policy.steps.breaker_reset import BreakerReset
from tests.campaign.incidents import FAMILIES, FAULT_WEIGHTS, generate
from tests.campaign.invariants import INVARIANTS, check
from tests.campaign.outcomes import Outcome, exercise_counts
from tests.campaign.runner import FIXED, KNOWN, known, quieted, run_seeds, violations
from tests.campaign.world import run

INCIDENTS = int(os.environ.get("CAMPAIGN_INCIDENTS", "1000"))
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def campaign() -> list[Outcome]:
    started = time.perf_counter()
    outcomes = run_seeds(range(INCIDENTS), workers=min(2, os.cpu_count() or 1))
    print(f"\ncampaign: {len(outcomes)} incidents in {time.perf_counter() - started:.0f} s; "
          f"{exercise_counts(outcomes)}")
    return outcomes


def test_no_incident_violates_an_invariant_beyond_the_known_defects(
        campaign: list[Outcome]) -> None:
    new = [(o.seed, v) for o in campaign for v in o.violations if known(v) is None]
    assert not new, "\n".join(
        f"seed {seed}: {v}\n  reproduce and shrink: "
        f".venv/bin/python bench/campaign.py --seed {seed} --shrink" for seed, v in new[:10])


def test_the_fixed_set_covers_every_fault_kind_and_human_action(
        campaign: list[Outcome]) -> None:
    assert len(campaign) >= INCIDENTS
    seen = {k for o in campaign for k in o.kinds}
    assert seen == set(FAULT_WEIGHTS)
    whats = {e.what for s in range(100) for e in generate(s).events}
    assert {"restart", "approve", "approve_bare", "pause", "human_sync", "rotate_token"} <= whats


@pytest.mark.parametrize(("kind", "most"), [
    pytest.param("breaker_trip", 0.05, id="a tripped breaker stays tripped without the "
                 "operator"),
    pytest.param("breaker_retrip", 0.05, id="a breaker that re-trips after each reset"),
])
def test_the_operator_recovers_what_doing_nothing_does_not(
        campaign: list[Outcome], kind: str, most: float) -> None:
    """Recovered by the end against doing nothing, on the same seeds: incidents with only
    this fault (any spec, DryRun and Observe included, hence not all recover)."""
    alone = [o for o in campaign if o.kinds == (kind,)]
    assert len(alone) >= 10
    operator = sum(o.ttr is not None for o in alone) / len(alone)
    nothing = sum(o.ttr_nothing is not None for o in alone) / len(alone)
    assert nothing <= most < operator


@pytest.mark.parametrize(("invariant", "least"), [
    pytest.param("tripped_breaker_reset", 0.02, id="a visibly tripped breaker in a storm"),
    pytest.param("fair_share", 0.01, id="a healthy cluster acting while broken ones spend"),
])
def test_the_generator_makes_the_situations_the_invariants_need(
        campaign: list[Outcome], invariant: str, least: float) -> None:
    """An invariant about storms or shared budgets holds vacuously unless incidents put
    it to the test: enough of the fixed set must (about 5 % and 3 % do)."""
    assert sum(invariant in o.exercised for o in campaign) >= least * len(campaign)


def test_a_seed_reproduces_exactly() -> None:
    first, again = run(generate(7)), run(generate(7))
    assert [[(r.method, r.path, r.status, r.body) for r in p.requests] for p in first.polls] == \
        [[(r.method, r.path, r.status, r.body) for r in p.requests] for p in again.polls]
    assert first.polls[-1].status == again.polls[-1].status
    assert [str(v) for v in check(first)] == [str(v) for v in check(again)]


# (invariant, a seed of its family, how the defect it names is put back)
BROKEN = [
    pytest.param("tripped_breaker_reset", 23, "storm_holds_reset",
                 id="a storm holds every ladder step, the breaker reset too (item 3)"),
    pytest.param("fair_share", 346, "no_fair_share",
                 id="one operator-wide budget without a fair share per cluster (item 4)"),
]


@pytest.mark.parametrize(("invariant", "seed", "defect"), BROKEN)
def test_an_invariant_finds_the_defect_it_is_for(
        monkeypatch: pytest.MonkeyPatch, invariant: str, seed: int, defect: str) -> None:
    """Each new invariant holds on this seed with the current policy and fails once the
    issue-14 defect it stands for is put back, so it is not vacuous."""
    incident = generate(seed)
    assert incident.seed % 10 in FAMILIES
    with quieted():
        assert not [v for v in check(run(incident)) if v.invariant == invariant]
        share = None
        if defect == "storm_holds_reset":
            monkeypatch.setattr(BreakerReset, "runs_in_storm", False)
        else:
            share = 1.0  # one cluster may take the whole budget
        found = [v for v in check(run(incident, budget_share=share)) if v.invariant == invariant]
    assert found


def test_every_invariant_and_known_defect_is_named() -> None:
    assert {k.invariant for k in KNOWN + FIXED} <= set(INVARIANTS)
    assert len({k.name for k in KNOWN + FIXED}) == len(KNOWN + FIXED)


@pytest.mark.parametrize("defect", [
    pytest.param(k, id=f"{k.name}-seed-{k.seed}",
                 marks=pytest.mark.xfail(strict=True, reason=f"issue 14 {k.issue}: "
                                         f"{k.diagnosis}"))
    for k in KNOWN
])
def test_known_defect_regression(defect) -> None:  # type: ignore[no-untyped-def]
    found = [v for v in violations(generate(defect.seed)) if defect.matches(v)]
    assert not found, (f"{found[0]}\n  reproduce: .venv/bin/python bench/campaign.py "
                       f"--seed {defect.seed} --shrink")


@pytest.mark.parametrize("defect", [
    pytest.param(k, id=f"{k.name}-seed-{k.seed}") for k in FIXED
])
def test_fixed_defect_stays_fixed(defect) -> None:  # type: ignore[no-untyped-def]
    test_known_defect_regression(defect)
