"""etcd's JSON gateway (v3 API): what the syncer's reset and the plugin's local runtime do to a
vcluster's keys. The standard library only: no gRPC client needed."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: etcd refuses transactions of more than 128 operations (its --max-txn-ops default).
MAX_TXN_OPS = 100


class EtcdError(Exception):
    """etcd did not answer a request (it is gone, or refused it)."""


@dataclass(frozen=True)
class KV:
    key: bytes
    value: bytes
    mod_revision: int


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _range_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class Etcd:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def post(self, api: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(self.url + api, data=json.dumps(body).encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except (OSError, ValueError) as exc:
            raise EtcdError(f"etcd at {self.url}: {api}: {exc}") from None

    def get_prefix(self, prefix: str | bytes) -> tuple[list[KV], int]:
        """Every key under ``prefix``, and the revision the read saw."""
        key = prefix.encode() if isinstance(prefix, str) else prefix
        reply = self.post("/v3/kv/range", {"key": _b64(key), "range_end": _b64(_range_end(key))})
        kvs = [
            KV(
                base64.b64decode(kv["key"]),
                base64.b64decode(kv.get("value", "")),
                int(kv.get("mod_revision") or 0),
            )
            for kv in reply.get("kvs") or []
        ]
        return kvs, int((reply.get("header") or {}).get("revision") or 0)

    def write(
        self, puts: Iterable[tuple[bytes, bytes]] = (), deletes: Iterable[bytes] = ()
    ) -> dict[bytes, int]:
        """Deletes, then puts, in transactions of at most MAX_TXN_OPS operations; the
        revision at which each key was written."""
        ops: list[tuple[bytes, dict[str, Any]]] = [
            (k, {"requestDeleteRange": {"key": _b64(k)}}) for k in deletes
        ] + [(k, {"requestPut": {"key": _b64(k), "value": _b64(v)}}) for k, v in puts]
        written: dict[bytes, int] = {}
        for i in range(0, len(ops), MAX_TXN_OPS):
            chunk = ops[i : i + MAX_TXN_OPS]
            reply = self.post("/v3/kv/txn", {"success": [op for _, op in chunk]})
            revision = int((reply.get("header") or {}).get("revision") or 0)
            written |= dict.fromkeys((k for k, _ in chunk), revision)
        return written

    def status(self) -> tuple[int, int]:
        """(bytes of the database file, bytes of it in use): the rest are free pages, which
        only a defragmentation gives back."""
        reply = self.post("/v3/maintenance/status", {})
        return int(reply.get("dbSize") or 0), int(reply.get("dbSizeInUse") or 0)

    def defragment(self) -> None:
        """Rewrite the database without its free pages (etcd answers nothing meanwhile)."""
        self.post("/v3/maintenance/defragment", {})

    def delete_prefix(self, prefix: str) -> int:
        """DeleteRange of every key starting with ``prefix``; how many there were."""
        key = prefix.encode()
        body = {"key": _b64(key), "range_end": _b64(_range_end(key))}
        return int(self.post("/v3/kv/deleterange", body).get("deleted") or 0)
