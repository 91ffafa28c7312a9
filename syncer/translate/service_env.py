"""The service environment variables a kubelet gives a container (``FOO_SERVICE_HOST`` & co.).

The host kubelet would give a synced pod the *host* namespace's services (the host pod has
``enableServiceLinks: false`` for that reason), so the syncer writes the virtual ones into the
container's ``env`` instead, as ``pkg/kubelet/envvars`` computes them: every Service of the
pod's virtual namespace with a ClusterIP, when the pod's ``enableServiceLinks`` is not false.
The ``kubernetes`` Service's variables are written apart (``api_env``): they point at the
vcluster's API server whatever the pod's setting, as on a real node.

As on a node, the variables are fixed when the container is made: a Service created after the
pod is not in them, and a variable the container sets itself wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

EnvVar = dict[str, str]


def env_name(service_name: str) -> str:
    """``my-svc`` -> ``MY_SVC`` (the kubelet's makeEnvVariableName)."""
    return service_name.replace("-", "_").upper()


def _has_ip(spec: Mapping[str, Any]) -> bool:
    ip = spec.get("clusterIP")
    return bool(ip) and ip != "None"


def _join(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def service_vars(service: Mapping[str, Any]) -> list[EnvVar]:
    """One Service's variables, in the kubelet's order; none without a ClusterIP or ports."""
    spec: Mapping[str, Any] = service.get("spec") or {}
    ports = spec.get("ports") or []
    if not _has_ip(spec) or not ports:
        return []
    ip = str(spec["clusterIP"])
    prefix = env_name(service["metadata"]["name"])
    out = [
        {"name": f"{prefix}_SERVICE_HOST", "value": ip},
        {"name": f"{prefix}_SERVICE_PORT", "value": str(ports[0]["port"])},
    ]
    out += [
        {"name": f"{prefix}_SERVICE_PORT_{env_name(p['name'])}", "value": str(p["port"])}
        for p in ports
        if p.get("name")
    ]
    for i, p in enumerate(ports):
        proto = str(p.get("protocol") or "TCP")
        url = f"{proto.lower()}://{_join(ip, int(p['port']))}"
        if i == 0:  # Docker links special-case the first port
            out.append({"name": f"{prefix}_PORT", "value": url})
        base = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
        out += [
            {"name": base, "value": url},
            {"name": f"{base}_PROTO", "value": proto.lower()},
            {"name": f"{base}_PORT", "value": str(p["port"])},
            {"name": f"{base}_ADDR", "value": ip},
        ]
    return out


def namespace_service_env(
    services: Iterable[Mapping[str, Any]], pod_spec: Mapping[str, Any]
) -> list[EnvVar]:
    """The variables of ``services`` (those of the pod's namespace) for a pod with
    ``pod_spec``; sorted by Service name, so a host pod is the same on every translation."""
    if pod_spec.get("enableServiceLinks") is False:
        return []
    out: list[EnvVar] = []
    for service in sorted(services, key=lambda s: str(s["metadata"]["name"])):
        out += service_vars(service)
    return out
