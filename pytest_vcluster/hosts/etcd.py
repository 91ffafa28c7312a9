"""etcd's JSON gateway (v3 API) for what the local runtime does to its own key prefix: seed it
from the host's, drop it at teardown. The standard library only: no gRPC client needed."""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Any

from ..errors import VClusterError


class EtcdError(VClusterError):
    """etcd did not answer a request (it is gone, or refused it)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _range_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def post(etcd_url: str, api: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(etcd_url + api, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read() or b"{}")
    except (OSError, ValueError) as exc:
        raise EtcdError(f"etcd at {etcd_url}: {api}: {exc}") from None


def get_prefix(etcd_url: str, prefix: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of every key under ``prefix``."""
    key = prefix.encode()
    body = {"key": _b64(key), "range_end": _b64(_range_end(key))}
    kvs = post(etcd_url, "/v3/kv/range", body).get("kvs") or []
    return [(base64.b64decode(kv["key"]), base64.b64decode(kv.get("value", ""))) for kv in kvs]


def put_all(etcd_url: str, items: list[tuple[bytes, bytes]]) -> None:
    for i in range(0, len(items), 100):  # etcd refuses transactions over 128 operations
        ops = [{"requestPut": {"key": _b64(k), "value": _b64(v)}} for k, v in items[i : i + 100]]
        post(etcd_url, "/v3/kv/txn", {"success": ops})


def delete_prefix(etcd_url: str, prefix: str) -> int:
    """DeleteRange of every key starting with ``prefix``; how many there were."""
    key = prefix.encode()
    body = {"key": _b64(key), "range_end": _b64(_range_end(key))}
    return int(post(etcd_url, "/v3/kv/deleterange", body).get("deleted") or 0)
