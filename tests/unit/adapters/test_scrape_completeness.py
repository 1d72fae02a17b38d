"""A primary scrape cut short is never taken as complete (issue 14, item 9's class).

Prometheus text 0.0.4 has no end marker, and a body cut at a line boundary parses;
the Content-Length is that of the short body. What tells a complete answer is the
contract (docs/stemedb-api.md §5.1): every per-replica family has a series for every
replica. `ReplicaScrape.missing` names the series the decisions need that a replica
lacks; the policy acts on nothing while any is missing."""

from __future__ import annotations

import pytest

from controller.adapters.metrics_text import MetricsParseError, parse_samples
from controller.adapters.stemedb import DECISION_SERIES, PRIMARY_METRICS, primary_from_samples
from stemedb_sim import ManualClock, Simulation
from stemedb_sim.exposition import render_primary


def _body() -> str:
    """The simulator's primary exposition of a 3-replica cluster in an incident."""
    sim = Simulation(ManualClock(), seed=5)
    model = sim.create_cluster("demo")
    next(iter(model.replicas.values())).breaker.tripped = True
    return render_primary(model)


def _complete(text: str, replicas: list[str]) -> bool:
    try:
        scrape = primary_from_samples(parse_samples(text, PRIMARY_METRICS))
    except MetricsParseError:
        return False
    return all(r in scrape.replicas and not scrape.replicas[r].missing for r in replicas)


def test_the_full_body_is_complete() -> None:
    body = _body()
    scrape = primary_from_samples(parse_samples(body, PRIMARY_METRICS))
    assert scrape.replicas and all(not r.missing for r in scrape.replicas.values())


def test_no_cut_of_the_body_is_taken_as_complete() -> None:
    """Every cut: at each line boundary (parses) and inside lines (refused)."""
    body = _body()
    replicas = sorted(primary_from_samples(parse_samples(body, PRIMARY_METRICS)).replicas)
    lines = body.splitlines(keepends=True)
    cuts = [len("".join(lines[:k])) for k in range(1, len(lines))]
    cuts += list(range(1, len(body), 97))
    taken = [c for c in cuts if _complete(body[:c], replicas)]
    assert taken == []


def _series(name: str, replica: str, value: str = "0") -> str:
    labels = f'replica="{replica}"'
    if name == "stemedb_circuit_breaker_tripped":
        labels += f',agent_id="agent-{replica}"'
    return f"{name}{{{labels}}} {value}\n"


def _text(replicas: dict[str, set[str]], values: dict[str, str] | None = None) -> str:
    return "".join(_series(n, r, (values or {}).get(n, "0"))
                   for r, names in replicas.items() for n in sorted(names))


ALL = set(DECISION_SERIES)
CASES = [
    ("every series for every replica", {"node2": ALL, "node3": ALL}, {}, {}),
    ("a StemeDB without the breaker family", {"node2": ALL - {"stemedb_circuit_breaker_tripped"},
                                              "node3": ALL - {"stemedb_circuit_breaker_tripped"}},
     {}, {"node2": {"stemedb_circuit_breaker_tripped"},
          "node3": {"stemedb_circuit_breaker_tripped"}}),
    ("a family cut after its first replica",
     {"node2": ALL, "node3": ALL - {"stemedb_replica_restarts_total"}}, {},
     {"node3": {"stemedb_replica_restarts_total"}}),
    ("an implausible value is there, though unknown",
     {"node2": ALL}, {"stemedb_merkle_sync_progress": "NaN"}, {}),
]


@pytest.mark.parametrize(("present", "values", "missing"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_missing_names_each_series_a_replica_lacks(
    present: dict[str, set[str]], values: dict[str, str], missing: dict[str, set[str]]
) -> None:
    scrape = primary_from_samples(parse_samples(_text(present, values), PRIMARY_METRICS))
    assert {r: set(s.missing) for r, s in scrape.replicas.items() if s.missing} == missing
