"""A small JSON client for one API server: plain dicts, streaming watches, typed errors.

The generated ``kubernetes`` models cost more to build than the syncing itself at thousands of
objects; the syncer only needs dicts, so it talks JSON over urllib3 (the ``kubernetes`` package's
own transport) and borrows ``kubernetes.config`` only to read kubeconfigs and in-cluster config.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3

JSON = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, body: Any, method: str, path: str) -> None:
        self.status = status
        self.body = body
        reason = body.get("message") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {path}: {status} {reason}")

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", "")) if isinstance(self.body, dict) else ""


class Kube:
    """One API server. Thread-safe (urllib3 pools are)."""

    def __init__(
        self,
        server: str,
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        token: str | None = None,
        verify: bool = True,
        name: str = "kube",
        maxsize: int = 64,
    ) -> None:
        self.server = server.rstrip("/")
        self.name = name
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = token if " " in token else f"Bearer {token}"
        self._pool = urllib3.PoolManager(
            maxsize=maxsize,
            block=False,
            cert_reqs=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
            ca_certs=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            retries=False,
        )

    @classmethod
    def from_kubeconfig(cls, path: str | None, *, context: str | None = None, name: str) -> Kube:
        """From a kubeconfig file, or in-cluster config when ``path`` is None."""
        from kubernetes import client, config

        cfg = client.Configuration()
        if path:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=cfg
            )
        else:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
        return cls(
            cfg.host,
            ca_file=cfg.ssl_ca_cert,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
            token=token,
            verify=cfg.verify_ssl,
            name=name,
        )

    # -- plain requests
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        url = self.server + path + (("?" + urlencode(params)) if params else "")
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        resp = self._pool.request(
            method, url, body=data, headers=headers, timeout=timeout, preload_content=True
        )
        try:
            decoded = json.loads(resp.data) if resp.data else None
        except ValueError:
            decoded = resp.data.decode(errors="replace")
        if resp.status >= 400:
            raise ApiError(resp.status, decoded, method, path)
        return decoded

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def create(self, path: str, body: JSON) -> JSON:
        result: JSON = self.request("POST", path, body)
        return result

    def merge_patch(self, path: str, patch: JSON) -> JSON:
        result: JSON = self.request(
            "PATCH", path, patch, content_type="application/merge-patch+json"
        )
        return result

    def replace(self, path: str, body: JSON) -> JSON:
        result: JSON = self.request("PUT", path, body)
        return result

    def delete(self, path: str, *, grace: int | None = None, uid: str | None = None) -> JSON | None:
        body: JSON = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            result: JSON | None = self.request("DELETE", path, body)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    # -- watch
    def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int, params: Mapping[str, Any]
    ) -> Iterator[JSON]:
        """Stream watch events; ends when the server closes the stream (timeout) or on error.

        The read timeout is a little longer than the server-side timeout: a stream that has
        been silent that long (not even a bookmark) is dead and is reconnected.
        """
        query = {
            **params,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        url = f"{self.server}{path}?{urlencode(query)}"
        resp = self._pool.request(
            "GET",
            url,
            headers=self._headers,
            preload_content=False,
            timeout=urllib3.Timeout(connect=10, read=timeout_seconds + 30),
        )
        try:
            if resp.status >= 400:
                data = resp.read()
                try:
                    body = json.loads(data)
                except ValueError:
                    body = data.decode(errors="replace")
                raise ApiError(resp.status, body, "WATCH", path)
            buf = b""
            for chunk in resp.stream(65536, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            resp.release_conn()
