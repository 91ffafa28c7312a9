"""Security audit on the kind host: the attacker is a vcluster's cluster-admin (root inside it
by design). Each test tries one escape and asserts it is refused or harmless; the README's
"tried / blocked" table lists them.

    pytest -m e2e tests/e2e/test_security_e2e.py -v
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster

from .manifests import pod as _pod

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def vc(kind_host: KindHost, vcluster_images: dict[str, str], app_image: str) -> Iterator[VCluster]:
    kind_host.load_images([app_image])
    with VCluster(kind_host.info(), "attacker", images=vcluster_images, timeout=180) as vc:
        yield vc


@pytest.fixture(scope="module")
def victim(kind_host: KindHost, vcluster_images: dict[str, str]) -> Iterator[VCluster]:
    with VCluster(kind_host.info(), "victim", images=vcluster_images, timeout=180) as vc:
        yield vc


@pytest.fixture(scope="module")
def host(kind_host: KindHost) -> client.ApiClient:
    return config.new_client_from_config(str(kind_host.kubeconfig_path))


def _host_pod_names(vc: VCluster, host: client.ApiClient) -> list[str]:
    pods = client.CoreV1Api(host).list_namespaced_pod(vc.host_namespace).items
    return [p.metadata.name for p in pods]


ESCAPES: dict[str, dict[str, Any]] = {
    "privileged": {"container": {"securityContext": {"privileged": True}}},
    "hostPath": {
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "container": {"volumeMounts": [{"name": "root", "mountPath": "/host"}]},
    },
    "hostNetwork": {"hostNetwork": True},
    "hostPID": {"hostPID": True},
    "hostIPC": {"hostIPC": True},
    "hostPort": {"container": {"ports": [{"containerPort": 80, "hostPort": 8080}]}},
    "capability SYS_ADMIN": {
        "container": {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}
    },
    # (the API accepts Unmasked only in a user namespace)
    "procMount Unmasked": {
        "hostUsers": False,
        "container": {"securityContext": {"procMount": "Unmasked"}},
    },
    "seccomp Unconfined": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
    "AppArmor Unconfined": {
        "container": {"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}
    },
    "unsafe sysctl": {
        "securityContext": {"sysctls": [{"name": "kernel.core_pattern", "value": "|/tmp/x"}]}
    },
}


def _refused(core: client.CoreV1Api, name: str) -> str:
    """The reason the vcluster shows for a pod the host never ran ('' while it has none)."""
    pod = core.read_namespaced_pod(name, "default")
    for c in pod.status.conditions or []:
        if (
            c.type == "PodScheduled"
            and c.status == "False"
            and c.reason in ("SyncDenied", "SyncFailed")
        ):
            return f"{c.reason}: {c.message}"
    return ""


def test_pod_escapes_are_refused(vc: VCluster, host: client.ApiClient, app_image: str) -> None:
    core = client.CoreV1Api(vc.api_client)
    names = {}
    for i, (what, spec) in enumerate(ESCAPES.items()):
        name = f"escape-{i}"
        names[name] = what
        core.create_namespaced_pod("default", _pod(name, app_image, **spec))
    core.create_namespaced_pod("default", _pod("harmless", app_image))  # the control
    deadline = time.monotonic() + 60
    reasons: dict[str, str] = {}
    while time.monotonic() < deadline and len(reasons) < len(names):
        for name in names:
            reasons[name] = reasons.get(name) or _refused(core, name)
        reasons = {k: v for k, v in reasons.items() if v}
        time.sleep(0.5)
    missing = [names[n] for n in names if n not in reasons]
    assert not missing, f"not refused: {missing}"
    vc.wait_for("Pod", "harmless", "Ready", timeout=120)  # a baseline pod runs
    on_host = _host_pod_names(vc, host)
    assert not [n for n in names if vc.host_name(n, "default") in on_host]
    for name, why in sorted(reasons.items()):
        print(f"{names[name]}: {why}")
        assert names[name].split()[-1].lower() in why.lower() or "rejected" in why


def test_runtime_class_the_host_does_not_offer(vc: VCluster, app_image: str) -> None:
    client.NodeV1Api(vc.api_client).create_runtime_class(
        {"metadata": {"name": "escape"}, "handler": "not-offered"}
    )
    core = client.CoreV1Api(vc.api_client)
    core.create_namespaced_pod("default", _pod("rc", app_image, runtimeClassName="escape"))
    deadline = time.monotonic() + 60
    while not (why := _refused(core, "rc")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert why.startswith("SyncFailed"), why
    assert "not-offered" in why


def test_host_pods_carry_no_host_token(
    vc: VCluster, host: client.ApiClient, app_image: str
) -> None:
    core = client.CoreV1Api(vc.api_client)
    core.create_namespaced_pod("default", _pod("tokens", app_image))
    vc.wait_for("Pod", "tokens", "Ready", timeout=120)
    hpod = client.CoreV1Api(host).read_namespaced_pod(
        vc.host_name("tokens", "default"), vc.host_namespace
    )
    assert hpod.spec.automount_service_account_token is False
    projected = [
        s
        for v in hpod.spec.volumes or []
        if v.projected
        for s in v.projected.sources or []
        if s.service_account_token
    ]
    assert projected == []  # its tokens are the vcluster's, from a Secret the syncer writes


def _token_client(host: client.ApiClient, namespace: str, sa: str) -> client.ApiClient:
    """A host client authenticated as ServiceAccount ``namespace/sa`` (a TokenRequest)."""
    token = (
        client.CoreV1Api(host)
        .create_namespaced_service_account_token(
            sa, namespace, {"spec": {"expirationSeconds": 600}}
        )
        .status.token
    )
    cfg = client.Configuration()
    cfg.host = host.configuration.host
    cfg.ssl_ca_cert = host.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def _syncer_sa(vc: VCluster, host: client.ApiClient) -> str:
    sas = (
        client.CoreV1Api(host)
        .list_namespaced_service_account(
            vc.host_namespace, label_selector="app.kubernetes.io/component=syncer"
        )
        .items
    )
    assert len(sas) == 1
    return str(sas[0].metadata.name)


def _status(call: Any) -> int:
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def test_the_syncers_host_credentials_stay_in_its_namespace(
    vc: VCluster, victim: VCluster, host: client.ApiClient
) -> None:
    syncer = _token_client(host, vc.host_namespace, _syncer_sa(vc, host))
    core = client.CoreV1Api(syncer)
    assert _status(lambda: core.list_namespaced_secret(vc.host_namespace)) == 200  # control
    assert _status(lambda: core.list_namespaced_pod("kube-system")) == 403
    assert _status(lambda: core.list_secret_for_all_namespaces()) == 403
    assert _status(lambda: core.list_node()) == 403
    assert _status(lambda: core.list_namespaced_secret(victim.host_namespace)) == 403
    assert _status(lambda: core.read_namespaced_secret("vc-victim", victim.host_namespace)) == 403
    rbac = client.RbacAuthorizationV1Api(syncer)
    role = {
        "metadata": {"name": "mine"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    }
    assert _status(lambda: rbac.create_cluster_role(role)) == 403  # no escalation


def test_a_tenant_pods_token_means_nothing_to_the_host(
    vc: VCluster, host: client.ApiClient, app_image: str
) -> None:
    core = client.CoreV1Api(vc.api_client)
    if "tokens" not in [p.metadata.name for p in core.list_namespaced_pod("default").items]:
        core.create_namespaced_pod("default", _pod("tokens", app_image))
        vc.wait_for("Pod", "tokens", "Ready", timeout=120)
    token = core.create_namespaced_service_account_token(
        "default", "default", {"spec": {"expirationSeconds": 600}}
    ).status.token
    cfg = client.Configuration()
    cfg.host = host.configuration.host
    cfg.ssl_ca_cert = host.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    assert _status(lambda: client.CoreV1Api(client.ApiClient(cfg)).list_namespace()) == 401


def test_a_namespaced_user_stays_in_its_namespace(vc: VCluster) -> None:
    core = client.CoreV1Api(vc.api_client)
    for ns in ("team-1", "team-2"):
        core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_service_account("team-1", {"metadata": {"name": "dev"}})
    rbac = client.RbacAuthorizationV1Api(vc.api_client)
    rule = {"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "list"]}
    rbac.create_namespaced_role("team-1", {"metadata": {"name": "dev"}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        "team-1",
        {"metadata": {"name": "dev"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dev"},
         "subjects": [{"kind": "ServiceAccount", "name": "dev", "namespace": "team-1"}]},
    )  # fmt: skip
    token = core.create_namespaced_service_account_token(
        "dev", "team-1", {"spec": {"expirationSeconds": 600}}
    ).status.token
    cfg = client.Configuration()
    cfg.host = vc.api_client.configuration.host
    cfg.ssl_ca_cert = vc.api_client.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    dev = client.CoreV1Api(client.ApiClient(cfg))
    assert _status(lambda: dev.list_namespaced_pod("team-1")) == 200
    assert _status(lambda: dev.list_namespaced_secret("team-2")) == 403
    assert _status(lambda: dev.list_namespaced_secret("kube-system")) == 403
    assert _status(lambda: dev.list_node()) == 403
    # Through the syncer's objects: the kubelet API (logs/exec) is authorized first.
    assert _status(lambda: dev.read_namespaced_pod_log("tokens", "default")) == 403
