"""Projected ``clusterTrustBundle`` sources of synced pods, resolved against the *virtual*
cluster's ClusterTrustBundles (the host kubelet would read the host's), as the kubelet's
clustertrustbundle manager does: by name, or every bundle of a signer whose labels match a
selector (a missing selector matches nothing, an empty one everything); certificates
deduplicated; a missing bundle is an empty file when ``optional``, else the pod waits.

The result goes into the pod's token Secret under ``bundle_key`` (the host pod mounts it there).
The kubelet shuffles the certificates once per kubelet start; here they are sorted, which is
one of the orders it may give.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .selectors import selects

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class BundleSpec:
    key: str  # in the pod's token Secret
    name: str | None = None
    signer: str | None = None
    selector: Mapping[str, Any] | None = None
    optional: bool = False
    has_selector: bool = field(default=False)  # labelSelector given (even empty)


def bundle_key(volume: str, index: int) -> str:
    return f"ctb.{volume}.{index}"


def bundle_specs(pod: Mapping[str, Any]) -> list[BundleSpec]:
    out = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        for i, source in enumerate((volume.get("projected") or {}).get("sources") or []):
            ctb = source.get("clusterTrustBundle")
            if ctb is not None:
                out.append(
                    BundleSpec(
                        bundle_key(volume["name"], i),
                        name=ctb.get("name"),
                        signer=ctb.get("signerName"),
                        selector=ctb.get("labelSelector"),
                        optional=bool(ctb.get("optional")),
                        has_selector="labelSelector" in ctb and ctb["labelSelector"] is not None,
                    )
                )
    return out


def chosen(bundles: Iterable[Mapping[str, Any]], spec: BundleSpec) -> list[Mapping[str, Any]]:
    """The ClusterTrustBundles a source names."""
    if spec.name:
        return [b for b in bundles if b["metadata"]["name"] == spec.name]
    return [
        b
        for b in bundles
        if (b.get("spec") or {}).get("signerName") == spec.signer
        and selects(spec.selector if spec.has_selector else None, b["metadata"].get("labels") or {})
    ]


def anchors(bundles: Iterable[Mapping[str, Any]]) -> bytes:
    """Their certificates, deduplicated, as PEM ``CERTIFICATE`` blocks."""
    seen: set[bytes] = set()
    for bundle in bundles:
        text = str((bundle.get("spec") or {}).get("trustBundle") or "").encode()
        for match in _PEM.finditer(text):
            seen.add(base64.b64decode(b"".join(match.group(2).split())))
    out = b""
    for der in sorted(seen):
        body = base64.b64encode(der)
        lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        out += b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"
    return out


def bundle_data(bundles: list[Mapping[str, Any]], spec: BundleSpec) -> bytes | None:
    """The file a source gives; None while a required bundle is missing (the pod waits)."""
    found = chosen(bundles, spec)
    if not found:
        return b"" if spec.optional else None
    return anchors(found)
