"""`stemedb-operator`: the command a user (or the chart's Deployment) runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from controller import logs
from controller.domain.destinations import (
    DEFAULT_DENY,
    LOOPBACK,
    DestinationPolicy,
    parse_networks,
)

SECRET_LABEL = "stemedb.io/credentials=true"


def secret_label(text: str) -> tuple[str, str] | None:
    """`key=value` as a pair, None for empty; ValueError for anything else."""
    if not text:
        return None
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"{text!r} is not KEY=VALUE")
    return key, value


def destination_policy(args: argparse.Namespace) -> DestinationPolicy:
    """The policy the flags ask for; ValueError names a bad CIDR."""
    deny = [*DEFAULT_DENY, *(LOOPBACK if args.deny_loopback else ()), *args.deny_destination]
    return DestinationPolicy(deny=parse_networks(deny),
                             allow=parse_networks(args.allow_destination))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stemedb-operator",
        description="Automates StemeDB's High Replication Lag runbook on Kubernetes.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator until interrupted")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], metavar="NS",
        help="watch this namespace (repeat for several)",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true",
        help="watch StemeDBCluster resources in every namespace (needs a ClusterRole)",
    )
    run.add_argument("--metrics-port", type=int, default=9090,
                     help="serve the operator's Prometheus metrics on this port (0: off)")
    run.add_argument("--health-port", type=int, default=8080,
                     help="serve the liveness probe at /healthz on this port (0: off)")
    run.add_argument("--log-format", choices=("json", "console"), default="json")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                     default="info")
    run.add_argument(
        "--max-actions-per-hour", type=int, default=100, metavar="N",
        help="operator-wide budget of admin actions across all clusters per hour",
    )
    run.add_argument(
        "--deny-destination", action="append", default=[], metavar="CIDR",
        help="never send a request to addresses in CIDR, whatever a StemeDBCluster's URLs "
             "say (repeatable; added to the built-in list: "
             f"{', '.join(DEFAULT_DENY)} and the API server itself)",
    )
    run.add_argument(
        "--allow-destination", action="append", default=[], metavar="CIDR",
        help="if given, send requests only to addresses in these CIDRs (repeatable)",
    )
    run.add_argument(
        "--deny-loopback", action="store_true",
        help=f"also deny loopback ({', '.join(LOOPBACK)}); the chart sets it: in a Pod "
             "loopback is the operator itself",
    )
    run.add_argument(
        "--secret-label", default=SECRET_LABEL, metavar="KEY=VALUE",
        help="use a Secret named in spec.auth only if it carries this label (default: "
             "%(default)s; empty: any Secret the operator may read)",
    )
    run.add_argument("--standalone", action="store_true", default=True,
                     help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        if not args.namespace and not args.all_namespaces:
            print("stemedb-operator run: give --namespace NS (repeatable) or --all-namespaces",
                  file=sys.stderr)
            return 2
        if args.max_actions_per_hour < 0:
            print("stemedb-operator run: --max-actions-per-hour must be >= 0", file=sys.stderr)
            return 2
        try:
            destinations = destination_policy(args)
        except ValueError as err:
            print(f"stemedb-operator run: --deny-destination/--allow-destination: {err}",
                  file=sys.stderr)
            return 2
        try:
            label = secret_label(args.secret_label)
        except ValueError as err:
            print(f"stemedb-operator run: --secret-label: {err}", file=sys.stderr)
            return 2
        logs.configure(args.log_format, args.log_level)
        import controller.handlers as handlers  # late: it loads Kopf and the clients

        return handlers.run(
            namespaces=tuple(args.namespace),
            all_namespaces=args.all_namespaces,
            metrics_port=args.metrics_port,
            health_port=args.health_port,
            max_actions_per_hour=args.max_actions_per_hour,
            destinations=destinations,
            secret_label=label,
        )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
