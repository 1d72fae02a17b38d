"""The operator as the image runs it: the OCI image `make image` writes
(dist/stemedb-operator-<version>.oci.tar), unpacked by umoci and run by crun, under
the chart's ServiceAccount token mounted where a Pod has it, with the chart's
securityContext (UID/GID 65532, read-only root filesystem, no capabilities, no new
privileges), through one breaker-trip remediation.

Isolation: mount, PID, IPC and UTS namespaces; no network namespace (the host's,
like `hostNetwork: true`) so that the operator reaches the loopback API server and
simulator; no cgroup limits (`--cgroup-manager=disabled`; on a hybrid cgroup host
crun runs in a mount namespace without the v2 hierarchy, see below); no seccomp
filter.

Skipped, with the reason, unless the image archive exists (`make image`), crun and
umoci are installed (`make image-e2e` installs them with apt-get) and the tests run
as root (crun creates the namespaces). `make image-e2e` builds the image and runs
this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from harness import REPO, Env, Operator, condition, fast_spec

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
ARCHIVE = REPO / "dist" / f"stemedb-operator-{VERSION}.oci.tar"
SA_DIR = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run -> /run in the image


def _why_not() -> str | None:
    if not ARCHIVE.is_file():
        return f"no image archive {ARCHIVE.relative_to(REPO)} (`make image` or `make image-e2e`)"
    for tool in ("crun", "umoci"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (`make image-e2e` installs it with apt-get)"
    if os.geteuid() != 0:
        return "crun needs root here to create the container's namespaces"
    return None


# `make image-e2e` sets STEMEDB_IMAGE_E2E=1: there a missing prerequisite fails.
REQUIRED = os.environ.get("STEMEDB_IMAGE_E2E") == "1"
pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(not REQUIRED and _why_not() is not None,
                                 reason=str(_why_not()))]


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's root filesystem, unpacked by umoci (an independent reader of the
    layout) from the oci-archive."""
    assert _why_not() is None, _why_not()
    work = tmp_path_factory.mktemp("image")
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(work / "layout", filter="data")
    subprocess.run(["umoci", "unpack", "--image", f"{work / 'layout'}:{VERSION}",
                    str(work / "bundle")], check=True, capture_output=True)
    return work / "bundle" / "rootfs"


def image_config() -> dict:
    with tarfile.open(ARCHIVE) as tar:
        def blob(digest: str) -> dict:
            f = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            assert f is not None
            return dict(json.load(f))

        index_f = tar.extractfile("index.json")
        assert index_f is not None
        manifest = blob(json.load(index_f)["manifests"][0]["digest"])
        return blob(manifest["config"]["digest"])["config"]


def runtime_spec(rootfs: Path, args: list[str], env: list[str], secrets: Path) -> dict:
    """An OCI runtime config shaped like the chart's Pod (templates/deployment.yaml)."""
    uid, gid = (int(x) for x in image_config()["User"].split(":"))
    return {
        "ociVersion": "1.0.2",
        "root": {"path": str(rootfs), "readonly": True},
        "process": {
            "terminal": False, "cwd": "/", "args": args, "env": env,
            "user": {"uid": uid, "gid": gid},
            "noNewPrivileges": True,
            "capabilities": {k: [] for k in ("bounding", "effective", "inheritable",
                                             "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}],
        },
        "hostname": "stemedb-operator",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]},
            {"destination": SA_DIR, "type": "bind", "source": str(secrets),
             "options": ["rbind", "ro"]},
        ],
        "linux": {
            # No "network": the host's network namespace.
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }


class ImageOperator(Operator):
    """`stemedb-operator run` in the image, under crun; stop() signals crun, which
    passes the signal on to the operator."""

    state: Path
    name: str

    def stop(self, *args: object, **kwargs: object) -> None:
        super().stop(*args, **kwargs)  # type: ignore[arg-type]
        subprocess.run(["crun", "--root", str(self.state), "delete", "--force", self.name],
                       capture_output=True, check=False)

    def status(self) -> dict[str, str]:
        state = json.loads(subprocess.run(
            ["crun", "--root", str(self.state), "state", self.name],
            capture_output=True, text=True, check=True).stdout)
        lines = Path(f"/proc/{state['pid']}/status").read_text().splitlines()
        return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


UNIFIED = Path("/sys/fs/cgroup/unified")


def _hybrid_cgroups() -> bool:
    try:
        return bool((UNIFIED / "cgroup.controllers").read_text().split())
    except OSError:
        return False


def start_image_operator(env: Env, rootfs: Path, token: str) -> ImageOperator:
    secrets = env.workdir / "serviceaccount"
    secrets.mkdir()
    (secrets / "token").write_text(token)
    (secrets / "namespace").write_text("stemedb-e2e-system")
    shutil.copy(env.cp.ca_file, secrets / "ca.crt")
    api = urlsplit(env.cp.server)
    config = image_config()
    args = [*config["Entrypoint"], "run", "--namespace", env.namespace,
            "--metrics-port", "0", "--health-port", "0", "--log-format", "json"]
    pod_env = [*config["Env"], f"KUBERNETES_SERVICE_HOST={api.hostname}",
               f"KUBERNETES_SERVICE_PORT={api.port}", "POD_NAME=operator-image-e2e",
               "POD_NAMESPACE=stemedb-e2e-system", "TMPDIR=/tmp"]
    bundle = env.workdir / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(runtime_spec(rootfs, args, pod_env, secrets)))
    state = env.workdir / "crun-state"
    name = f"stemedb-operator-{os.getpid()}-{env.namespace}"[:60]
    log = env.workdir / "operator.log"
    out = open(log, "ab")  # noqa: SIM115 - closed with the process
    crun = ["crun", "--root", str(state), "--cgroup-manager=disabled", "run",
            "--bundle", str(bundle), name]
    if _hybrid_cgroups():
        # crun 1.8 refuses a hybrid cgroup layout whose v2 hierarchy has controllers
        # ("cgroups in hybrid mode not supported, drop all controllers from
        # cgroupv2"), even with cgroups disabled: hide that hierarchy from it in a
        # mount namespace of its own (the host keeps its mounts).
        crun = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                f'umount {UNIFIED} && exec "$@"', "sh", *crun]
    proc = subprocess.Popen(
        crun,
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    op = ImageOperator(proc=proc, log=log)
    op.state, op.name = state, name
    env.operators.append(op)
    return op


@pytest.fixture
def sa_token(env: Env, operator_identity: str) -> str:
    """A token of the chart's ServiceAccount, as the kubelet projects it into the Pod."""
    return env.cp.kubectl("-n", "stemedb-e2e-system", "create", "token", operator_identity,
                          "--duration=1h").stdout.strip()


def test_the_image_resets_a_tripped_breaker(env: Env, rootfs: Path, sa_token: str) -> None:
    env.apply(fast_spec(env.sim, env.cluster))
    op = start_image_operator(env, rootfs, sa_token)

    def ready(o: dict) -> bool:
        c = condition(o, "Ready")
        return c is not None and c["status"] == "True"

    env.wait_status("a healthy first look from the image", ready)
    status = op.status()
    assert status["Uid"].split()[:2] == ["65532", "65532"], status["Uid"]
    assert status["Gid"].split()[:2] == ["65532", "65532"], status["Gid"]
    assert status["CapEff"] == "0000000000000000" and status["NoNewPrivs"] == "1"
    assert status["Name"] == "stemedb-operato"  # the console script, via python3.11

    env.fault("breaker_trip", replica="node2")
    env.wait_status("the breaker reset", lambda o: any(
        c["endpoint"].endswith("/circuit-breaker/reset") for c in env.writes()))
    env.wait_status("recovery", lambda o: ready(o) and o["status"]["laggingReplicas"] == 0,
                    timeout=90)
    resets = [c for c in env.writes() if c["endpoint"].endswith("/circuit-breaker/reset")]
    assert [c["body"] for c in resets] == [{"agent_id": "agent-node2"}]
    assert env.sim.state(env.cluster)["replicas"]["node2"]["breaker"]["tripped"] is False

    op.stop()
    assert op.proc.returncode == 0, op.logs()[-3000:]
