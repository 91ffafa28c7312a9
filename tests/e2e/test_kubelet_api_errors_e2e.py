"""Errors through a vcluster's kubelet API on kind (as the host's, 403) and ``kubectl debug``."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster

from .kubelet_api import SHELL
from .kubelet_api import wait as _wait
from .manifests import pod as _pod

pytestmark = pytest.mark.e2e


def test_exec_errors_match_the_host(vc: VCluster, kind_host: KindHost, app_image: str) -> None:
    """A container that does not exist, a pod whose container never started, a log of a
    container that never ran: the vcluster answers what the kind cluster itself answers for
    the same pods (exit code and message)."""
    ns = f"kapi-ref-{uuid.uuid4().hex[:6]}"
    kind_host.kubectl_run("create", "namespace", ns)
    stuck = _pod("stuck", "pytest-vcluster/does-not-exist:1", "true")
    try:
        for obj in (stuck, _pod("shell", app_image, SHELL)):
            kind_host.kubectl_run("apply", "-n", ns, "-f", "-", input=json.dumps(obj))
        vc.apply(stuck)
        _wait(
            lambda: "ErrImageNeverPull" in vc.kubectl("get", "pod", "stuck", "-o", "json").stdout,
            60,
        )
        _wait(
            lambda: (
                "ErrImageNeverPull"
                in kind_host.kubectl_run("get", "pod", "-n", ns, "stuck", "-o", "json").stdout
            ),
            60,
        )
        kind_host.kubectl_run(
            "wait", "-n", ns, "--for=condition=Ready", "pod/shell", "--timeout=60s"
        )
        for args in (
            ("exec", "shell", "-c", "nope", "--", "true"),
            ("exec", "stuck", "--", "true"),
            ("logs", "stuck"),
            ("port-forward", "stuck", ":80"),
        ):
            got = vc.kubectl(*args, check=False, timeout=60)
            ref = kind_host.kubectl_run("-n", ns, *args, check=False)
            assert got.returncode == ref.returncode != 0, (got, ref)
            assert got.stderr.strip() == ref.stderr.strip(), (got.stderr, ref.stderr)
    finally:
        kind_host.kubectl_run("delete", "namespace", ns, "--wait=false", check=False)
        vc.kubectl("delete", "pod", "stuck", "--wait=false", check=False)


def test_kubectl_debug_runs_an_ephemeral_container(vc: VCluster, app_image: str) -> None:
    """``kubectl debug --profile=baseline``: the ephemeral container reaches the host pod,
    runs, and its log and status come back."""
    vc.kubectl(
        "debug", "shell", f"--image={app_image}", "--image-pull-policy=Never", "--profile=baseline",
        "--container=dbg", "--", "sh", "-c", "echo debug-ok; sleep 3600",
    )  # fmt: skip
    _wait(lambda: "debug-ok" in vc.kubectl("logs", "shell", "-c", "dbg", check=False).stdout, 90)
    pod = json.loads(vc.kubectl("get", "pod", "shell", "-o", "json").stdout)
    statuses = pod["status"].get("ephemeralContainerStatuses") or []
    assert [s["name"] for s in statuses] == ["dbg"]
    assert "running" in statuses[0]["state"]


def test_kubectl_debug_default_profile_is_refused_with_an_event(
    vc: VCluster, app_image: str
) -> None:
    """kubectl's default ``general`` profile adds SYS_PTRACE, which Pod Security baseline
    forbids: not synced, and the Event says why (``--profile=baseline`` works, above)."""
    vc.kubectl(
        "debug", "shell", f"--image={app_image}", "--image-pull-policy=Never",
        "--container=ptrace", "--", "sleep", "3600",
    )  # fmt: skip

    def refused() -> bool:
        events = vc.kubectl(
            "get", "events", "--field-selector=involvedObject.name=shell", "-o", "json"
        ).stdout
        return any(
            e.get("reason") == "SyncDenied" and "'ptrace': capability SYS_PTRACE" in e["message"]
            for e in json.loads(events)["items"]
        )

    _wait(refused, 60)
    pod = json.loads(vc.kubectl("get", "pod", "shell", "-o", "json").stdout)
    names = [s["name"] for s in pod["status"].get("ephemeralContainerStatuses") or []]
    assert "ptrace" not in names


# -- rights ---------------------------------------------------------------------------------------
def test_user_without_exec_rights_gets_403(vc: VCluster, core: client.CoreV1Api) -> None:
    rbac = client.RbacAuthorizationV1Api(vc.api_client)
    core.create_namespaced_service_account("default", {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        "default",
        {
            "metadata": {"name": "reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "reader", "default", {"spec": {"expirationSeconds": 600}}
    ).status.token
    # A kubeconfig of that user alone (with the admin's client certificate beside a token,
    # the API server would authenticate the certificate).
    cfg = client.Configuration()
    cfg.host = vc.api_client.configuration.host
    cfg.ssl_ca_cert = vc.api_client.configuration.ssl_ca_cert
    reader_kubeconfig = Path(vc.kubeconfig_path).with_name("reader.kubeconfig")
    reader_kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "vc", "cluster": {"server": cfg.host,
                              "certificate-authority": cfg.ssl_ca_cert}}],
                "users": [{"name": "reader", "user": {"token": token}}],
                "contexts": [{"name": "reader", "context": {"cluster": "vc", "user": "reader"}}],
                "current-context": "reader",
            }
        )
    )  # fmt: skip
    kubectl = [str(vc.tool("kubectl")), f"--kubeconfig={reader_kubeconfig}"]
    assert subprocess.run([*kubectl, "get", "pod", "shell"], capture_output=True).returncode == 0
    proc = subprocess.run(
        [*kubectl, "exec", "shell", "--", "true"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "Forbidden" in proc.stderr or "forbidden" in proc.stderr, proc.stderr
    assert 'cannot create resource "pods/exec"' in proc.stderr
    cfg.api_key = {"authorization": f"Bearer {token}"}
    reader = client.CoreV1Api(client.ApiClient(cfg))
    with pytest.raises(ApiException) as err:
        reader.read_namespaced_pod_log("shell", "default")
    assert err.value.status == 403
