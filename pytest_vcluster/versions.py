"""Which versions of which tools pytest-vcluster supports, and how to parse a request.

Kubernetes patch versions are the newest the Go module proxy serves for each minor; the staging
modules (k8s.io/api, ...) of Kubernetes v1.X.Y are tagged v0.X.Y.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import UnsupportedVersionError

#: Kubernetes minor -> default patch release.
KUBERNETES: dict[str, str] = {
    "1.34": "1.34.4",
    "1.35": "1.35.4",
    "1.36": "1.36.3",
    "1.37": "1.37.2",
}
DEFAULT_KUBERNETES = "1.37"

#: What the local host runs (binaries.py resolves them; kept here, light, for the plugin).
LOCAL_HOST_TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

#: Versions of the other tools (not tied to the Kubernetes version).
ETCD = "3.6.16"
#: Runs inside the vcluster's pod on kind (the control-plane image); kubeadm 1.37's CoreDNS.
COREDNS = "1.14.6"
KWOK = "0.8.0"
HELM = "3.22.0"
KIND = "0.33.0"

#: Oldest versions accepted when a tool is found on PATH.
MIN_ON_PATH: dict[str, tuple[int, ...]] = {
    # Older etcd lacks progress notifications: kube-apiserver then disables RequestWatchProgress
    # and every client-go >= 1.35 informer falls back from streaming lists to slow re-LISTs.
    "etcd": (3, 5, 13),
    "coredns": (1, 11),
    "kwok": (0, 6),
    "helm": (3, 12),
    "kind": (0, 20),
}

_K8S_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$")


@dataclass(frozen=True, order=True)
class K8sVersion:
    """A resolved Kubernetes version, e.g. ``K8sVersion(1, 37, 2)``; ordered by its numbers."""

    major: int
    minor: int
    patch: int
    #: True when the user named the patch release, so PATH binaries must match it exactly.
    exact: bool = field(default=False, compare=False)

    @property
    def minor_str(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def tag(self) -> str:
        """The git tag, ``v1.37.2``."""
        return f"v{self.major}.{self.minor}.{self.patch}"

    @property
    def staging_tag(self) -> str:
        """The tag of k8s.io/api and the other staging modules, ``v0.37.2``."""
        return f"v0.{self.minor}.{self.patch}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def supported_kubernetes() -> str:
    return ", ".join(KUBERNETES)


def parse_k8s_version(value: str | None) -> K8sVersion:
    """Parse ``1.37``, ``v1.37`` or ``1.37.2``; a bare minor gets its default patch.

    Raises UnsupportedVersionError naming the supported minors for anything else.
    """
    raw = (value or DEFAULT_KUBERNETES).strip()
    m = _K8S_RE.match(raw)
    if not m:
        raise UnsupportedVersionError(
            f"Kubernetes version {value!r} is not a version; "
            f"use MAJOR.MINOR or MAJOR.MINOR.PATCH of one of: {supported_kubernetes()}"
        )
    minor = f"{m.group(1)}.{m.group(2)}"
    if minor not in KUBERNETES:
        raise UnsupportedVersionError(
            f"Kubernetes version {value!r} is not supported; supported: {supported_kubernetes()}"
        )
    if m.group(3) is None:
        major_s, minor_s, patch_s = KUBERNETES[minor].split(".")
        return K8sVersion(int(major_s), int(minor_s), int(patch_s))
    return K8sVersion(int(m.group(1)), int(m.group(2)), int(m.group(3)), exact=True)


def parse_k8s_versions(value: str | None) -> tuple[K8sVersion, ...]:
    """A comma-separated list (``1.35,1.37``) of distinct versions, in the order given; one
    version (or none: the default) is a list of one."""
    parts = [p.strip() for p in (value or "").split(",")] if value else [""]
    if value and not all(parts):
        raise UnsupportedVersionError(f"Kubernetes versions {value!r}: an empty entry")
    versions = tuple(parse_k8s_version(p or None) for p in parts)
    if len({v.minor_str for v in versions}) != len(versions):
        raise UnsupportedVersionError(f"Kubernetes versions {value!r}: a minor version twice")
    return versions


def parse_loose(text: str) -> tuple[int, ...] | None:
    """Find the first ``X.Y[.Z]`` in a tool's ``--version`` output."""
    m = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)
