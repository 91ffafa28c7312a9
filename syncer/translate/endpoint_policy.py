"""Which addresses of a selector-less Service's Endpoints or EndpointSlices reach the host.

A vcluster's admin may write any address into them; copied to the host as they are, the host's
proxy would send the Service's traffic there: to the host's API server, a node's kubelet, another
tenant's pod (the classic escape of the original virtualcluster). So only addresses of this
vcluster's own pods (the host pods in its namespace) are copied by default, plus the CIDRs a
value allows (``--allow-endpoint-cidrs``, chart ``sync.endpoints.allowedCIDRs``); the others are
left out of the host copy and named in an Event on the virtual object.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .metadata import json_copy

Allowed = Callable[[str], bool]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidrs(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs from text; ValueError names the one that is not."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not a CIDR (e.g. 10.0.0.0/8)") from None
    return tuple(out)


def allowed_by(pod_ips: Iterable[str], cidrs: Sequence[Network] = ()) -> Allowed:
    """The test for one address: a pod of this vcluster, or inside an allowed CIDR."""
    pods = set(pod_ips)

    def allowed(address: str) -> bool:
        if address in pods:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:  # an FQDN EndpointSlice address: never routed by the proxy
            return False
        return any(ip in net for net in cidrs)

    return allowed


def filter_endpoints(ep: Mapping[str, Any], allowed: Allowed) -> tuple[dict[str, Any], list[str]]:
    """The host Endpoints without refused addresses (subsets left empty dropped) and those."""
    out: dict[str, Any] = json_copy(dict(ep))
    refused: list[str] = []
    subsets = []
    for subset in out.get("subsets") or []:
        for key in ("addresses", "notReadyAddresses"):
            kept = [a for a in subset.get(key) or [] if allowed(a.get("ip", ""))]
            refused += [a.get("ip", "") for a in subset.get(key) or [] if a not in kept]
            if key in subset:
                subset[key] = kept
        if subset.get("addresses") or subset.get("notReadyAddresses"):
            subsets.append(subset)
    if "subsets" in out:
        out["subsets"] = subsets
    return out, refused


def filter_slice(eps: Mapping[str, Any], allowed: Allowed) -> tuple[dict[str, Any], list[str]]:
    """The host EndpointSlice without refused addresses (endpoints left empty dropped)."""
    out: dict[str, Any] = json_copy(dict(eps))
    refused: list[str] = []
    endpoints = []
    for endpoint in out.get("endpoints") or []:
        addresses = endpoint.get("addresses") or []
        kept = [a for a in addresses if allowed(a)]
        refused += [a for a in addresses if a not in kept]
        if kept:
            endpoints.append({**endpoint, "addresses": kept})
    out["endpoints"] = endpoints
    return out, refused
