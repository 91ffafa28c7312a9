"""Services, Endpoints, Ingresses, ConfigMaps, Secrets, PVCs (syncer.translate.services)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from syncer.constants import OBJECT_KIND
from syncer.translate.names import host_name, translate_labels
from syncer.translate.services import (
    translate_configmap,
    translate_endpoints,
    translate_ingress,
    translate_pvc,
    translate_secret,
    translate_service,
    without_refused,
)

Matcher = Callable[..., bool]
NS = "team-a"


def obj(kind: str, name: str = "web", **body: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": NS, "uid": "u1", "resourceVersion": "7"}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, **body}


def ref(name: str) -> str:
    return host_name(name, NS, "vc")


def service(**spec: Any) -> dict[str, Any]:
    ports = [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]
    return obj("Service", spec={"ports": ports, **spec}, status={"loadBalancer": {}})


@pytest.mark.parametrize(
    ("pod_labels", "pod_namespace", "selected"),
    [
        ({"app": "web"}, NS, True),
        ({"app": "web", "extra": "1"}, NS, True),
        ({"app": "web"}, "team-b", False),
        ({"app": "db"}, NS, False),
    ],
)
def test_service_selector_selects_only_its_namespace(
    matches: Matcher, pod_labels: dict[str, str], pod_namespace: str, selected: bool
) -> None:
    host = translate_service(service(selector={"app": "web"}), "host-ns", "vc")
    host_labels = translate_labels(pod_labels, pod_namespace, "vc")
    assert matches({"matchLabels": host["spec"]["selector"]}, host_labels) is selected


@pytest.mark.parametrize("spec", [{}, {"selector": None}, {"selector": {}}])
def test_selector_less_service_stays_selector_less(spec: dict[str, Any]) -> None:
    assert "selector" not in translate_service(service(**spec), "host-ns", "vc")["spec"]


@pytest.mark.parametrize(
    ("spec", "host_spec"),
    [
        # The virtual ClusterIP is asked for on the host (same service CIDR on both sides).
        (
            {"clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"]},
            {"clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"]},
        ),
        (
            {"clusterIP": "None", "clusterIPs": ["None"]},
            {"clusterIP": "None", "clusterIPs": ["None"]},
        ),
        # The virtual node port is asked for too (same range); the health-check port is the
        # host's to allocate.
        (
            {"type": "LoadBalancer", "healthCheckNodePort": 31000},
            {"type": "LoadBalancer"},
        ),
        ({"type": "NodePort"}, {"type": "NodePort"}),
    ],
)
def test_service_ips(spec: dict[str, Any], host_spec: dict[str, Any]) -> None:
    virtual = service(**spec)
    virtual["spec"]["ports"][0]["nodePort"] = 30080
    before = copy.deepcopy(virtual)
    host = translate_service(virtual, "host-ns", "vc")
    assert virtual == before
    port = {"port": 80, "targetPort": 8080, "protocol": "TCP"}
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        port["nodePort"] = 30080
    assert host["spec"] == {"ports": [port], **host_spec}
    assert "status" not in host
    assert host["metadata"]["name"] == ref("web")
    assert host["metadata"]["namespace"] == "host-ns"
    assert host["metadata"]["annotations"][OBJECT_KIND] == "Service"


TAKEN = (
    'POST /api/v1/namespaces/h/services: 422 Service "web" is invalid: spec.clusterIPs: '
    'Invalid value: []string{"10.0.0.7"}: failed to allocate IP 10.0.0.7: provided IP is '
    "already allocated"
)


@pytest.mark.parametrize(
    ("spec", "message", "retried"),
    [
        ({"clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"]}, TAKEN, True),
        # Headless stays headless; nothing to drop without an IP.
        ({"clusterIP": "None", "clusterIPs": ["None"]}, TAKEN, False),
        ({}, TAKEN, False),
        # Refused for another reason: retrying without the IP would not help.
        (
            {"clusterIP": "10.0.0.7"},
            'Service "web" is invalid: spec.ports[0].port: Invalid value: 0',
            False,
        ),
    ],
)
def test_refused_cluster_ip_is_left_to_the_host(
    spec: dict[str, Any], message: str, retried: bool
) -> None:
    desired = translate_service(service(**spec), "host-ns", "vc")
    before = copy.deepcopy(desired)
    retry = without_refused(desired, message)
    assert desired == before
    if not retried:
        assert retry is None
        return
    assert retry is not None
    assert "clusterIP" not in retry["spec"]
    assert "clusterIPs" not in retry["spec"]
    assert {k: v for k, v in desired["spec"].items() if not k.startswith("clusterIP")} == retry[
        "spec"
    ]
    assert retry["metadata"] == desired["metadata"]


PORT_TAKEN = (
    'PUT /api/v1/namespaces/h/services/web: 422 Service "web" is invalid: '
    "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
)


def test_refused_node_port_is_left_to_the_host() -> None:
    desired = translate_service(
        service(type="NodePort", clusterIP="10.0.0.7", clusterIPs=["10.0.0.7"]), "host-ns", "vc"
    )
    desired["spec"]["ports"][0]["nodePort"] = 30080
    retry = without_refused(desired, PORT_TAKEN)
    assert retry is not None
    assert "nodePort" not in retry["spec"]["ports"][0]
    assert retry["spec"]["clusterIP"] == "10.0.0.7"  # not what was refused
    assert desired["spec"]["ports"][0]["nodePort"] == 30080
    # Nothing to drop: no retry.
    plain = translate_service(service(type="NodePort"), "host-ns", "vc")
    assert without_refused(plain, PORT_TAKEN) is None


def test_endpoints_follow_the_service_name_without_target_refs() -> None:
    target = {"kind": "Pod", "name": "p", "namespace": NS}
    subsets = [
        {
            "addresses": [{"ip": "10.1.0.5", "targetRef": target}],
            "notReadyAddresses": [{"ip": "10.1.0.6", "targetRef": target}],
            "ports": [{"port": 8080}],
        }
    ]
    virtual = obj("Endpoints", subsets=subsets)
    host = translate_endpoints(virtual, "host-ns", "vc")
    assert (
        host["metadata"]["name"]
        == translate_service(service(), "host-ns", "vc")["metadata"]["name"]
    )
    assert host["subsets"] == [
        {
            "addresses": [{"ip": "10.1.0.5"}],
            "notReadyAddresses": [{"ip": "10.1.0.6"}],
            "ports": [{"port": 8080}],
        }
    ]
    assert virtual["subsets"][0]["addresses"][0]["targetRef"] == target


def backend(name: str) -> dict[str, Any]:
    return {"service": {"name": name, "port": {"number": 80}}}


INGRESS_SPEC = {
    "ingressClassName": "nginx",
    "defaultBackend": backend("fallback"),
    "rules": [
        {
            "host": "a.example",
            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend("web")}]},
        },
        {"host": "b.example"},
    ],
    "tls": [{"hosts": ["a.example"], "secretName": "a-tls"}, {"hosts": ["b.example"]}],
}


@pytest.mark.parametrize(
    ("path", "virtual_name"),
    [
        (("defaultBackend", "service", "name"), "fallback"),
        (("rules", 0, "http", "paths", 0, "backend", "service", "name"), "web"),
        (("tls", 0, "secretName"), "a-tls"),
    ],
)
def test_ingress_references(path: tuple[str | int, ...], virtual_name: str) -> None:
    virtual = obj("Ingress", apiVersion="networking.k8s.io/v1", spec=copy.deepcopy(INGRESS_SPEC))
    host = translate_ingress(virtual, "host-ns", "vc")
    value: Any = host["spec"]
    for step in path:
        value = value[step]
    assert value == ref(virtual_name)
    assert host["spec"]["ingressClassName"] == "nginx"
    assert host["spec"]["tls"][1] == {"hosts": ["b.example"]}
    assert host["apiVersion"] == "networking.k8s.io/v1"


def test_ingress_resource_backend_is_untouched() -> None:
    resource = {"resource": {"apiGroup": "x.io", "kind": "Bucket", "name": "b"}}
    virtual = obj("Ingress", spec={"defaultBackend": resource})
    assert translate_ingress(virtual, "host-ns", "vc")["spec"]["defaultBackend"] == resource


@pytest.mark.parametrize(
    ("translate", "kind", "body", "expected"),
    [
        (
            translate_configmap,
            "ConfigMap",
            {"data": {"a": "1"}, "binaryData": {"b": "AA=="}, "immutable": True},
            {"data": {"a": "1"}, "binaryData": {"b": "AA=="}, "immutable": True},
        ),
        (translate_configmap, "ConfigMap", {}, {}),
        (
            translate_secret,
            "Secret",
            {"type": "kubernetes.io/tls", "data": {"tls.crt": "Qw=="}, "stringData": {"x": "y"}},
            {"type": "kubernetes.io/tls", "data": {"tls.crt": "Qw=="}, "stringData": {"x": "y"}},
        ),
        (
            translate_secret,
            "Secret",
            {"type": "kubernetes.io/service-account-token", "data": {"token": "dA=="}},
            {"type": "Opaque", "data": {"token": "dA=="}},
        ),
    ],
)
def test_configmap_and_secret_payload(
    translate: Callable[[dict[str, Any], str, str], dict[str, Any]],
    kind: str,
    body: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    virtual = obj(kind, "cfg", **copy.deepcopy(body))
    host = translate(virtual, "host-ns", "vc")
    assert {
        k: v for k, v in host.items() if k not in ("apiVersion", "kind", "metadata")
    } == expected
    assert host["kind"] == kind
    assert host["metadata"]["name"] == ref("cfg")
    assert "resourceVersion" not in host["metadata"]
    if "data" in host:
        host["data"]["new"] = "x"
        assert "new" not in virtual["data"]  # deep copy


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-1", "storageClassName": "std"},
            {"accessModes": ["ReadWriteOnce"], "storageClassName": "std"},
        ),
        (
            {"dataSource": {"kind": "PersistentVolumeClaim", "name": "src"}},
            {"dataSource": {"kind": "PersistentVolumeClaim", "name": ref("src")}},
        ),
        (
            {
                "dataSourceRef": {
                    "kind": "VolumeSnapshot",
                    "apiGroup": "snapshot.storage.k8s.io",
                    "name": "s",
                }
            },
            {
                "dataSourceRef": {
                    "kind": "VolumeSnapshot",
                    "apiGroup": "snapshot.storage.k8s.io",
                    "name": ref("s"),
                }
            },
        ),
        (
            {"dataSourceRef": {"kind": "VolumeSnapshot", "name": "s", "namespace": "other"}},
            {"dataSourceRef": {"kind": "VolumeSnapshot", "name": "s", "namespace": "other"}},
        ),
    ],
)
def test_pvc(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    virtual = obj("PersistentVolumeClaim", "data", spec=spec, status={"phase": "Bound"})
    host = translate_pvc(virtual, "host-ns", "vc")
    assert host["spec"] == expected
    assert "status" not in host
    assert host["metadata"]["name"] == ref("data")


def test_virtual_service_shows_the_hosts_node_ports() -> None:
    from syncer.resources.services import host_node_ports

    virtual = {"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}]}}
    host = {
        "spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31234}]}
    }
    assert host_node_ports(virtual, host) == [{"port": 80, "nodePort": 31234}]
    assert host_node_ports(host, host) is None
    cluster_ip = {"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
    assert host_node_ports(cluster_ip, host) is None


def test_a_cluster_ip_service_keeps_no_host_node_ports() -> None:
    from syncer.resources.generic import keep_service_ips

    desired = {"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
    keep_service_ips(
        desired, {"spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80, "nodePort": 31000}]}}
    )
    assert desired["spec"]["ports"] == [{"port": 80}]
    assert desired["spec"]["clusterIP"] == "10.96.0.9"


def _slice(managed_by: str | None = "e2e-test", service: str | None = "custom") -> dict[str, Any]:
    labels = {"app": "x"}
    if service is not None:
        labels["kubernetes.io/service-name"] = service
    if managed_by is not None:
        labels["endpointslice.kubernetes.io/managed-by"] = managed_by
    out = obj("EndpointSlice", name="custom-abc")
    out["metadata"]["labels"] = labels
    out |= {
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": ["10.244.0.9"],
                "conditions": {"ready": True},
                "nodeName": "kind-worker",
                "targetRef": {"kind": "Pod", "name": "p", "namespace": NS},
            }
        ],
        "ports": [{"name": "port80", "port": 8090, "protocol": "TCP"}],
    }
    return out


@pytest.mark.parametrize(
    ("managed_by", "service", "served"),
    [
        ("e2e-test", "custom", "custom"),
        (None, "custom", "custom"),
        ("endpointslice-controller.k8s.io", "custom", ""),  # the host's controller does it
        ("endpointslicemirroring-controller.k8s.io", "custom", ""),  # mirrored Endpoints
        ("e2e-test", None, ""),
    ],
)
def test_only_a_users_slices_of_a_service_are_copied(
    managed_by: str | None, service: str | None, served: str
) -> None:
    from syncer.translate.services import user_slice_service

    assert user_slice_service(_slice(managed_by, service)) == served


def test_endpoint_slice_names_the_host_service_and_no_virtual_objects() -> None:
    from syncer.translate.services import translate_endpoint_slice

    virtual = _slice()
    before = copy.deepcopy(virtual)
    host = translate_endpoint_slice(virtual, "host-ns", "vc")
    assert virtual == before
    labels = host["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == ref("custom")
    assert labels["endpointslice.kubernetes.io/managed-by"] == "syncer.vc.pytest-vcluster.io"
    assert host["metadata"]["name"] == ref("custom-abc")
    assert host["endpoints"] == [
        {"addresses": ["10.244.0.9"], "conditions": {"ready": True}, "nodeName": "kind-worker"}
    ]
    assert host["ports"] == virtual["ports"]
    assert host["addressType"] == "IPv4"


def test_external_ips_stay_virtual_unless_allowed() -> None:
    """CVE-2020-8554: on the host they would take traffic for any IP, cluster-wide."""
    virtual = service(externalIPs=["203.0.113.7"], externalTrafficPolicy="Cluster")
    host = translate_service(virtual, "host-ns", "vc")["spec"]
    assert "externalIPs" not in host
    assert "externalTrafficPolicy" not in host  # the host refuses it without them
    allowed = translate_service(virtual, "host-ns", "vc", external_ips=True)
    assert allowed["spec"]["externalIPs"] == ["203.0.113.7"]
