"""The host types by name (``--vcluster-host``). A new host type (k3d, a remote pool, ...) is a
module in this package with a ``HOST_TYPE`` (``base.HostType``: what it provides, how to open
it) whose host makes ``Runtime``s, and one line here."""

from __future__ import annotations

import importlib

from .base import HostType

MODULES = {
    "local": "pytest_vcluster.hosts.local_info",
    "kind": "pytest_vcluster.hosts.kind_info",
    "kubeconfig": "pytest_vcluster.hosts.kubeconfig",
}
NAMES = tuple(MODULES)


def host_type(name: str) -> HostType:
    """The host type called ``name`` (its module is imported only now: a run loads one)."""
    host: HostType = importlib.import_module(MODULES[name]).HOST_TYPE
    return host
