"""The vcluster's ``kubernetes`` Service objects (syncer.resources.apiservice), and its flag."""

from __future__ import annotations

import pytest

from syncer.resources.apiservice import api_endpoint_slice, api_endpoints, api_service
from syncer.settings import parse

BASE = ["--name=vc", "--host-namespace=ns", "--virtual-kubeconfig=k"]


def test_service_keeps_the_api_servers_ports_and_labels_with_the_new_ip() -> None:
    current = {
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "x": "y"}},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443,
                                                     "targetPort": 6443}]},
    }  # fmt: skip
    svc = api_service("10.96.44.5", current, 9999)
    assert svc["spec"]["clusterIP"] == "10.96.44.5"
    assert svc["spec"]["clusterIPs"] == ["10.96.44.5"]
    assert svc["spec"]["ports"] == current["spec"]["ports"]
    assert svc["metadata"]["labels"] == {"component": "apiserver", "x": "y"}
    assert "selector" not in svc["spec"]  # endpoints are written, not selected


def test_service_made_from_nothing_is_the_api_servers_own() -> None:
    svc = api_service("10.96.44.5", None, 6443)
    assert svc["spec"]["ports"] == [
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}
    ]
    assert svc["metadata"]["labels"] == {"provider": "kubernetes", "component": "apiserver"}


@pytest.mark.parametrize(("ip", "family"), [("10.244.0.7", "IPv4"), ("fd00::7", "IPv6")])
def test_endpoints_and_slice_agree(ip: str, family: str) -> None:
    ep, eps = api_endpoints(ip, 6443), api_endpoint_slice(ip, 6443)
    assert ep["subsets"] == [
        {"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}
    ]
    assert eps["endpoints"] == [{"addresses": [ip], "conditions": {"ready": True}}]
    assert eps["ports"] == ep["subsets"][0]["ports"]
    assert eps["addressType"] == family
    # Not mirrored by the controller-manager (the slice is written here).
    assert ep["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}


def test_api_endpoint_flag() -> None:
    s = parse([*BASE, "--owner-service=vc", "--api-endpoint=10.244.0.7:6443"])
    assert s.api_endpoint == ("10.244.0.7", 6443)
    assert parse(BASE).api_endpoint is None


@pytest.mark.parametrize(
    "args", [["--owner-service=vc", "--api-endpoint=10.0.0.1"], ["--api-endpoint=10.0.0.1:6443"]]
)
def test_bad_api_endpoint_is_one_clear_error(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse([*BASE, *args])
    assert "--api-endpoint=10.0.0.1" in capsys.readouterr().err
