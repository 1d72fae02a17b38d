"""`kubectl stemedb ...` (the `kubectl-stemedb` console script): argument parsing,
the API calls, and printing. What is shown and written is decided in `view`,
`render` and `approval`."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
from collections.abc import Sequence

from controller.adapters import kubeconfig
from controller.adapters.kube import KubeClient, KubeError
from controller.domain.observation import APPROVE_REBUILD_ANNOTATION
from controller.kubectl_plugin import api, approval, render, view

EXAMPLES = """\
examples:
  kubectl stemedb status demo -n stemedb          one screen: lag, step, who to call, what to do
  kubectl stemedb status demo -o json             the same as a stable JSON document
  kubectl stemedb status -A                       every cluster, one line each
  kubectl stemedb approve-rebuild demo node2      approve the rebuild the operator waits for
  kubectl stemedb pause demo                      the operator stops acting (still reports)
  kubectl stemedb resume demo
"""
APPROVE_RETRIES = 3  # a 409 (someone else edited the object) is read again and retried


class Failed(Exception):
    """Stop with this message on stderr and exit status 1."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a flag given before the subcommand is not reset by the subcommand's parser.
    common.add_argument("--kubeconfig", metavar="FILE", default=argparse.SUPPRESS,
                        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    common.add_argument("--context", metavar="NAME", default=argparse.SUPPRESS,
                        help="kubeconfig context (default: its current-context)")
    common.add_argument("-n", "--namespace", metavar="NS", default=argparse.SUPPRESS,
                        help="namespace (default: the context's, else 'default')")
    parser = argparse.ArgumentParser(
        prog="kubectl stemedb", parents=[common], epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="On-call view of StemeDBClusters and the operator's manual steps.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = sub.add_parser("status", parents=[common],
                            help="one screen for a cluster, or one line per cluster")
    status.add_argument("cluster", nargs="?", metavar="CLUSTER")
    status.add_argument("-A", "--all-namespaces", action="store_true",
                        help="every namespace's clusters, one line each")
    status.add_argument("-o", "--output", choices=("text", "json"), default="text")
    approve = sub.add_parser(
        "approve-rebuild", parents=[common],
        help="approve the rebuild request the operator waits for on a replica")
    approve.add_argument("cluster", metavar="CLUSTER")
    approve.add_argument("replica", metavar="REPLICA")
    for verb, meaning in (("pause", "the operator stops acting on the cluster (it still "
                                    "detects, escalates and reports)"),
                          ("resume", "the operator acts on the cluster again")):
        sub.add_parser(verb, parents=[common], help=meaning).add_argument(
            "cluster", metavar="CLUSTER")
    return parser


def _again(name: str, namespace: str) -> str:
    return shlex.join(["kubectl", "stemedb", "status", name, "-n", namespace])


async def _status(kube: KubeClient, args: argparse.Namespace, namespace: str) -> str:
    now = time.time()
    if args.cluster and args.all_namespaces:
        raise Failed("give a CLUSTER or -A, not both")
    if args.cluster:
        obj = await kube.get_cluster(namespace, args.cluster)
        if args.output == "json":
            return json.dumps(view.status_document(obj, now), indent=2) + "\n"
        return render.render_status(obj, now)
    objs = await kube.list_clusters(None if args.all_namespaces else namespace)
    objs.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"].get("name", "")))
    if args.output == "json":
        return json.dumps({"apiVersion": view.DOCUMENT_VERSION, "kind": "StemeDBClusterList",
                           "items": [view.fleet_row(o, now) for o in objs]}, indent=2) + "\n"
    return render.render_fleet(objs, now)


async def _approve(kube: KubeClient, args: argparse.Namespace, namespace: str) -> str:
    for _ in range(APPROVE_RETRIES):
        obj = await kube.get_cluster(namespace, args.cluster)
        try:
            found = approval.approve(obj, args.replica)
        except approval.Refused as err:
            raise Failed(f"refused: {err}") from None
        if found.already:
            return (f"{found.request} is already approved; the operator marks "
                    f"{args.replica} for rebuild at its next poll if its safety limits "
                    f"allow ({_again(args.cluster, namespace)})\n")
        try:
            await kube.patch_cluster(namespace, args.cluster,
                                     approval.approval_patch(obj, found))
        except KubeError as err:
            if err.status == 409:
                continue
            raise
        return (f"approved rebuild request {found.request} on {namespace}/{args.cluster} "
                f"(annotation {APPROVE_REBUILD_ANNOTATION}={found.value}).\n"
                f"The operator marks {args.replica} for rebuild at its next poll if "
                f"maxConcurrentRebuilds and minInSyncReplicas allow; watch it with:\n"
                f"  {_again(args.cluster, namespace)}\n")
    raise Failed(f"{namespace}/{args.cluster} changed {APPROVE_RETRIES} times while "
                 f"approving; try again")


async def _pause(kube: KubeClient, args: argparse.Namespace, namespace: str) -> str:
    paused = args.command == "pause"
    obj = await kube.get_cluster(namespace, args.cluster)
    now = view.status_document(obj, time.time())["paused"]
    where = f"{namespace}/{args.cluster}"
    if now == paused:
        return f"{where}: remediation is already {'paused' if paused else 'not paused'}\n"
    await kube.patch_cluster(namespace, args.cluster, approval.pause_patch(paused))
    if paused:
        return (f"{where}: remediation paused (spec.remediation.paused=true). The operator "
                f"keeps detecting, escalating and reporting, and takes no action; a throttle "
                f"in place stays. Undo with:\n"
                f"  {shlex.join(['kubectl', 'stemedb', 'resume', args.cluster, '-n', namespace])}"
                "\n")
    return f"{where}: remediation resumed (spec.remediation.paused=false)\n"


COMMANDS = {"status": _status, "approve-rebuild": _approve, "pause": _pause, "resume": _pause}


async def _run(args: argparse.Namespace) -> str:
    login = await asyncio.to_thread(kubeconfig.load, getattr(args, "kubeconfig", None),
                                    getattr(args, "context", None))
    namespace = getattr(args, "namespace", None) or login.default_namespace or "default"
    kube = KubeClient(max_connections=2)
    kube.use(api.endpoint(login))
    try:
        return await COMMANDS[args.command](kube, args, namespace)
    except KubeError as err:
        if err.status == 404 and getattr(args, "cluster", None):
            raise Failed(f"StemeDBCluster {args.cluster!r} not found in namespace "
                         f"{namespace!r}") from None
        if err.status == 403:
            raise Failed(f"{err} (forbidden: the kubeconfig's user lacks the right)") from None
        raise Failed(str(err)) from None
    finally:
        await kube.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        out = asyncio.run(_run(args))
    except kubeconfig.KubeconfigError as err:
        print(f"kubectl stemedb: {err}", file=sys.stderr)
        return 2
    except Failed as err:
        print(f"kubectl stemedb: {err}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0
