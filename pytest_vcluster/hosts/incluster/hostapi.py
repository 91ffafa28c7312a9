"""The host cluster's API for an in-cluster vcluster, through the ``kubernetes`` client.

Any kubeconfig auth works (certificates, tokens, exec plugins), every call is an HTTP request
in this process — no kubectl start, which is a Go process on a 2-core machine — and objects
come back as plain dicts (``_preload_content=False``: no model building).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ...errors import HostStartError, InClusterError
from ...naming import namespace_taken
from ...servicecidr import discover

TIMEOUT = 10  # seconds per request: a host that takes longer is treated as unreachable
# kubeadm's (and kind's) service range: for a 1.33+ host whose ServiceCIDRs this user may not
# list. Wrong, it costs only re-created Services (the syncer takes the host's IP then).
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"


class HostApi:
    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
        cfg.retries = False  # the waits poll again themselves; no urllib3 retries
        # Any: with _preload_content=False the calls return urllib3 responses, not models.
        self.client: Any = client.ApiClient(cfg)
        self.core: Any = client.CoreV1Api(self.client)

    def close(self) -> None:
        self.client.close()

    @staticmethod
    def _json(call: Any, *args: Any, timeout: float = TIMEOUT, **kw: Any) -> Any:
        resp = call(*args, _preload_content=False, _request_timeout=timeout, **kw)
        return json.loads(resp.data)

    # -- the namespace ------------------------------------------------------------------------
    def create_namespace(self, body: dict[str, Any], vcluster: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.create_namespace(body, _preload_content=False, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 409:
                raise namespace_taken(vcluster) from None
            if exc.status == 403:
                raise HostStartError(
                    "the host does not let this kubeconfig create namespaces (a vcluster needs "
                    f"its own, {body['metadata']['name']}): {_message(exc)}"
                ) from None
            name = body["metadata"]["name"]
            raise InClusterError(f"creating namespace {name}: {_message(exc)}") from None

    def delete_namespace(self, ns: str) -> bool:
        """Mark it for deletion; False when it is gone already."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.delete_namespace(ns, _preload_content=False, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def namespace_exists(self, ns: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.read_namespace(ns, _preload_content=False, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def delete_pods_now(self, ns: str) -> None:
        self.core.delete_collection_namespaced_pod(
            ns, grace_period_seconds=0, _preload_content=False, _request_timeout=TIMEOUT
        )

    def pods_or_claims_left(self, ns: str) -> tuple[bool, bool]:
        pods = self._json(self.core.list_namespaced_pod, ns, limit=1)["items"]
        claims = self._json(self.core.list_namespaced_persistent_volume_claim, ns, limit=1)
        return bool(pods), bool(claims["items"])

    # -- host facts ---------------------------------------------------------------------------
    def service_cidr(self, namespace: str) -> str:
        """The host's service range (synced Services keep their host ClusterIPs); a refused
        probe Service goes into the vcluster's own ``namespace``."""
        from kubernetes.client.exceptions import ApiException

        def servicecidrs() -> dict[str, Any] | None:
            from kubernetes import client

            api = client.NetworkingV1Api(self.client)
            if not hasattr(api, "list_service_cidr"):  # a client older than the API
                return None
            try:
                listing: dict[str, Any] = self._json(api.list_service_cidr)
            except ApiException:  # not served (< 1.33) or not ours to list
                return None
            return listing

        def create(body: dict[str, Any]) -> tuple[int, Any]:
            try:
                return 201, self._json(self.core.create_namespaced_service, namespace, body)
            except ApiException as exc:
                return int(exc.status or 0), _body(exc)

        def delete(name: str) -> None:
            self.core.delete_namespaced_service(name, namespace, _preload_content=False)

        return discover(servicecidrs, create, delete, namespace, DEFAULT_SERVICE_CIDR)

    def coredns_image(self) -> str:
        """The image of the host's own CoreDNS (present on its nodes), or "" (chart default)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        apps = client.AppsV1Api(self.client)
        try:
            dep = self._json(apps.read_namespaced_deployment, "coredns", "kube-system")
        except ApiException:  # another DNS, or not ours to read: the chart's default image
            return ""
        return str(dep["spec"]["template"]["spec"]["containers"][0].get("image") or "")

    # -- reads --------------------------------------------------------------------------------
    def secret_value(self, ns: str, name: str, key: str) -> bytes:
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self._json(self.core.read_namespaced_secret, name, ns)
            return base64.b64decode(secret["data"][key])
        except (ApiException, KeyError) as exc:
            raise InClusterError(f"reading Secret {ns}/{name} ({key}): {_short(exc)}") from None

    def create_service(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Service; the Service as created (its ClusterIP, node ports)."""
        from kubernetes.client.exceptions import ApiException

        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            svc = self._json(self.core.create_namespaced_service, ns, body)
        except ApiException as exc:
            raise InClusterError(f"creating Service {ns}/{name}: {_message(exc)}") from None
        return dict(svc)

    def service_ip(self, ns: str, name: str) -> str:
        """The ClusterIP of a host Service, "" while it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            svc = self._json(self.core.read_namespaced_service, name, ns)
        except ApiException as exc:
            if exc.status == 404:
                return ""
            raise
        return str(svc["spec"].get("clusterIP") or "")

    def has_ready_endpoint(self, ns: str, service: str) -> bool:
        from kubernetes import client

        discovery = client.DiscoveryV1Api(self.client)
        slices = self._json(
            discovery.list_namespaced_endpoint_slice,
            ns,
            label_selector=f"kubernetes.io/service-name={service}",
            timeout=2,
        )["items"]
        return any(
            (e.get("conditions") or {}).get("ready")
            for s in slices
            for e in s.get("endpoints") or []
        )

    def proxy_get(self, ns: str, target: str, path: str) -> tuple[int, str]:
        """GET through the host API server's pod proxy (``https:<pod>:6443``): (status, body);
        a refused port is a 503 there. Connection errors propagate."""
        from kubernetes.client.exceptions import ApiException

        try:
            resp = self.core.connect_get_namespaced_pod_proxy_with_path(
                target, ns, path, _preload_content=False, _request_timeout=2
            )
        except ApiException as exc:
            body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
            return int(exc.status or 0), str(body or exc.reason)
        return 200, resp.data.decode(errors="replace")

    def pods(self, ns: str, selector: str = "") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json(
            self.core.list_namespaced_pod, ns, label_selector=selector
        )["items"]
        return items

    def events(self, ns: str) -> list[dict[str, Any]]:
        items = self._json(self.core.list_namespaced_event, ns)["items"]
        return sorted(items, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime")))

    def log(
        self, ns: str, pod: str, container: str, *, tail: int | None = 60, previous: bool = False
    ) -> str:
        resp = self.core.read_namespaced_pod_log(
            pod,
            ns,
            container=container,
            tail_lines=tail,
            previous=previous,
            _preload_content=False,
            _request_timeout=TIMEOUT,
        )
        return str(resp.data.decode(errors="replace"))

    def resize_pod(self, ns: str, name: str, patch: dict[str, Any]) -> None:
        """An in-place resize (``pods/resize``): what the host refuses is an InClusterError."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.patch_namespaced_pod_resize(
                name, ns, patch, _preload_content=False, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            raise InClusterError(f"resizing pod {ns}/{name}: {_message(exc)}") from None

    def watch_pod(self, ns: str, name: str, timeout_seconds: int) -> Any:
        """An open watch of one pod: a urllib3 response of JSON lines."""
        return self.core.list_namespaced_pod(
            ns,
            field_selector=f"metadata.name={name}",
            watch=True,
            allow_watch_bookmarks=False,
            timeout_seconds=timeout_seconds,
            _preload_content=False,
            _request_timeout=(5, timeout_seconds + 15),
        )


def _body(exc: Any) -> Any:
    try:
        return json.loads(exc.body)
    except (TypeError, ValueError):
        return str(exc.body or exc.reason)


def _message(exc: Any) -> str:
    body = _body(exc)
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)[-1000:]


def _short(exc: BaseException) -> str:
    return (_message(exc) if hasattr(exc, "status") else repr(exc))[:300]
