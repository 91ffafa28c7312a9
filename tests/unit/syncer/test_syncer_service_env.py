"""Service environment variables of synced pods (syncer.translate.service_env), as a kubelet
writes them (pkg/kubelet/envvars, and the conformance spec "Pods should contain environment
variables for services")."""

from __future__ import annotations

from typing import Any

from pod_helpers import CTX, container, pod

from syncer.translate.pods import PodContext, translate_pod
from syncer.translate.service_env import env_name, namespace_service_env, service_vars


def svc(name: str, ip: str | None, *ports: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": list(ports)}
    if ip is not None:
        spec["clusterIP"] = ip
    return {"metadata": {"name": name, "namespace": "team-a"}, "spec": spec}


def test_variable_names_follow_the_kubelet() -> None:
    assert env_name("fooservice") == "FOOSERVICE"
    assert env_name("my-svc-2") == "MY_SVC_2"


def test_one_service_gives_the_kubelets_variables_in_order() -> None:
    service = svc(
        "fooservice",
        "10.96.7.8",
        {"port": 8765, "protocol": "TCP", "name": "http"},
        {"port": 53, "protocol": "UDP", "name": "dns-udp"},
    )
    assert service_vars(service) == [
        {"name": "FOOSERVICE_SERVICE_HOST", "value": "10.96.7.8"},
        {"name": "FOOSERVICE_SERVICE_PORT", "value": "8765"},
        {"name": "FOOSERVICE_SERVICE_PORT_HTTP", "value": "8765"},
        {"name": "FOOSERVICE_SERVICE_PORT_DNS_UDP", "value": "53"},
        {"name": "FOOSERVICE_PORT", "value": "tcp://10.96.7.8:8765"},
        {"name": "FOOSERVICE_PORT_8765_TCP", "value": "tcp://10.96.7.8:8765"},
        {"name": "FOOSERVICE_PORT_8765_TCP_PROTO", "value": "tcp"},
        {"name": "FOOSERVICE_PORT_8765_TCP_PORT", "value": "8765"},
        {"name": "FOOSERVICE_PORT_8765_TCP_ADDR", "value": "10.96.7.8"},
        {"name": "FOOSERVICE_PORT_53_UDP", "value": "udp://10.96.7.8:53"},
        {"name": "FOOSERVICE_PORT_53_UDP_PROTO", "value": "udp"},
        {"name": "FOOSERVICE_PORT_53_UDP_PORT", "value": "53"},
        {"name": "FOOSERVICE_PORT_53_UDP_ADDR", "value": "10.96.7.8"},
    ]


def test_ipv6_addresses_are_bracketed_in_urls_only() -> None:
    out = {e["name"]: e["value"] for e in service_vars(svc("v6", "fd00::7", {"port": 80}))}
    assert out["V6_PORT"] == "tcp://[fd00::7]:80"
    assert out["V6_SERVICE_HOST"] == "fd00::7"


def test_services_without_an_ip_give_nothing() -> None:
    assert service_vars(svc("headless", "None", {"port": 80})) == []
    assert service_vars(svc("external", None)) == []  # ExternalName: no IP, no ports


def test_enable_service_links_false_gives_nothing() -> None:
    services = [svc("a", "10.96.0.20", {"port": 80})]
    assert namespace_service_env(services, {"enableServiceLinks": False}) == []
    assert namespace_service_env(services, {}) != []  # the default is true


def test_services_are_sorted_so_a_pod_translates_the_same_every_time() -> None:
    services = [svc("b", "10.96.0.21", {"port": 80}), svc("a", "10.96.0.20", {"port": 80})]
    names = [e["name"] for e in namespace_service_env(services, {})]
    assert names.index("A_SERVICE_HOST") < names.index("B_SERVICE_HOST")


def test_translated_pod_carries_them_after_the_api_env_and_before_its_own() -> None:
    services = namespace_service_env([svc("fooservice", "10.96.7.8", {"port": 8765})], {})
    ctx = PodContext(**{**CTX.__dict__, "service_env": services})
    user = [
        {"name": "FOOSERVICE_SERVICE_PORT", "value": "mine"},  # the container's own wins
        {"name": "URL", "value": "http://$(FOOSERVICE_SERVICE_HOST)"},
    ]
    host = translate_pod(pod(containers=[container(env=user)], initContainers=[container()]), ctx)
    env = host["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    values = {e["name"]: e["value"] for e in env}
    assert values["FOOSERVICE_SERVICE_HOST"] == "10.96.7.8"
    assert values["FOOSERVICE_SERVICE_PORT"] == "mine"
    assert names.count("FOOSERVICE_SERVICE_PORT") == 1
    assert names[0] == "KUBERNETES_SERVICE_HOST"
    assert names.index("FOOSERVICE_SERVICE_HOST") < names.index("URL")
    init = {e["name"] for e in host["spec"]["initContainers"][0]["env"]}
    assert "FOOSERVICE_PORT_8765_TCP_ADDR" in init
    assert host["spec"]["enableServiceLinks"] is False  # the host's own services stay out


def test_the_kubernetes_service_never_overrides_the_api_env() -> None:
    kube = {
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]},
    }
    ctx = PodContext(**{**CTX.__dict__, "service_env": namespace_service_env([kube], {})})
    env = {e["name"]: e["value"] for e in translate_pod(pod(), ctx)["spec"]["containers"][0]["env"]}
    assert env["KUBERNETES_SERVICE_HOST"] == CTX.api_host
    assert env["KUBERNETES_PORT_443_TCP_ADDR"] == CTX.api_host
