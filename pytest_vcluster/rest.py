"""A minimal HTTPS client for readiness probes and bootstrap objects.

Start-up is measured in tenths of a second, so the probes use the standard library instead of
importing the (slow to import) ``kubernetes`` package; tests get a real ``kubernetes`` client.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Credentials:
    server: str  # https://127.0.0.1:PORT
    ca_path: Path
    cert_path: Path
    key_path: Path


class RestClient:
    def __init__(self, creds: Credentials, timeout: float = 5.0) -> None:
        self.creds = creds
        self.timeout = timeout
        ctx = ssl.create_default_context(cafile=str(creds.ca_path))
        ctx.load_cert_chain(str(creds.cert_path), str(creds.key_path))
        self._ctx = ctx
        hostport = creds.server.split("://", 1)[1]
        host, _, port = hostport.rpartition(":")
        self._host, self._port = host, int(port)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, decoded JSON or text). Raises OSError when the server cannot be reached."""
        conn = http.client.HTTPSConnection(
            self._host, self._port, context=self._ctx, timeout=self.timeout
        )
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read().decode("utf-8", errors="replace")
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)
