"""Logging in as a cloud kubeconfig does: the user runs an `exec` credential plugin
(EKS, GKE, AKS), and the operator is started as README.md's local run shows it,
with nothing installed beyond the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from harness import Env, Operator, condition, fast_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PLUGIN = "stemedb-e2e-get-token"  # on PATH, as `aws`, `gke-gcloud-auth-plugin`, `kubelogin`


def install_plugin(bin_dir: Path, calls: Path) -> None:
    """A credential plugin printing the ServiceAccount token its environment names,
    and recording each call (its KUBERNETES_EXEC_INFO)."""
    bin_dir.mkdir()
    script = bin_dir / PLUGIN
    script.write_text(f"""#!{sys.executable}
import datetime, json, os
with open({str(calls)!r}, "a") as f:
    f.write(os.environ["KUBERNETES_EXEC_INFO"] + "\\n")
expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {{"token": os.environ["CLOUD_TOKEN"],
                             "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}}}}))
""")
    script.chmod(0o755)


def cloud_kubeconfig(env: Env, path: Path) -> Path:
    """The fixture's kubeconfig (the chart's ServiceAccount token) turned into an
    exec-plugin one; its current context is another cloud's, whose plugin is not
    installed here, so only `--context` makes it work."""
    config = yaml.safe_load(env.kubeconfig.read_text())
    token = config["users"][0]["user"]["token"]
    cluster = config["clusters"][0]["name"]
    config["users"] = [
        {"name": "cloud", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": PLUGIN,
            "args": ["token", "--cluster", "e2e"], "interactiveMode": "Never",
            "env": [{"name": "CLOUD_TOKEN", "value": token}]}}},
        {"name": "other-cloud", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "other-cloud-auth-plugin-not-installed",
            "installHint": "install other-cloud's CLI"}}},
    ]
    config["contexts"] = [{"name": "cloud", "context": {"cluster": cluster, "user": "cloud"}},
                          {"name": "other", "context": {"cluster": cluster,
                                                        "user": "other-cloud"}}]
    config["current-context"] = "other"
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_exec_plugin_kubeconfig_logs_in_and_reconciles(env: Env, tmp_path: Path) -> None:
    calls = tmp_path / "plugin-calls"
    install_plugin(tmp_path / "bin", calls)
    kubeconfig = cloud_kubeconfig(env, tmp_path / "cloud.kubeconfig")
    home = tmp_path / "home"
    home.mkdir()
    # Nothing else to log in with: no $KUBECONFIG, no ~/.kube/config.
    environ = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {
        "HOME": str(home), "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    command = [str(Path(sys.executable).parent / "stemedb-operator"), "run",
               "--namespace", env.namespace, "--kubeconfig", str(kubeconfig),
               "--metrics-port", "0", "--health-port", "0", "--log-format", "json"]

    # The current context's plugin is not installed: a configuration error, at once.
    refused = subprocess.run(command, env=environ, capture_output=True, text=True,
                             timeout=60, check=False)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr == (
        "stemedb-operator run: login: exec plugin 'other-cloud-auth-plugin-not-installed' "
        "is not installed (not found on PATH): install other-cloud's CLI\n")
    assert not calls.exists()

    env.apply(fast_spec(env.sim, env.cluster))
    log = tmp_path / "operator.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([*command, "--context", "cloud"], env=environ, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    env.operators.append(Operator(proc=proc, log=log))
    env.wait_status("the operator's first look (Ready=True)",
                    lambda o: (condition(o, "Ready") or {}).get("status") == "True")
    assert proc.poll() is None, log.read_text()[-3000:]
    # Once before Kopf starts (the start-up check) and at Kopf's login.
    exec_infos = [yaml.safe_load(line) for line in calls.read_text().splitlines()]
    assert len(exec_infos) >= 2
    assert exec_infos[0] == {"apiVersion": "client.authentication.k8s.io/v1",
                             "kind": "ExecCredential", "spec": {"interactive": False}}


def test_a_refused_token_ends_the_run_with_one_line_not_a_login_loop(
    env: Env, tmp_path: Path
) -> None:
    """A token the API server rejects (revoked, expired, mistyped) was re-sent in a
    loop of hundreds of logins a second; now Kopf sees the same login refused twice,
    and the command exits 1 saying so."""
    config = yaml.safe_load(env.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "revoked-token-0123456789"
    kubeconfig = tmp_path / "revoked.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [str(Path(sys.executable).parent / "stemedb-operator"), "run", "--namespace",
         env.namespace, "--metrics-port", "0", "--health-port", "0",
         "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith(
        "stemedb-operator run: login: the API server refused the credentials")
    logins = (run.stdout + run.stderr).count("Activity 'login' succeeded")
    assert logins <= 3, f"{logins} logins"
    assert "revoked-token" not in run.stdout + run.stderr
