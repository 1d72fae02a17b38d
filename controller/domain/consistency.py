"""Where a valid spec contradicts what StemeDB itself reports.

A spec can pass every schema rule and still describe another cluster: two
replicas' agentIds swapped (the breaker reset would go to the wrong agent, and
the tripped breaker would look untripped), or an adminUrl that reaches a
replica instead of the primary. StemeDB's metrics say who is who, so the
operator compares, and acts on nothing until the spec agrees (issue 11).
"""

from __future__ import annotations

from controller.domain.observation import Observation
from controller.domain.spec import Spec, SpecProblem
from controller.domain.validation import shown


def spec_contradictions(spec: Spec, observation: Observation) -> tuple[SpecProblem, ...]:
    """Each field whose value StemeDB's own metrics contradict, with both values."""
    problems: list[SpecProblem] = []
    if observation.primary_role is not None and observation.primary_role != "primary":
        problems.append(SpecProblem(
            "spec.primary.adminUrl",
            f"spec.primary.adminUrl reaches a node whose role is "
            f"{shown(observation.primary_role)}, not the primary",
        ))
    if observation.primary_node is not None and observation.primary_node != spec.primary.id:
        problems.append(SpecProblem(
            "spec.primary.id",
            f"spec.primary.id is {spec.primary.id!r} but the node at spec.primary.adminUrl "
            f"reports itself as {shown(observation.primary_node)}",
        ))
    for i, replica in enumerate(spec.replicas):
        seen = observation.replica(replica.id)
        if seen is None or seen.agent_id is None or seen.agent_id == replica.agent_id:
            continue
        problems.append(SpecProblem(
            f"spec.replicas[{i}].agentId",
            f"spec.replicas[{i}].agentId is {replica.agent_id!r} but the primary reports "
            f"replica {replica.id!r}'s breaker as agent {shown(seen.agent_id)}",
        ))
    return tuple(problems)
