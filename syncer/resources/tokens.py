"""ServiceAccount tokens of synced pods: requested from the virtual API server (or, given its
signing key, signed here as it would: token_signer.py), kept in one host Secret per pod (owned
by the host pod, so the host garbage collector removes it with it).

A token is requested only once the host scheduler has bound the pod, right after the virtual pod
is bound to its fake node: the virtual API server then writes the node's name and uid into it,
as a real cluster's tokens carry them (a TokenReview of it shows
``authentication.kubernetes.io/node-name``). The host kubelet retries the pod's token mount
until the Secret exists. ``--early-tokens`` writes them right after the host pod instead,
without the node claims (bench/pod_start.py measures both). Each token is re-requested at
``--token-refresh-fraction`` of its lifetime; the due time is written on the Secret so a
restarted syncer never lets one lapse.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

from ..constants import ENDED_PHASES, OBJECT_NAME, OBJECT_NAMESPACE, OBJECT_UID
from ..core.controller import Engine
from ..core.informer import Informer
from ..kube import JSON, ApiError
from ..translate.pods import TokenSpec, cert_specs, token_specs
from ..translate.sa_tokens import Ref
from ..translate.trust_bundles import BundleSpec, bundle_data, bundle_specs
from .namespaces import accounts_cache
from .podcerts import PodCertificates
from .token_signer import TokenSigner

TOKEN_EXPIRY = "vc.pytest-vcluster.io/token-expiry"  # earliest expiry of the Secret's tokens
TOKEN_REFRESH = "vc.pytest-vcluster.io/token-refresh"  # when they are re-requested
TOKEN_LABEL = "vc.pytest-vcluster.io/token-of"


def token_secret_name(host_pod: str) -> str:
    return f"{host_pod}-sa-token"


def refresh_at(now: float, specs: list[TokenSpec], fraction: float) -> float:
    """When the first of these tokens, requested at ``now``, is due for renewal."""
    return now + min(s.seconds for s in specs) * fraction


class Tokens:
    """Writes and renews the token Secrets of one syncer's pods."""

    def __init__(self, engine: Engine, ca: Callable[[], bytes]) -> None:
        self.engine = engine
        self.s = engine.settings
        self._ca = ca  # the CA certificate synced pods trust
        self._due: dict[str, float] = {}  # token secret -> when to renew it
        self.certs = PodCertificates(engine)
        self._bundles: dict[str, dict[str, str]] = {}  # token secret -> trust bundles written
        self.signer: TokenSigner | None = None
        self.accounts: Informer | None = None
        if self.s.token_signing_key:
            self.signer = TokenSigner(
                self.s.token_signing_key, self.s.token_issuer, self.s.token_audiences
            )
            self.accounts = accounts_cache(engine)

    def forget(self, host_pod: str) -> None:
        self._due.pop(token_secret_name(host_pod), None)
        self._bundles.pop(token_secret_name(host_pod), None)
        self.certs.forget(token_secret_name(host_pod))

    def created(self, host_pod: str) -> None:
        """A new host pod: its tokens are due as soon as it is bound (no old Secret to read)."""
        self._due[token_secret_name(host_pod)] = 0.0

    def ensure(self, vpod: JSON, hpod: JSON) -> None:
        """Write the pod's tokens (and certificates) once it is bound; renew them when due."""
        status, spec = hpod.get("status") or {}, hpod.get("spec") or {}
        if status.get("phase") in ENDED_PHASES:
            return
        bound = bool(spec.get("nodeName"))
        if not bound and not self.s.early_tokens:
            return
        # Of the virtual pod's spec: the host copy's token sources are Secret items already.
        tokens = token_specs(vpod, self.s.token_seconds)
        certs = cert_specs(vpod) if bound else []  # a request names the node
        meta = vpod["metadata"]
        key = ("pods", meta["namespace"], meta["name"])
        name = token_secret_name(hpod["metadata"]["name"])
        if tokens:
            self._tokens(vpod, hpod, name, tokens, key)
        bundles = bundle_specs(vpod)
        if bundles:
            self._trust_bundles(vpod, hpod, name, bundles, key)
        if certs:
            data, wake = self.certs.step(vpod, name, certs)
            if data:
                self._store(vpod, hpod, name, {k: _b64(v) for k, v in data.items()}, {})
            if wake:
                self.engine.queue.add_after(key, max(wake - time.time(), 0.0))

    def _trust_bundles(
        self,
        vpod: JSON,
        hpod: JSON,
        name: str,
        specs: list[BundleSpec],
        key: tuple[str, str, str],
    ) -> None:
        """The pod's clusterTrustBundle files, from the virtual cluster's bundles; written when
        they change (seen on the pod's next reconcile); a required bundle that is missing
        is looked for again in a few seconds (the kubelet keeps the pod waiting meanwhile)."""
        listing = self.engine.virtual.get(CTB_PATH)
        found = listing.get("items") or []
        data: dict[str, str] = {}
        for spec in specs:
            content = bundle_data(found, spec)
            if content is None:
                self.engine.queue.add_after(key, BUNDLE_RETRY)
                continue
            data[spec.key] = _b64(content)
        if data and data != self._bundles.get(name):
            self._store(vpod, hpod, name, data, {})
            self._bundles[name] = data

    def _tokens(
        self, vpod: JSON, hpod: JSON, name: str, specs: list[TokenSpec], key: tuple[str, str, str]
    ) -> None:
        due = self._due.get(name)
        if due is not None and time.time() < due:
            return  # a requeue for that time is pending
        if due is None:  # first look since this syncer started
            due = self._due_from_secret(name)
            if due is not None and time.time() < due:
                self._due[name] = due
                self.engine.queue.add_after(key, due - time.time())
                return
        self._write(vpod, hpod, name, specs)
        self.engine.queue.add_after(key, self._due[name] - time.time())

    def _issuer(self, vpod: JSON, hpod: JSON) -> Callable[[TokenSpec], str]:
        """How this pod's tokens are made: a TokenRequest each, or signed here as the API server
        would (token_signer.py), with the ServiceAccount and the node looked up once."""
        meta = vpod["metadata"]
        ns = meta["namespace"]
        sa = (vpod.get("spec") or {}).get("serviceAccountName") or "default"
        if self.signer is None or self.accounts is None:
            return lambda spec: self._request(meta, sa, spec)
        # A missing ServiceAccount is the API server's 404 (an ApiError), as a TokenRequest's.
        account = self.accounts.get(ns, sa) or self.engine.virtual.get(
            f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}"
        )
        account_ref, pod_ref = Ref(sa, account["metadata"]["uid"]), Ref(meta["name"], meta["uid"])
        node = (hpod.get("spec") or {}).get("nodeName") or ""  # the virtual pod's, once bound
        node_ref = Ref(node, self._node_uid(node)) if node else None
        signer = self.signer
        return lambda spec: signer.pod_token(
            ns, account_ref, pod_ref, node_ref, spec.seconds, spec.audience
        )

    def _request(self, meta: JSON, sa: str, spec: TokenSpec) -> str:
        request: JSON = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": spec.seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        if spec.audience:
            request["spec"]["audiences"] = [spec.audience]
        path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token"
        return str(self.engine.virtual.create(path, request)["status"]["token"])

    def _node_uid(self, name: str) -> str:
        """The virtual node's uid; "" when it does not exist (named without one, as the API
        server does)."""
        informer = self.engine.virtual_informers.get("nodes")
        node = informer.get("", name) if informer is not None else None
        if node is None:
            try:
                node = self.engine.virtual.get(f"/api/v1/nodes/{name}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                return ""
        return str(node["metadata"]["uid"])

    def _write(self, vpod: JSON, hpod: JSON, name: str, specs: list[TokenSpec]) -> None:
        meta = vpod["metadata"]
        now = time.time()
        issue = self._issuer(vpod, hpod)
        data = {s.key: _b64(issue(s).encode()) for s in specs}
        data |= {"ca.crt": _b64(self._ca()), "namespace": _b64(meta["namespace"].encode())}
        due = refresh_at(now, specs, self.s.token_refresh)
        annotations = {
            TOKEN_EXPIRY: str(int(now + min(s.seconds for s in specs))),
            TOKEN_REFRESH: str(int(due)),
        }
        self._store(vpod, hpod, name, data, annotations)
        self._due[name] = due

    def _store(
        self, vpod: JSON, hpod: JSON, name: str, data: dict[str, str], annotations: dict[str, str]
    ) -> None:
        """Create the Secret, or merge these keys into it: tokens and certificates are written
        apart, and neither may drop the other's."""
        base = self.engine.host_ns_path("/api/v1", "secrets")
        try:
            self.engine.host.create(base, self._secret(vpod, hpod, name, data, annotations))
        except ApiError as exc:
            if exc.status != 409:
                raise
            patch: JSON = {"data": data}
            if annotations:
                patch["metadata"] = {"annotations": annotations}
            self.engine.host.merge_patch(f"{base}/{name}", patch)

    def _secret(
        self, vpod: JSON, hpod: JSON, name: str, data: dict[str, str], annotations: dict[str, str]
    ) -> JSON:
        meta, om = vpod["metadata"], hpod["metadata"]
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                # Not MANAGED_BY_LABEL: the Secret syncer must not mistake tokens for copies of
                # virtual Secrets; the host garbage collector removes them with their pod.
                "labels": {TOKEN_LABEL: self.s.name},
                "annotations": {
                    OBJECT_NAME: meta["name"],
                    OBJECT_NAMESPACE: meta["namespace"],
                    OBJECT_UID: meta["uid"],
                    **annotations,
                },
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Pod", "name": om["name"], "uid": om["uid"]}
                ],
            },
            "data": data,
        }

    def _due_from_secret(self, name: str) -> float | None:
        path = self.engine.host_ns_path("/api/v1", "secrets") + f"/{name}"
        try:
            annotations = self.engine.host.get(path)["metadata"]["annotations"]
        except (ApiError, KeyError, TypeError):
            return None
        try:
            return float(annotations[TOKEN_REFRESH])
        except (KeyError, ValueError, TypeError):
            pass
        try:  # written by an older syncer: the standard token's lifetime
            expiry = float(annotations[TOKEN_EXPIRY])
        except (KeyError, ValueError, TypeError):
            return None
        return expiry - (1 - self.s.token_refresh) * self.s.token_seconds


CTB_PATH = "/apis/certificates.k8s.io/v1/clustertrustbundles"
BUNDLE_RETRY = 2.0  # seconds, while a required ClusterTrustBundle does not exist


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
