"""Pod certificates (projected ``podCertificate`` sources) of synced pods, issued by the virtual
cluster's signers: the syncer does what a kubelet does for its pods — makes the private key,
sends a PodCertificateRequest with a stub PKCS#10 request for the virtual pod, its
ServiceAccount and its (fake) node, waits for the signer's ``Issued`` condition — and writes key
and chain into the pod's token Secret, which the host pod mounts (the host kubelet asks no host
signer). Renewed from ``status.beginRefreshAt``. A denied or failed request is an Event.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..core.controller import Engine
from ..kube import JSON, ApiError
from ..translate.pods import CertSpec

log = logging.getLogger(__name__)
PCR_API = "/apis/certificates.k8s.io/v1"
POLL_SECONDS = 0.5  # while a request waits for its signer
_ENDED = ("Denied", "Failed")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "ECDSAP256": ec.SECP256R1,
    "ECDSAP384": ec.SECP384R1,
    "ECDSAP521": ec.SECP521R1,
}


def new_key(key_type: str) -> PrivateKey:
    """A private key of a podCertificate ``keyType`` (the kubelet's set)."""
    if key_type in ("RSA3072", "RSA4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type]())
    if key_type == "ED25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown podCertificate keyType {key_type!r}")


def stub_csr(key: PrivateKey) -> bytes:
    """An empty PKCS#10 request signed by ``key`` (DER): the proof of possession."""
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def files(spec: CertSpec, key: bytes, chain: bytes) -> dict[str, bytes]:
    """The Secret keys of one issued certificate (the kubelet's bundle is key, then chain)."""
    return {
        f"{spec.prefix}.bundle": key + chain,
        f"{spec.prefix}.key": key,
        f"{spec.prefix}.chain": chain,
    }


def _time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class _Request:
    name: str
    key: bytes  # PEM
    refresh_at: float = 0.0  # once issued
    done: bool = False  # issued and written, or refused (then never retried)


class PodCertificates:
    """State of the requests of one syncer's pods (kept in memory: after a restart each pod
    asks again, and keeps its current certificate until the new one is written)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._requests: dict[tuple[str, str], _Request] = {}  # (secret, prefix) -> request

    def forget(self, secret: str) -> None:
        for key in [k for k in self._requests if k[0] == secret]:
            del self._requests[key]

    def step(
        self, vpod: JSON, secret: str, specs: list[CertSpec]
    ) -> tuple[dict[str, bytes], float]:
        """Advance every certificate of a bound pod: request, poll, collect. Returns the Secret
        data to add now and when to look again (0: nothing pending)."""
        now = time.time()
        data: dict[str, bytes] = {}
        wakes: list[float] = []
        for spec in specs:
            req = self._requests.get((secret, spec.prefix))
            if req is None or (req.done and req.refresh_at and now >= req.refresh_at):
                req = self._request(vpod, spec)
                self._requests[(secret, spec.prefix)] = req
            if not req.done:
                data |= self._poll(vpod, spec, req)
            if not req.done:
                wakes.append(now + POLL_SECONDS)
            elif req.refresh_at:
                wakes.append(req.refresh_at)
        return data, min(wakes, default=0.0)

    def _request(self, vpod: JSON, spec: CertSpec) -> _Request:
        meta, pspec = vpod["metadata"], vpod.get("spec") or {}
        ns, sa = meta["namespace"], pspec.get("serviceAccountName") or "default"
        node = pspec.get("nodeName") or ""
        sa_uid = self.engine.virtual.get(f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}")
        node_obj = self.engine.virtual.get(f"/api/v1/nodes/{node}")
        key = new_key(spec.key_type)
        body: JSON = {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "PodCertificateRequest",
            "metadata": {
                "generateName": "req-",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}
                ],
            },
            "spec": {
                "signerName": spec.signer,
                "podName": meta["name"],
                "podUID": meta["uid"],
                "serviceAccountName": sa,
                "serviceAccountUID": sa_uid["metadata"]["uid"],
                "nodeName": node,
                "nodeUID": node_obj["metadata"]["uid"],
                "stubPKCS10Request": base64.b64encode(stub_csr(key)).decode(),
            },
        }
        if spec.max_seconds is not None:
            body["spec"]["maxExpirationSeconds"] = spec.max_seconds
        if spec.user_annotations:
            body["spec"]["unverifiedUserAnnotations"] = dict(spec.user_annotations)
        created = self.engine.virtual.create(
            f"{PCR_API}/namespaces/{ns}/podcertificaterequests", body
        )
        return _Request(created["metadata"]["name"], key_pem(key))

    def _poll(self, vpod: JSON, spec: CertSpec, req: _Request) -> dict[str, bytes]:
        ns = vpod["metadata"]["namespace"]
        try:
            pcr = self.engine.virtual.get(
                f"{PCR_API}/namespaces/{ns}/podcertificaterequests/{req.name}"
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
            req.done = True  # deleted under us: asked again at the next refresh of the pod
            req.refresh_at = time.time() + 60
            return {}
        status = pcr.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        for kind in _ENDED:
            if kind in conditions:
                req.done, req.refresh_at = True, 0.0
                message = (
                    f"pod certificate from {spec.signer}: {kind}: "
                    f"{conditions[kind].get('reason', '')} {conditions[kind].get('message', '')}"
                )
                log.warning("pod %s/%s %s", ns, vpod["metadata"]["name"], message)
                if self.engine.recorder is not None:
                    self.engine.recorder.warn(vpod, "Pod", "PodCertificate" + kind, message)
                return {}
        chain = status.get("certificateChain")
        if "Issued" not in conditions or not chain:
            return {}
        req.done = True
        refresh = status.get("beginRefreshAt")
        req.refresh_at = _time(refresh) if refresh else time.time() + 3600
        return files(spec, req.key, str(chain).encode())
