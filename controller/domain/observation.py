"""What one poll saw. A failed scrape is data (`SourceStatus.failed`), not an exception."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.domain.spec import MAX_REPLICAS
from controller.domain.validation import NODE_ID, NODE_ID_MAX


class SourceState(enum.StrEnum):
    OK = "Ok"
    FAILED = "Failed"
    DENIED = "Denied"


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """How one metrics source answered: ok, failed (with the error text), or denied
    by the operator's destination policy. (StemeDB's exposition carries no sample
    timestamps, so there is no "stale" answer to tell apart from "ok".)"""

    state: SourceState
    detail: str = ""

    @classmethod
    def ok(cls) -> SourceStatus:
        return cls(SourceState.OK)

    @classmethod
    def failed(cls, error: str) -> SourceStatus:
        return cls(SourceState.FAILED, error)

    @classmethod
    def denied(cls, detail: str) -> SourceStatus:
        """The operator's destination policy refused the URL: nothing was sent."""
        return cls(SourceState.DENIED, detail)

    @property
    def is_ok(self) -> bool:
        return self.state is SourceState.OK


class Unknown(enum.Enum):
    """The rate limit could not be read back (distinct from None = unlimited)."""

    UNKNOWN = "Unknown"

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown.UNKNOWN


class NotRead(enum.Enum):
    """The tripped-breakers list was not read this poll (distinct from None: read and
    failed). `decide` asks for it (`Plan.wants_tripped_breakers`) when a decision
    needs it, and is then run again with the list."""

    NOT_READ = "NotRead"

    def __repr__(self) -> str:
        return "NOT_READ"


NOT_READ = NotRead.NOT_READ

# The ingestion rate limit as read back from the primary:
#   int      -> max assertions per second currently configured
#   None     -> no limit configured (unlimited)
#   UNKNOWN  -> could not be read back
RateLimit = int | None | Unknown


@dataclass(frozen=True, slots=True)
class ReplicaObservation:
    replica_id: str
    lag_seconds: float | None = None
    sync_running: bool | None = None
    sync_progress: float | None = None
    sync_errors_total: float | None = None
    sync_corruption_total: float | None = None
    restarts_total: float | None = None
    # How the replica's own metricsUrl answered, when it was scraped (evidence_needed):
    # None when it was not. A denied answer stops the poll (DestinationDenied).
    source: SourceStatus | None = None
    # The agent id the primary reports for this replica's breaker, if any.
    agent_id: str | None = None
    # The primary's breaker gauge for this replica (None: not reported): enough to
    # confirm a reset without reading the admin API's tripped list every poll.
    breaker_tripped: bool | None = None
    # Series the decisions need that the primary's scrape had no sample of for this
    # replica (sorted names): the scrape is incomplete and nothing is acted on.
    missing_series: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Observation:
    at: float
    primary: SourceStatus
    replicas: tuple[ReplicaObservation, ...] = ()
    # The admin API's tripped-breakers list: the agents in it, None when it could not
    # be read (or its reads back off), NOT_READ when this poll has not read it.
    tripped_agents: frozenset[str] | NotRead | None = None
    rate_limit: RateLimit = UNKNOWN
    # Replica ids approved for rebuild by the annotation `stemedb.io/approve-rebuild`.
    approved_rebuilds: frozenset[str] = field(default_factory=frozenset)
    # Who the scraped node says it is (stemedb_node_info), if it says.
    primary_node: str | None = None
    primary_role: str | None = None
    # This process's first look at the cluster (after a start, a restart or taking
    # over as leader): the time since the memory was written went unobserved, so
    # rules that need continuous observation (a sync's stall) start their clock anew.
    first_look: bool = False

    def replica(self, replica_id: str) -> ReplicaObservation | None:
        for r in self.replicas:
            if r.replica_id == replica_id:
                return r
        return None


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the handler should fetch this poll beyond the one primary scrape (the
    tripped-breakers list is asked for by `decide` itself, when a decision needs it)."""

    replica_metrics: frozenset[str] = frozenset()

    @property
    def nothing_extra(self) -> bool:
        return not self.replica_metrics


APPROVE_REBUILD_ANNOTATION = "stemedb.io/approve-rebuild"


_REPLICA_ID = re.compile(NODE_ID)
# A rebuild request, as the operator shows it and an approval must name it:
# `<replica id>@<request number>` (see `rebuild_request`).
_REQUEST_SUFFIX = re.compile(r"@[0-9]{1,12}")


def rebuild_request(replica_id: str, anchor: float) -> str:
    """The id of a rebuild request: the replica and the start of the episode that
    asks for it. An approval must name it, so an approval is used up with its
    episode and never carries over to the next incident (issue 14)."""
    return f"{replica_id}@{int(anchor)}"


def parse_approvals(annotations: Mapping[str, object] | None) -> frozenset[str]:
    """Rebuild requests (`node2@1795981285`) or bare replica ids named, comma-separated,
    in the approve-rebuild annotation. A bare replica id approves nothing: it is kept
    only so the operator can say why it is ignored.

    Whoever may edit the resource writes this value. An item that cannot be a replica
    id (the spec's rule: at most 63 of [A-Za-z0-9._-], starting and ending with a
    letter or digit), optionally followed by `@` and a request number, is dropped,
    never approved or kept: no control characters, lookalikes or megabyte strings
    reach the observation. At most MAX_REPLICAS items are read (the first written).
    """
    if not annotations:
        return frozenset()
    raw = annotations.get(APPROVE_REBUILD_ANNOTATION)
    if not isinstance(raw, str):
        return frozenset()
    approved: dict[str, None] = {}  # insertion-ordered: the first ones written
    for item in raw.split(","):
        text = item.strip()
        rid, at, number = text.partition("@")
        if (len(rid) <= NODE_ID_MAX and _REPLICA_ID.fullmatch(rid)
                and (not at or _REQUEST_SUFFIX.fullmatch(at + number))):
            approved[text] = None
            if len(approved) == MAX_REPLICAS:
                break
    return frozenset(approved)
