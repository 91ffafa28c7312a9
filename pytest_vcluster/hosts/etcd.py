"""etcd for what the local runtime does to its own key prefix: seed it from the host's, drop it
at teardown, and give the space back now and then (the client is the syncer's,
``syncer/etcd.py``; errors become ``VClusterError``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from syncer.etcd import Etcd
from syncer.etcd import EtcdError as _Error

from ..errors import VClusterError

T = TypeVar("T")


class EtcdError(VClusterError):
    """etcd did not answer a request (it is gone, or refused it)."""


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except _Error as exc:
        raise EtcdError(str(exc)) from None


# What a new kube-apiserver writes at start that a copy can spare it (the local runtime copies
# them from the host, the control-plane image carries them as its etcd template): the RBAC
# objects its rbac/bootstrap-roles hook makes, labelled rbac-defaults, and the system
# PriorityClasses ("system-" is reserved: only the apiserver's own two can have it, so a
# test's PriorityClass is never one). Keys below the API server's etcd prefix.
BOOTSTRAP_RBAC = ("clusterroles", "clusterrolebindings", "roles", "rolebindings")
BOOTSTRAP_PRIORITY_CLASSES = "priorityclasses/system-"
# The post-start hooks that write them. Each polls every second, its first look one second
# after the API server serves (``wait.Poll``), so an API server whose objects are already in
# place answers requests -- and authorizes them by those objects -- a second before its /readyz
# says so: a seeded one is ready when everything else is (/readyz?exclude=...).
BOOTSTRAP_HOOKS = (
    "poststarthook/rbac/bootstrap-roles",
    "poststarthook/scheduling/bootstrap-system-priority-classes",
)


def bootstrap_object(key: str, value: bytes) -> bool:
    """Whether ``key`` (``clusterroles/admin``: below the API server's prefix) holding
    ``value`` is one of those."""
    if key.split("/", 1)[0] in BOOTSTRAP_RBAC:
        return b"rbac-defaults" in value
    return key.startswith(BOOTSTRAP_PRIORITY_CLASSES)


def get_prefix(etcd_url: str, prefix: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of every key under ``prefix``."""
    kvs, _ = _call(lambda: Etcd(etcd_url).get_prefix(prefix))
    return [(kv.key, kv.value) for kv in kvs]


def put_all(etcd_url: str, items: list[tuple[bytes, bytes]]) -> None:
    _call(lambda: Etcd(etcd_url).write(puts=items))


def delete_prefix(etcd_url: str, prefix: str) -> int:
    """DeleteRange of every key starting with ``prefix``; how many there were."""
    return _call(lambda: Etcd(etcd_url).delete_prefix(prefix))


# Free pages worth a defragmentation: a few dozen deleted vclusters' worth (one leaves ~1 MiB of
# revisions), so a long session defragments every few minutes, a short one never.
DEFRAG_FREE_BYTES = 32 << 20


_defragmenting = threading.Lock()


def defragment_if_worth(etcd_url: str, min_free: int = DEFRAG_FREE_BYTES) -> bool:
    """Defragment when ``min_free`` bytes of the database are free pages; whether it did.

    Deleted vclusters' keys become free pages once the API servers' compaction (every 5 min)
    drops their revisions, but etcd never hands them back: its memory-mapped file, on tmpfs
    memory itself, only grows (the soak: etcd RSS +87 % over 400 vclusters). A defragmentation
    of a database this size takes tens of milliseconds, during which etcd answers nothing."""
    if not _defragmenting.acquire(blocking=False):
        return False  # another deletion does it right now
    try:
        db = Etcd(etcd_url, timeout=30)
        size, used = _call(db.status)
        if size - used < min_free:
            return False
        _call(db.defragment)
        return True
    finally:
        _defragmenting.release()
