"""Where and whether a host pod may run: scheduling, affinity, security gate, runtime class."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from pod_helpers import CTX, NS, container, pod

from syncer.translate.names import translate_labels
from syncer.translate.pod_security import pod_violations
from syncer.translate.pods import translate_pod

Matcher = Callable[..., bool]
# The Pod Security Standard baseline list, written out independently of the implementation.
BASELINE = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
]


def test_scheduling_fields_the_host_may_lack_are_dropped() -> None:
    virtual = pod(
        priorityClassName="high",
        priority=1000,
        preemptionPolicy="Never",
        overhead={"cpu": "10m"},
        schedulerName="custom",
        nodeName="node-1",
        subdomain="web",
    )
    host = translate_pod(virtual, CTX)
    spec = host["spec"]
    for field in ("priorityClassName", "priority", "preemptionPolicy", "overhead", "schedulerName"):
        assert field not in spec
    assert spec["nodeName"] == "node-1"
    assert spec["subdomain"] == "web"
    assert "status" not in host
    assert "nodeName" not in translate_pod(pod(), CTX)["spec"]


def sibling(namespace: str, labels: dict[str, str]) -> dict[str, str]:
    return translate_labels(labels, namespace, "vc")


def anti_affinity(term: dict[str, Any]) -> dict[str, Any]:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


@pytest.mark.parametrize(
    ("term", "other_namespace", "selected"),
    [
        ({"labelSelector": {"matchLabels": {"app": "web"}}}, NS, True),
        ({"labelSelector": {"matchLabels": {"app": "web"}}}, "team-b", False),
        ({"labelSelector": {"matchLabels": {"app": "db"}}}, NS, False),
        (
            {"labelSelector": {"matchLabels": {"app": "web"}}, "namespaces": ["team-b"]},
            "team-b",
            True,
        ),
        ({"labelSelector": {"matchLabels": {"app": "web"}}, "namespaces": ["team-b"]}, NS, False),
        (
            {"labelSelector": {"matchLabels": {"app": "web"}}, "namespaceSelector": {}},
            "team-z",
            True,
        ),
    ],
)
def test_pod_affinity_selects_translated_pods(
    matches: Matcher, term: dict[str, Any], other_namespace: str, selected: bool
) -> None:
    host = translate_pod(pod(affinity=anti_affinity({**term, "topologyKey": "zone"})), CTX)
    host_term = host["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ][0]
    assert "namespaces" not in host_term
    assert "namespaceSelector" not in host_term
    assert host_term["topologyKey"] == "zone"
    assert matches(host_term["labelSelector"], sibling(other_namespace, {"app": "web"})) is selected
    assert not matches(host_term["labelSelector"], {"app": "web"})  # host-only pod


def test_preferred_affinity_and_topology_spread_are_translated(matches: Matcher) -> None:
    selector = {"matchLabels": {"app": "web"}}
    preferred = {"weight": 10, "podAffinityTerm": {"labelSelector": selector, "topologyKey": "z"}}
    spread = {"maxSkew": 1, "topologyKey": "z", "labelSelector": selector, "matchLabelKeys": ["a"]}
    virtual = pod(
        affinity={"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [preferred]}},
        topologySpreadConstraints=[spread],
    )
    spec = translate_pod(virtual, CTX)["spec"]
    term = spec["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    constraint = spec["topologySpreadConstraints"][0]
    for host_selector in (term["podAffinityTerm"]["labelSelector"], constraint["labelSelector"]):
        assert matches(host_selector, sibling(NS, {"app": "web"}))
        assert not matches(host_selector, sibling("team-b", {"app": "web"}))
    assert "matchLabelKeys" not in constraint  # merged by the virtual API server already


@pytest.mark.parametrize(
    ("spec", "reasons"),
    [
        ({}, []),
        (
            {"hostNetwork": True, "hostPID": True, "hostIPC": True},
            ["pod: hostNetwork", "pod: hostPID", "pod: hostIPC"],
        ),
        ({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}, ["volume 'root': hostPath"]),
        (
            {"containers": [container(securityContext={"privileged": True})]},
            ["container 'c': privileged"],
        ),
        (
            {"initContainers": [container(name="init", securityContext={"privileged": True})]},
            ["init container 'init': privileged"],
        ),
        (
            {"ephemeralContainers": [container(name="dbg", securityContext={"privileged": True})]},
            ["ephemeral container 'dbg': privileged"],
        ),
        (
            {"containers": [container(ports=[{"containerPort": 80, "hostPort": 8080}])]},
            ["container 'c': hostPort 8080"],
        ),
        ({"containers": [container(ports=[{"containerPort": 80, "hostPort": 0}])]}, []),
        (
            {
                "containers": [
                    container(
                        securityContext={
                            "capabilities": {"add": ["NET_ADMIN", "CHOWN", "SYS_ADMIN"]}
                        }
                    )
                ]
            },
            ["container 'c': capability NET_ADMIN", "container 'c': capability SYS_ADMIN"],
        ),
        (
            {
                "containers": [
                    container(
                        securityContext={
                            "allowPrivilegeEscalation": True,
                            "privileged": False,
                            "capabilities": {
                                "add": BASELINE,
                                "drop": ["ALL"],
                            },
                        }
                    )
                ]
            },
            [],
        ),
        (
            {"securityContext": {"windowsOptions": {"hostProcess": True}}},
            ["pod: hostProcess"],
        ),
    ],
)
def test_pod_violations(spec: dict[str, Any], reasons: list[str]) -> None:
    assert pod_violations(pod(**spec)) == reasons


def test_runtime_class_runs_on_the_host_class_named_after_its_handler() -> None:
    virtual = pod(containers=[container()])
    virtual["spec"] |= {"runtimeClassName": "sandboxed-x1", "overhead": {"cpu": "10m"}}
    ctx = dataclasses.replace(CTX, runtime_handlers={"sandboxed-x1": "runsc"})
    spec = translate_pod(virtual, ctx)["spec"]
    assert spec["runtimeClassName"] == "runsc"
    assert "overhead" not in spec  # the host's admission sets its own class's overhead
    # Not (yet) known: the name stays, and the host's admission says what is missing.
    assert translate_pod(virtual, CTX)["spec"]["runtimeClassName"] == "sandboxed-x1"


@pytest.mark.parametrize(
    ("spec", "reasons"),
    [
        (
            {"containers": [container(securityContext={"procMount": "Unmasked"})]},
            ["container 'c': procMount Unmasked"],
        ),
        ({"containers": [container(securityContext={"procMount": "Default"})]}, []),
        (
            {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            ["pod: seccomp Unconfined"],
        ),
        (
            {"containers": [container(securityContext={"seccompProfile": {"type": "Unconfined"}})]},
            ["container 'c': seccomp Unconfined"],
        ),
        ({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}, []),
        (
            {
                "containers": [
                    container(securityContext={"appArmorProfile": {"type": "Unconfined"}})
                ]
            },
            ["container 'c': AppArmor Unconfined"],
        ),
        (
            {"securityContext": {"seLinuxOptions": {"type": "spc_t", "user": "root"}}},
            ["pod: SELinux type spc_t", "pod: SELinux user"],
        ),
        ({"securityContext": {"seLinuxOptions": {"type": "container_t", "level": "s0"}}}, []),
        (
            {
                "securityContext": {
                    "sysctls": [
                        {"name": "net.ipv4.tcp_syncookies", "value": "1"},
                        {"name": "kernel.core_pattern", "value": "|/x"},
                    ]
                }
            },
            ["pod: sysctl kernel.core_pattern"],
        ),
    ],
)
def test_the_rest_of_the_baseline(spec: dict[str, Any], reasons: list[str]) -> None:
    """Written from the Pod Security Standards' baseline table, not from the implementation."""
    assert pod_violations(pod(**spec)) == reasons


def test_apparmor_unconfined_by_annotation() -> None:
    p = pod()
    p["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/c": "unconfined",
        "container.apparmor.security.beta.kubernetes.io/d": "runtime/default",
    }
    assert pod_violations(p) == ["container 'c': AppArmor unconfined"]
