"""Names of vclusters and their host namespaces (no heavy imports: the plugin loads this)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import HostStartError

RUN_LABEL = "pytest-vcluster.io/run-id"  # on host namespaces: which run made it
EXPIRES_LABEL = "pytest-vcluster.io/expires"  # when `reap` may remove it (epoch seconds)
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise HostStartError(
            f"vcluster name {name!r} is invalid: use 1-32 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def host_namespace_for(name: str) -> str:
    return f"vcluster-{name}"


MANAGED_BY = {"app.kubernetes.io/managed-by": "pytest-vcluster"}


def host_namespace_body(
    name: str, labels: Mapping[str, str], pod_security: str | None = None
) -> dict[str, Any]:
    """The host namespace of vcluster ``name``, for both runtimes: managed-by (``reap`` finds
    it), the run's labels, and the chart's pod security level where the host enforces it."""
    all_labels = dict(MANAGED_BY)
    if pod_security:
        all_labels["pod-security.kubernetes.io/enforce"] = pod_security
    all_labels.update(labels)
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": host_namespace_for(name), "labels": all_labels},
    }


def namespace_taken(name: str) -> HostStartError:
    return HostStartError(
        f"host namespace {host_namespace_for(name)} exists already: a vcluster named {name!r} "
        "is running on this host (or was left behind: `pytest-vcluster reap`)"
    )


def default_cache_dir() -> Path:
    env = os.environ.get("PYTEST_VCLUSTER_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-vcluster"
