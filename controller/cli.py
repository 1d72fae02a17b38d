"""`stemedb-operator`: the command a user (or the chart's Deployment) runs."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import socket
import sys
import uuid
from collections.abc import Sequence

from controller import logs
from controller.adapters import kubeconfig
from controller.adapters.alertmanager import check_url
from controller.domain.destinations import (
    DEFAULT_DENY,
    LOOPBACK,
    DestinationPolicy,
    parse_networks,
)
from controller.domain.sharding import LEASE_GC_SECONDS
from controller.domain.validation import object_name_problem
from controller.notifications import RESEND_SECONDS

SECRET_LABEL = "stemedb.io/credentials=true"
LEASE_NAME = "stemedb-operator-leader"
SHARD_RING = "stemedb-operator"
LOGIN_HELP = """\
login:
  In a Pod, the ServiceAccount (unless --kubeconfig or --context is given).
  Elsewhere, the kubeconfig as kubectl reads it: --kubeconfig FILE, else the files
  in $KUBECONFIG, else ~/.kube/config; the context given by --context, else the
  current-context. Its user may have a token, tokenFile, basic auth, a client
  certificate, or an `exec` credential plugin (as EKS, GKE and AKS kubeconfigs do:
  the plugin must be on PATH). An `auth-provider` user needs the extra
  'stemedb-operator[kubeconfig-plugins]' (the kubernetes package).

  The login is tried once before the operator starts. A configuration error exits
  at once with status 2 and one line on stderr: no kubeconfig, a file that does not
  exist or is not YAML, no current-context, a context, cluster or user that is not
  defined, a plugin that is not installed, fails or prints no credential, an
  auth-provider user without the extra. The API server is not contacted then: an
  unreachable one is retried by Kopf for about a minute (its back-off), then the
  operator exits with status 1 (in a Pod, the kubelet restarts it). A login that
  fails after start-up (a plugin refreshing an expired token) is logged and retried.
"""


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
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator until interrupted",
                         description="Run the operator until SIGINT or SIGTERM.",
                         epilog=LOGIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], metavar="NS",
        help="watch this namespace (repeat for several)",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true",
        help="watch StemeDBCluster resources in every namespace (needs a ClusterRole)",
    )
    run.add_argument(
        "--kubeconfig", metavar="FILE",
        help="log in with this kubeconfig (default: the files in $KUBECONFIG, else "
             "~/.kube/config; in a Pod: the ServiceAccount)",
    )
    run.add_argument(
        "--context", metavar="NAME",
        help="use this context of the kubeconfig (default: its current-context)",
    )
    run.add_argument("--metrics-port", type=int, default=9090, metavar="PORT",
                     help="serve the operator's Prometheus metrics on this port (0: off; "
                          "default: %(default)s)")
    run.add_argument("--health-port", type=int, default=8080, metavar="PORT",
                     help="serve the liveness probe at /healthz on this port (0: off; "
                          "default: %(default)s)")
    run.add_argument("--log-format", choices=("json", "console"), default="json",
                     help="one JSON object per line, or for people (default: %(default)s)")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                     default="info", help="(default: %(default)s)")
    run.add_argument(
        "--max-actions-per-hour", type=int, default=100, metavar="N",
        help="operator-wide budget of admin actions across all clusters per hour "
             "(default: %(default)s)",
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
    election = run.add_argument_group("leader election (several replicas, one acting)")
    election.add_argument(
        "--leader-election", action=argparse.BooleanOptionalAction, default=False,
        help="act only while holding a coordination.k8s.io Lease; the other replicas "
             "watch and wait, and one takes over within about 15 s if the leader dies, "
             "within about 1 s if it stops (default: off; the chart turns it on)",
    )
    election.add_argument(
        "--leader-election-namespace", metavar="NS",
        help="the Lease's namespace, the shard Leases' with --sharding (default: "
             "$POD_NAMESPACE, else the single --namespace)",
    )
    election.add_argument(
        "--leader-election-id", default=LEASE_NAME, metavar="NAME",
        help="the Lease's name: replicas with the same one elect one leader "
             "(default: %(default)s)",
    )
    sharding = run.add_argument_group("sharding (several replicas, each acting on a part)")
    sharding.add_argument(
        "--sharding", action="store_true",
        help="each replica holds its own Lease (<ring>-shard-<identity>) and acts on the "
             "clusters the live Leases' hash ring gives it, once every other replica has "
             "acknowledged it on its own Lease (shown in status.shard); a dead replica's "
             "clusters move to the others within about 17 s (default: off; not with "
             "--leader-election)",
    )
    sharding.add_argument(
        "--shard-ring", default=SHARD_RING, metavar="NAME",
        help="replicas with the same ring name (in the same namespace) share the "
             "clusters (default: %(default)s)",
    )
    sharding.add_argument(
        "--shard-lease-gc-seconds", type=float,
        default=LEASE_GC_SECONDS, metavar="S",
        help="delete a shard Lease released or expired and unchanged this long: its "
             "replica is gone for good (every rollout names new Pods) (default: "
             "%(default)s)",
    )
    run.add_argument(
        "--alertmanager-url", action="append", default=[], metavar="URL",
        help="send escalation alerts to this Alertmanager's v2 API (repeatable: every "
             "instance gets every alert; docs/notifications.md)",
    )
    run.add_argument(
        "--alertmanager-credentials", metavar="DIR",
        help="a mounted Secret for the Alertmanagers: a `token` file (bearer) or "
             "`username` and `password` files (basic auth), read before each request",
    )
    run.add_argument(
        "--notification-resend-seconds", type=float, default=RESEND_SECONDS, metavar="S",
        help="re-send a firing alert this often; its endsAt is 4 times this ahead "
             "(default: %(default)s)",
    )
    run.add_argument("--standalone", action="store_true", default=True,
                     help=argparse.SUPPRESS)
    return parser


def identity() -> str:
    """This replica's name in the Lease: the Pod's name (downward API, $POD_NAME), else
    host_uuid, so two processes on one machine never share it (as controller-runtime)."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4()}"


def shard_identity() -> str:
    """This replica's name in the shard ring and in `status.shard`: the Pod's name,
    else the host's name and a random suffix (part of a Lease name, so lowercase)."""
    pod = os.environ.get("POD_NAME")
    if pod:
        return pod
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:40]
    return f"{host or 'operator'}-{uuid.uuid4().hex[:8]}"


def lease_namespace(args: argparse.Namespace) -> str | None:
    """Where the Lease lives: the flag, the Pod's namespace, else the one watched."""
    if args.leader_election_namespace:
        return str(args.leader_election_namespace)
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    return str(args.namespace[0]) if len(args.namespace) == 1 else None


def version() -> str:
    """The installed distribution's version (a checkout that is not installed: unknown)."""
    try:
        return importlib.metadata.version("stemedb-operator")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def check_login(kubeconfig_file: str | None, context: str | None) -> str | None:
    """Try the kubeconfig's login once (running its plugin, not contacting the API
    server): the one-line error a user must fix, else None. Skipped in a Pod unless
    a kubeconfig is asked for: the ServiceAccount is used there."""
    if kubeconfig_file is None and context is None and kubeconfig.in_cluster():
        return None
    try:
        kubeconfig.load(kubeconfig_file, context)
    except kubeconfig.KubeconfigError as err:
        return " ".join(str(err).split())
    return None


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
        if args.sharding and args.leader_election:
            print("stemedb-operator run: --sharding and --leader-election are exclusive: "
                  "a shard acts on its part, a leader on everything", file=sys.stderr)
            return 2
        if not 0 < args.shard_lease_gc_seconds < float("inf"):
            print(f"stemedb-operator run: --shard-lease-gc-seconds: must be a positive "
                  f"number of seconds, not {args.shard_lease_gc_seconds}", file=sys.stderr)
            return 2
        shard_ns = lease_namespace(args) if args.sharding else None
        if args.sharding and shard_ns is None:
            print("stemedb-operator run: --sharding: give --leader-election-namespace "
                  "(or set $POD_NAMESPACE)", file=sys.stderr)
            return 2
        shard_id = shard_identity() if args.sharding else ""
        for flag, name in (("$POD_NAME", shard_id),
                           ("--shard-ring", f"{args.shard_ring}-shard-{shard_id}"),
                           ("--leader-election-namespace", shard_ns)):
            bad = object_name_problem(name) if args.sharding and name else None
            if bad is None and args.sharding and name and len(name) > 63 and \
                    flag == "$POD_NAME":
                bad = f"is {len(name)} characters long; a shard's name has at most 63"
            if bad is not None:
                print(f"stemedb-operator run: --sharding: {flag}: {bad}", file=sys.stderr)
                return 2
        election_ns = lease_namespace(args) if args.leader_election else None
        if args.leader_election and election_ns is None:
            print("stemedb-operator run: --leader-election: give --leader-election-namespace "
                  "(or set $POD_NAMESPACE)", file=sys.stderr)
            return 2
        for flag, name in (("--leader-election-id", args.leader_election_id),
                           ("--leader-election-namespace", election_ns)):
            bad = object_name_problem(name) if args.leader_election and name else None
            if bad is not None:
                print(f"stemedb-operator run: {flag}: {bad}", file=sys.stderr)
                return 2
        try:
            alertmanagers = tuple(check_url(u) for u in args.alertmanager_url)
        except ValueError as err:
            print(f"stemedb-operator run: --alertmanager-url: {err}", file=sys.stderr)
            return 2
        if not 1 <= args.notification_resend_seconds <= 3600:
            print("stemedb-operator run: --notification-resend-seconds must be 1-3600",
                  file=sys.stderr)
            return 2
        kubeconfig_file = (os.path.abspath(os.path.expanduser(args.kubeconfig))
                           if args.kubeconfig else None)
        problem = check_login(kubeconfig_file, args.context)
        if problem is not None:
            print(f"stemedb-operator run: login: {problem}", file=sys.stderr)
            return 2
        logs.configure(args.log_format, args.log_level)
        import controller.handlers as handlers  # late: it loads Kopf and the clients

        election = None
        if election_ns is not None:
            election = handlers.LeaderElection(namespace=election_ns,
                                               lease=args.leader_election_id,
                                               identity=identity())

        sharding = None
        if shard_ns is not None:
            sharding = handlers.Sharding(namespace=shard_ns, ring=args.shard_ring,
                                         identity=shard_id,
                                         lease_gc_seconds=args.shard_lease_gc_seconds)

        return handlers.run(
            namespaces=tuple(args.namespace),
            all_namespaces=args.all_namespaces,
            metrics_port=args.metrics_port,
            health_port=args.health_port,
            max_actions_per_hour=args.max_actions_per_hour,
            destinations=destinations,
            secret_label=label,
            kubeconfig_file=kubeconfig_file,
            context=args.context,
            leader_election=election,
            sharding=sharding,
            alertmanager_urls=alertmanagers,
            alertmanager_credentials=args.alertmanager_credentials,
            resend_seconds=args.notification_resend_seconds,
        )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
