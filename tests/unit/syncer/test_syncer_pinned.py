"""Virtual Services this pod serves through a host Service (syncer.resources.pinned): the
vcluster's kube-dns with CoreDNS in the vcluster's pod, and the flags that ask for it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from syncer.resources.pinned import dns_pin, pinned_endpoints, pinned_service, pinned_slice
from syncer.resources.services import ServiceIPs
from syncer.settings import parse

BASE = ["--name=vc", "--host-namespace=ns", "--virtual-kubeconfig=k"]


def test_dns_service_is_kube_dns_at_the_host_ip() -> None:
    pin = dns_pin("kube-system/kube-dns", 1053)
    svc = pinned_service(pin, "10.96.7.9")
    assert svc["metadata"] == {
        "name": "kube-dns",
        "namespace": "kube-system",
        "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
    }
    assert svc["spec"]["clusterIP"] == "10.96.7.9"
    assert svc["spec"]["clusterIPs"] == ["10.96.7.9"]
    assert "selector" not in svc["spec"]  # endpoints are written, not selected
    assert [
        (p["name"], p["port"], p["protocol"], p["targetPort"]) for p in svc["spec"]["ports"]
    ] == [
        ("dns", 53, "UDP", 1053),
        ("dns-tcp", 53, "TCP", 1053),
    ]


@pytest.mark.parametrize(("ip", "family"), [("10.244.0.7", "IPv4"), ("fd00::7", "IPv6")])
def test_dns_endpoints_name_the_pod_on_both_protocols(ip: str, family: str) -> None:
    pin = dns_pin("kube-system/kube-dns", 1053)
    ep, eps = pinned_endpoints(pin, ip, 1053), pinned_slice(pin, ip, 1053)
    ports = [
        {"name": "dns", "port": 1053, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 1053, "protocol": "TCP"},
    ]
    assert ep["subsets"] == [{"addresses": [{"ip": ip}], "ports": ports}]
    assert eps["ports"] == ports
    assert eps["endpoints"] == [{"addresses": [ip], "conditions": {"ready": True}}]
    assert eps["addressType"] == family
    assert eps["metadata"]["labels"] == {"kubernetes.io/service-name": "kube-dns"}
    # The controller-manager neither mirrors nor computes them.
    assert ep["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}


def _engine(pinned: set[tuple[str, str]], selectorless: bool = True) -> Any:
    svc = {"spec": {} if selectorless else {"selector": {"a": "b"}}}

    class Informer:
        def get(self, namespace: str, name: str) -> dict[str, Any]:
            return svc

    settings = SimpleNamespace(allow_external_name=False, allow_external_ips=False)
    return SimpleNamespace(
        pinned=pinned, settings=settings, recorder=None, virtual_informers={"services": Informer()}
    )


def _meta(namespace: str, name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": {}}


def test_pinned_services_are_never_synced_down() -> None:
    engine = _engine({("default", "kubernetes"), ("kube-system", "kube-dns")})
    ips = ServiceIPs(engine)
    assert not ips.wanted(_meta("kube-system", "kube-dns"))
    assert not ips.wanted(_meta("default", "kubernetes"))
    assert ips.wanted(_meta("default", "web"))
    # Nor their Endpoints and EndpointSlices, though their Services have no selector.
    assert not ServiceIPs.selectorless(engine, _meta("kube-system", "kube-dns"))
    assert ServiceIPs.selectorless(engine, _meta("default", "web"))
    dns_slice = {
        "metadata": {
            "namespace": "kube-system",
            "name": "kube-dns",
            "labels": {"kubernetes.io/service-name": "kube-dns"},
        }
    }
    assert not ServiceIPs.selectorless_slice(engine, dns_slice)
    # Without the pin (CoreDNS as a synced pod) kube-dns is an ordinary Service.
    plain = _engine({("default", "kubernetes")}, selectorless=False)
    assert ServiceIPs(plain).wanted(_meta("kube-system", "kube-dns"))


def test_dns_flags() -> None:
    s = parse([*BASE, "--dns-host-service=vc-dns", "--dns-endpoint=10.244.0.7:1053"])
    assert (s.dns_host_service, s.dns_endpoint) == ("vc-dns", ("10.244.0.7", 1053))
    assert s.dns_service == "kube-system/kube-dns"
    v6 = parse([*BASE, "--dns-host-service=vc-dns", "--dns-endpoint=[fd00::7]:1053"])
    assert v6.dns_endpoint == ("fd00::7", 1053)
    assert parse(BASE).dns_endpoint is None
    own = parse([*BASE, "--own-node=kind-control-plane", "--own-node-ip=172.18.0.2"])
    assert (own.own_node, own.own_node_ip) == ("kind-control-plane", "172.18.0.2")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--dns-endpoint=10.0.0.1:1053"], "--dns-endpoint='10.0.0.1:1053'"),
        (["--dns-host-service=vc-dns"], "--dns-host-service='vc-dns'"),
        (["--dns-host-service=vc-dns", "--dns-endpoint=10.0.0.1"], "--dns-endpoint='10.0.0.1'"),
        (["--dns-service=kube-dns"], "--dns-service=kube-dns"),
    ],
)
def test_bad_dns_flags_are_one_clear_error(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse([*BASE, *args])
    assert named in capsys.readouterr().err
