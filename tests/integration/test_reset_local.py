"""VCluster.reset() against real API servers (local host): everything made since the snapshot
goes, in the vcluster and on the host, and what the test changed comes back — including the
cases that would stop an ordinary clean-up (a webhook failing closed, finalizers, a CRD and its
instances, a Service IP that must be free again)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException
from syncer_helpers import running, wait_for

from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.reset import ResetError
from pytest_vcluster.vcluster import VCluster


@pytest.fixture(scope="module")
def rvc(host: LocalHost) -> Iterator[VCluster]:
    with VCluster(host.info(), "reset", timeout=120) as vc:
        vc.snapshot()
        yield vc


@pytest.fixture
def clean(rvc: VCluster) -> VCluster:
    rvc.reset()
    return rvc


def _core(vc: VCluster) -> client.CoreV1Api:
    return client.CoreV1Api(vc.api_client)


def _host_objects(vc: VCluster) -> dict[str, list[str]]:
    """Names of what the syncer made in the host namespace, by kind."""
    core = client.CoreV1Api(vc.host_api_client())
    ns, sel = vc.host_namespace, "vc.pytest-vcluster.io/managed-by=reset"
    return {
        "pods": [p.metadata.name for p in core.list_namespaced_pod(ns, label_selector=sel).items],
        "services": [
            s.metadata.name for s in core.list_namespaced_service(ns, label_selector=sel).items
        ],
        "configmaps": [
            c.metadata.name for c in core.list_namespaced_config_map(ns, label_selector=sel).items
        ],
        "secrets": [
            s.metadata.name for s in core.list_namespaced_secret(ns, label_selector=sel).items
        ],
    }


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                        },
                    }
                },
            }
        ],
    },
}

# Fails closed for every write of every resource, and nothing answers it: an ordinary clean-up
# (API deletes) is refused from here on.
BLOCKING_WEBHOOK = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingWebhookConfiguration",
    "metadata": {"name": "blocks-everything"},
    "webhooks": [
        {
            "name": "blocks.example.com",
            "clientConfig": {"url": "https://127.0.0.1:1/nowhere"},
            "rules": [
                {
                    "apiGroups": ["*"],
                    "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE", "DELETE"],
                    "resources": ["*/*"],
                }
            ],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 1,
        }
    ],
}


def _webhook_in_force(core: client.CoreV1Api) -> bool:
    for i in range(100):
        try:
            core.create_namespaced_config_map("default", {"metadata": {"name": f"probe-{i}"}})
        except ApiException as exc:
            return "blocks.example.com" in str(exc.body)
        time.sleep(0.1)
    return False


def _make_fifty(vc: VCluster) -> None:
    """50 objects of 10 kinds, some with host copies."""
    docs: list[dict[str, Any]] = []
    for i in range(3):
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"t{i}"}})
    for i in range(3):
        ns = f"t{i}"
        docs += [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"cm{j}", "namespace": ns},
                "data": {"k": "v"},
            }
            for j in range(4)
        ]
        docs += [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"s{j}", "namespace": ns},
                "stringData": {"k": "v"},
            }
            for j in range(3)
        ]
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
            }
        )
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "robot", "namespace": ns},
            }
        )
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "reader", "namespace": ns},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
            }
        )
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader", "namespace": ns},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": ns}],
            }
        )
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "c", "image": "busybox:1"}],
                    # refers to a ConfigMap and a Secret: both get host copies
                    "volumes": [
                        {"name": "cm", "configMap": {"name": "cm0"}},
                        {"name": "s", "secret": {"secretName": "s0"}},
                    ],
                },
            }
        )
    docs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "widget-reader"},
            "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}],
        }
    )
    docs.append(
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "urgent"},
            "value": 1000,
        }
    )
    vc.apply(docs)
    assert len(docs) >= 40


def test_reset_removes_what_the_test_made_on_both_sides(clean: VCluster) -> None:
    vc = clean
    core = _core(vc)
    _make_fifty(vc)
    vc.apply(CRD)
    vc.wait_for(
        "CustomResourceDefinition",
        "widgets.example.com",
        "Established",
        api_version="apiextensions.k8s.io/v1",
    )
    for i in range(3):
        vc.apply(
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": f"w{i}", "namespace": "t0", "finalizers": ["example.com/x"]},
                "spec": {"size": i},
            }
        )
    # A ConfigMap held by a finalizer; a namespace whose content holds it.
    core.patch_namespaced_config_map("cm1", "t1", {"metadata": {"finalizers": ["example.com/x"]}})
    for i in range(3):
        wait_for(lambda i=i: running(core, f"t{i}", "app=web", 1), what=f"pod in t{i}")
    made = _host_objects(vc)
    assert len(made["pods"]) == 3
    assert len(made["services"]) >= 3
    vc.apply(BLOCKING_WEBHOOK)
    assert _webhook_in_force(core)  # ordinary clean-up (API writes) is refused from here on

    result = vc.reset()

    assert result["deleted"] >= 50
    names = {n.metadata.name for n in core.list_namespace().items}
    assert not names & {"t0", "t1", "t2"}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    admission = client.AdmissionregistrationV1Api(vc.api_client)
    left = admission.list_validating_webhook_configuration().items
    # Only the reset's own request object, which configures no webhook.
    assert [(w.metadata.name, w.webhooks) for w in left] == [("pytest-vcluster-reset", None)]
    ext = client.ApiextensionsV1Api(vc.api_client)
    assert "widgets.example.com" not in [
        c.metadata.name for c in ext.list_custom_resource_definition().items
    ]
    rbac = client.RbacAuthorizationV1Api(vc.api_client)
    assert "widget-reader" not in [r.metadata.name for r in rbac.list_cluster_role().items]
    sched = client.SchedulingV1Api(vc.api_client)
    assert "urgent" not in [p.metadata.name for p in sched.list_priority_class().items]
    # The host copies are gone when reset() returns, not eventually.
    assert _host_objects(vc) == {"pods": [], "services": [], "configmaps": [], "secrets": []}
    # The defaults are there, and writes work again (the webhook is gone).
    assert core.read_namespaced_service_account("default", "default")
    assert core.read_namespaced_config_map("kube-root-ca.crt", "default")
    core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})


def test_nothing_of_the_previous_test_is_seen(clean: VCluster) -> None:
    """Runs after the one above (same module): a clean start, even of names it used."""
    vc = clean
    core = _core(vc)
    assert "after" not in [
        c.metadata.name for c in core.list_namespaced_config_map("default").items
    ]
    # The CRD comes back with another schema; its old instances do not.
    crd = {
        **CRD,
        "spec": {
            **CRD["spec"],
            "versions": [
                {
                    **CRD["spec"]["versions"][0],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    vc.apply(crd)
    vc.wait_for(
        "CustomResourceDefinition",
        "widgets.example.com",
        "Established",
        api_version="apiextensions.k8s.io/v1",
    )
    widgets = dynamic.DynamicClient(vc.api_client).resources.get(
        api_version="example.com/v1", kind="Widget"
    )
    core.create_namespace({"metadata": {"name": "t0"}})
    assert widgets.get(namespace="t0").items == []


def test_changes_to_what_was_there_are_undone(clean: VCluster) -> None:
    vc = clean
    core = _core(vc)
    sa = core.read_namespaced_service_account("default", "default")
    root_ca = core.read_namespaced_config_map("kube-root-ca.crt", "default")
    core.patch_namespaced_service_account(
        "default", "default", {"metadata": {"labels": {"touched": "yes"}}}
    )
    core.delete_namespaced_config_map("kube-root-ca.crt", "default")
    core.patch_namespace("default", {"metadata": {"labels": {"touched": "yes"}}})

    vc.reset()

    after = core.read_namespaced_service_account("default", "default")
    assert after.metadata.uid == sa.metadata.uid
    assert "touched" not in (after.metadata.labels or {})
    assert "touched" not in (core.read_namespace("default").metadata.labels or {})
    assert core.read_namespaced_config_map("kube-root-ca.crt", "default").data == root_ca.data


def test_a_service_ip_is_free_again(clean: VCluster) -> None:
    vc = clean
    core = _core(vc)
    body = {"metadata": {"name": "fixed"}, "spec": {"ports": [{"port": 80}]}}
    ip = core.create_namespaced_service("default", body).spec.cluster_ip
    vc.reset()
    body["spec"]["clusterIP"] = ip  # type: ignore[index]
    again = core.create_namespaced_service("default", body)
    assert again.spec.cluster_ip == ip


def test_reset_of_a_clean_vcluster_changes_nothing(clean: VCluster) -> None:
    result = clean.reset()
    assert (result["deleted"], result["restored"], result["host_deleted"]) == (0, 0, 0)


def test_a_restarted_syncer_still_resets(clean: VCluster) -> None:
    """The snapshot is kept in etcd with the vcluster's keys: a syncer killed and started
    again (SIGKILL) returns the vcluster to it."""
    vc = clean
    core = _core(vc)
    core.create_namespace({"metadata": {"name": "before-the-crash"}})
    vc._impl.restart_syncer()
    result = vc.reset()
    assert result["deleted"] >= 1
    assert "before-the-crash" not in [n.metadata.name for n in core.list_namespace().items]


def test_reset_without_a_snapshot_is_one_clear_error(host: LocalHost) -> None:
    with (
        VCluster(host.info(), "nosnap", timeout=120) as vc,
        pytest.raises(ResetError, match="no snapshot to return to"),
    ):
        vc.reset()
