"""etcd for what the local runtime does to its own key prefix: seed it from the host's, drop it
at teardown (the client is the syncer's, ``syncer/etcd.py``; errors become ``VClusterError``)."""

from __future__ import annotations

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


def get_prefix(etcd_url: str, prefix: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of every key under ``prefix``."""
    kvs, _ = _call(lambda: Etcd(etcd_url).get_prefix(prefix))
    return [(kv.key, kv.value) for kv in kvs]


def put_all(etcd_url: str, items: list[tuple[bytes, bytes]]) -> None:
    _call(lambda: Etcd(etcd_url).write(puts=items))


def delete_prefix(etcd_url: str, prefix: str) -> int:
    """DeleteRange of every key starting with ``prefix``; how many there were."""
    return _call(lambda: Etcd(etcd_url).delete_prefix(prefix))
