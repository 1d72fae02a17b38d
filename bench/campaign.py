"""The randomized incident campaign as a benchmark: N seeded incidents, each run with
the operator and without it (doing nothing) on one fake clock in this process's
workers; prints the outcome table per fault kind and every invariant violation,
known (an issue-14 defect not fixed yet) or new. docs/incident-campaign.md.

    .venv/bin/python bench/campaign.py [--incidents 10000] [--start 0] [--workers 2]
    .venv/bin/python bench/campaign.py --seed N [--shrink]     # one incident, exactly
    .venv/bin/python bench/campaign.py --incident '{"seed": ...}'   # a shrunk one

Progress goes to stderr every 500 incidents; SIGINT or SIGTERM (to this process) stops
the run and prints the table of the incidents done so far, marked as partial.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.campaign.incidents import Incident, generate  # noqa: E402
from tests.campaign.outcomes import exercise_counts, table  # noqa: E402
from tests.campaign.runner import KNOWN, iter_seeds, quiet, violations  # noqa: E402
from tests.campaign.shrink import failing_like, shrink  # noqa: E402


def one(incident: Incident, do_shrink: bool) -> int:
    quiet()
    found = violations(incident)
    print(f"incident: {incident.to_json()}")
    print(f"faults: {', '.join(incident.fault_kinds) or '-'}")
    for v in found:
        known = next((k for k in KNOWN if k.matches(v)), None)
        print(f"  {v}" + (f"   [known: {known.name}, {known.issue}]" if known else "   [NEW]"))
    if not found:
        print("no invariant violated")
        return 0
    if do_shrink:
        first = found[0]
        started = time.perf_counter()
        small = shrink(incident, failing_like(first.invariant), first)
        print(f"shrunk in {time.perf_counter() - started:.0f} s to "
              f"{len(small.events)} events, {len(small.spec)} spec overrides, "
              f"{small.replicas} replicas, horizon {small.horizon:g} s:")
        for v in violations(small):
            print(f"  {v}")
        print(f".venv/bin/python bench/campaign.py --incident '{small.to_json()}'")
    return 1


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--incidents", type=int, default=10_000)
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--workers", type=int, default=0, help="processes (default: up to 4)")
    ap.add_argument("--seed", type=int, help="run one incident and print its violations")
    ap.add_argument("--incident", help="run one incident given as JSON")
    ap.add_argument("--shrink", action="store_true", help="with --seed/--incident: shrink")
    args = ap.parse_args()
    if args.seed is not None:
        return one(generate(args.seed), args.shrink)
    if args.incident:
        return one(Incident.from_json(args.incident), args.shrink)
    for sig in (signal.SIGINT, signal.SIGTERM):  # also in the background, where SIGINT is
        signal.signal(sig, _stop)               # ignored unless a handler is set
    started = time.perf_counter()
    outcomes = []
    running = iter_seeds(range(args.start, args.start + args.incidents), args.workers or None)
    try:
        for o in running:
            outcomes.append(o)
            if len(outcomes) % 500 == 0:
                print(f"{len(outcomes)} incidents, {time.perf_counter() - started:.0f} s",
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        running.close()
    elapsed = time.perf_counter() - started
    partial = "" if len(outcomes) == args.incidents else (
        f" (PARTIAL: interrupted, {args.incidents} asked)")
    print(f"{len(outcomes)} incidents (seeds {args.start}..{args.start + len(outcomes) - 1}) "
          f"in {elapsed:.0f} s{partial}\n")
    print(table(outcomes))
    print(exercise_counts(outcomes) + "\n")
    by_known: Counter[str] = Counter()
    new: list[tuple[int, str]] = []
    for o in outcomes:
        names = set()
        for v in o.violations:
            k = next((k for k in KNOWN if k.matches(v)), None)
            if k is None:
                new.append((o.seed, str(v)))
            else:
                names.add(k.name)
        by_known.update(names)
    print("| known defect | issue 14 | incidents | regression seed |\n|---|---|---|---|")
    for k in KNOWN:
        print(f"| {k.name} | {k.issue} | {by_known[k.name]} | {k.seed} |")
    print(f"\nnew violations: {len(new)} in {len({s for s, _ in new})} incidents")
    for seed, v in new[:20]:
        print(f"  seed {seed}: {v}\n    .venv/bin/python bench/campaign.py --seed {seed} --shrink")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "campaign.json").write_text(json.dumps({
        "incidents": len(outcomes), "seconds": round(elapsed, 1),
        "known": dict(by_known), "new": new[:200],
        "exercised": {name: sum(name in o.exercised for o in outcomes)
                      for name in ("tripped_breaker_reset", "fair_share")},
    }, indent=2))
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
