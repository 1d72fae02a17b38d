"""`kubectl stemedb status` on a terminal: one screen (80 columns; about 30 lines for
three replicas at level 2) laid out from `view.status_document`. Pure.

Every string that came from the object is cleaned before it is printed: the spec
and the annotations are a tenant's, and an escape sequence in a contact name must
not reach the on-call engineer's terminal as one.
"""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from controller.kubectl_plugin.view import fleet_row, parse_time, status_document

WIDTH = 80
HISTORY_LINES = 6
UNKNOWN = "Unknown"
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean(value: Any, limit: int = WIDTH) -> str:
    """Printable, one line, at most `limit` characters (an ellipsis says it was cut)."""
    text = _UNPRINTABLE.sub("?", re.sub(r"[\t\n\r]+", " ", str(value)))
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def when(value: Any, now: float) -> str:
    """`22:23:10Z (3m ago)`, or `in 4m`; the date too when it is not today's."""
    at = parse_time(value)
    if at is None:
        return UNKNOWN
    stamp = dt.datetime.fromtimestamp(int(at), tz=dt.UTC)
    today = dt.datetime.fromtimestamp(int(now), tz=dt.UTC).date()
    shown = stamp.strftime("%H:%M:%SZ" if stamp.date() == today else "%Y-%m-%d %H:%M:%SZ")
    delta = int(now - at)
    return f"{shown} ({_span(delta)} ago)" if delta >= 0 else f"{shown} (in {_span(-delta)})"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _lag(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:.1f} s"


def _rate(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g}/s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ",
           width: int = WIDTH) -> list[str]:
    """Columns as wide as their widest cell, the line cut to `width`."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        line = indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
        out.append(clean(line.rstrip(), width))
    return out


def _attempts(r: Mapping[str, Any]) -> str:
    """The current step's attempts; past the sync step, the syncs that failed."""
    if r["step"] in ("Rebuild", "Exhausted") and r.get("syncAttempts"):
        return f"{r['syncAttempts']} syncs"
    return str(r["attempts"]) if r["attempts"] else "-"


def _step_text(step: Mapping[str, Any] | None, now: float) -> str:
    if step is None:
        return "-"
    text = clean(step["what"], 40)
    if step.get("at"):
        text += f" at {when(step['at'], now)}"
    return text


def render_status(obj: Mapping[str, Any], now: float) -> str:
    """The one screen for a cluster."""
    d = status_document(obj, now)
    esc = d["escalation"]
    conds = d["conditions"]
    lines = [clean(f"StemeDBCluster {d['namespace']}/{d['name']}   as of "
                   f"{when(d['observedAt'], now).split(' ')[0]}")]
    if d["phase"] == "Pending":
        lines.append("Phase        Pending: the operator has not written a status yet")
    else:
        head = d["phase"] + (f", level {esc['level']}" if esc["level"] else "")
        said = conds.get("Degraded" if conds.get("Degraded", {}).get("status") else "Ready",
                         {}).get("message")
        lines.append(clean(f"Phase        {head}" + (f": {said}" if said else "")))
    if d["metricsAvailable"] is True:
        lagging = d["laggingReplicas"]
        lines.append(clean(
            f"Max lag      {_lag(d['maxLagSeconds'])}"
            + (f", {lagging} of {len(d['replicas'])} replicas lagging"
               if lagging is not None else "")))
    else:
        since = d["lagUnknownSince"]
        why = conds.get("MetricsAvailable", {}).get("message")
        lines.append(clean(f"Max lag      {UNKNOWN}" + (f" since {when(since, now)}" if since
                                                          else "")))
        if why:
            lines.append(clean(f"             {why}"))
    allowed = conds.get("RemediationAllowed", {}).get("message")
    said = allowed or f"mode {d['mode']}"
    if d["paused"] and "paused" not in said:
        said = f"PAUSED (spec.remediation.paused); {said}"
    lines.append(clean(f"Remediation  {said}"))
    if d["throttle"]["phase"] not in (None, "None"):
        t = d["throttle"]
        lines.append(clean(f"Throttle     {t['phase']}: limit {_rate(t['currentRate'])}, "
                           f"restores to {_rate(t['rateToRestore'])}"))
    remediating = conds.get("Remediating", {})
    if remediating.get("status"):
        lines.append(clean(f"Step         {remediating.get('message') or d['currentStep']}"))
    if d["nextStep"] is not None:
        n = d["nextStep"]
        lines.append(clean(f"Next step    {_step_text(n, now)}"))
        if n.get("why"):
            lines.append(clean(f"             because {n['why']}"))
    if d["generation"] is not None and d["observedGeneration"] not in (None, d["generation"]):
        lines.append(clean(f"Note         status is for spec generation "
                           f"{d['observedGeneration']}; the spec is at {d['generation']}"))

    lines += ["", "Escalation"]
    names = esc["contacts"]
    if esc["level"]:
        lines.append(clean(f"  Level {esc['level']}    since {when(esc['since'], now)}"))
        lines.append(clean(f"  Call now   {esc['contact']}"))
        if esc["message"]:
            why = esc["message"].removeprefix(f"Level {esc['level']} ({esc['contact']}): ")
            lines.append(clean(f"  Why        {why}" + (f" ({esc['reason']})" if esc["reason"]
                                                        else "")))
        if esc["level"] < 3:
            lines.append(clean(f"  Then       level {esc['level'] + 1}: "
                               f"{names[str(esc['level'] + 1)]}"))
    else:
        lines.append(clean(f"  Level 0    nobody to call (level 1 calls {names['1']})"))

    lines += ["", "Replicas"]
    rows = []
    for r in d["replicas"]:
        deadline = r["deadline"]
        nxt = _step_text(r["nextStep"], now)
        if deadline:
            nxt = (nxt if nxt != "-" else "") + f" by {when(deadline, now)}"
        rows.append([clean(r["id"], 16), _lag(r["lagSeconds"]), clean(r["state"] or UNKNOWN, 13),
                     clean(r["step"] or "-", 12) if r["step"] != "None" else "-",
                     _attempts(r),
                     clean(r["lastAction"] or "-", 13), nxt.strip()])
    lines += _table(["REPLICA", "LAG", "STATE", "STEP", "ATT", "LAST ACTION", "NEXT / DEADLINE"],
                    rows)

    lines += ["", "Do now"]
    if not d["manualActions"]:
        lines.append("  Nothing by hand" + (": the operator is on it"
                                            if d["phase"] in ("Remediating", "Degraded") else ""))
    for a in d["manualActions"]:  # wrapped, not cut: this is what to do
        lines += textwrap.wrap(clean(a["what"], 400), WIDTH, initial_indent="  ",
                               subsequent_indent="  ")
        if a["command"]:  # never cut: a human copies it
            lines.append(clean(f"    {a['command']}", limit=len(a["command"]) + 4))

    history = d["history"]
    shown = history[-HISTORY_LINES:]
    lines += ["", f"History (last {len(shown)} of {len(history)})" if history else "History: none"]
    for h in shown:
        stamp = when(h["time"], now).split(" ")[0]
        outcome = f" ({h['outcome']})" if h["outcome"] not in (None, "Note") else ""
        lines.append(clean(f"  {stamp}  {h['replica'] or '-'}  "
                           f"{h['reason'] or h['kind'] or '-'}{outcome}"))
        lines.append(clean(f"    {h['message'] or ''}"))
    return "\n".join(lines) + "\n"


def render_fleet(objs: Sequence[Mapping[str, Any]], now: float) -> str:
    """One line per cluster (`status -A`, or `status` without a name)."""
    if not objs:
        return "No StemeDBClusters found.\n"
    rows = []
    for obj in objs:
        f = fleet_row(obj, now)
        lag = _lag(f["maxLagSeconds"])
        if f["lagUnknownSince"]:
            lag = f"{UNKNOWN} {_span(max(int(now - (parse_time(f['lagUnknownSince']) or now)), 0))}"
        rows.append([
            clean(f["namespace"], 63), clean(f["name"], 253), f["phase"]
            + (" (paused)" if f["paused"] else ""), lag,
            "-" if f["laggingReplicas"] is None else f"{f['laggingReplicas']}/{f['replicas']}",
            str(f["level"]), clean(f["contact"] or "-", 22), str(f["manualActions"]),
        ])
    return "\n".join(_table(["NAMESPACE", "NAME", "PHASE", "MAX LAG", "LAGGING", "LEVEL",
                             "CALL", "TODO"], rows, indent="", width=400)) + "\n"
