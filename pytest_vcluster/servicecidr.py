"""Discover a cluster's service CIDR: ask for ClusterIP 1.1.1.1 and read the refusal.

The API server answers "... The range of valid IPs is 10.96.0.0/16" (or lists one range per IP
family); the virtual API server is then started with the same range so a virtual Service can
carry the ClusterIP that the host allocated for its copy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import VClusterError

_RANGE = re.compile(r"valid IPs is ([0-9a-fA-F:./]+(?:\s*,\s*[0-9a-fA-F:./]+)?)")


def parse_service_cidr(message: str) -> str:
    m = _RANGE.search(message)
    if not m:
        raise VClusterError(
            f"could not read the service CIDR from the API server's answer: {message!r}"
        )
    return ",".join(part.strip() for part in m.group(1).split(","))


def cidrs_from_servicecidrs(listing: dict[str, Any]) -> list[str]:
    """IPv4-first CIDRs of a ServiceCIDR list, the ``kubernetes`` default range first."""
    items = sorted(
        listing.get("items") or [],
        key=lambda i: i.get("metadata", {}).get("name") != "kubernetes",
    )
    cidrs = [c for i in items for c in (i.get("spec") or {}).get("cidrs") or []]
    return sorted(cidrs, key=lambda c: ":" in c)


def probe_service(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"generateName": "pytest-vcluster-cidr-probe-", "namespace": namespace},
        "spec": {"clusterIP": "1.1.1.1", "ports": [{"port": 80}]},
    }


def discover(
    list_servicecidrs: Callable[[], dict[str, Any] | None],
    create_probe: Callable[[dict[str, Any]], tuple[int, Any]],
    delete_service: Callable[[str], object],
    namespace: str,
    default: str | None = None,
) -> str:
    """A host's service range, in one order for every host: its ServiceCIDR objects
    (Kubernetes >= 1.33; ``list_servicecidrs`` returns None where they are not served or may
    not be listed), else the refusal of a Service asking for ClusterIP 1.1.1.1 in
    ``namespace`` (``create_probe`` returns status and body; only hosts before 1.33 name their
    range in it), else ``default`` (an error without one)."""
    listing = list_servicecidrs()
    if listing:
        cidrs = cidrs_from_servicecidrs(listing)
        if cidrs:
            return cidrs[0]
    status, body = create_probe(probe_service(namespace))
    if 200 <= status < 300:  # 1.1.1.1 was accepted: clean up, then say so
        delete_service(body["metadata"]["name"])
        raise VClusterError("the host accepted ClusterIP 1.1.1.1; cannot find its service range")
    message = body.get("message", "") if isinstance(body, dict) else str(body)
    try:
        return parse_service_cidr(message).split(",")[0]
    except VClusterError:
        if default is None:
            raise
        return default
