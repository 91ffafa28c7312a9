"""Discover a cluster's service CIDR: ask for ClusterIP 1.1.1.1 and read the refusal.

The API server answers "... The range of valid IPs is 10.96.0.0/16" (or lists one range per IP
family); the virtual API server is then started with the same range so a virtual Service can
carry the ClusterIP that the host allocated for its copy.
"""

from __future__ import annotations

import re
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
