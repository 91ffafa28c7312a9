"""Pod certificates: keys and stub requests (real cryptography), the host pod's Secret items, and
the request/poll/collect steps against a scripted virtual API (the signer's answers)."""

from __future__ import annotations

import base64
import copy
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from syncer.resources.podcerts import PodCertificates, files, key_pem, new_key, stub_csr
from syncer.translate.pods import CertSpec, PodContext, cert_specs, translate_pod

CTX = PodContext(
    vcluster="vc",
    host_namespace="vcluster-vc",
    dns_ip="",
    api_host="10.0.0.1",
    api_port=443,
    service_account_secret="web-x-default-x-vc-sa-token",
)
SOURCE = {
    "podCertificate": {
        "signerName": "e2e.example.com/s",
        "keyType": "ED25519",
        "credentialBundlePath": "bundle.pem",
        "certificateChainPath": "chain.pem",
        "maxExpirationSeconds": 3600,
        "userAnnotations": {"e2e.example.com/path": "/x"},
    }
}
VPOD: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "default", "uid": "vuid"},
    "spec": {
        "nodeName": "node-1",
        "containers": [{"name": "c", "image": "busybox"}],
        "volumes": [{"name": "tls", "projected": {"sources": [copy.deepcopy(SOURCE)]}}],
    },
}


@pytest.mark.parametrize("key_type", ["RSA3072", "ECDSAP256", "ECDSAP384", "ECDSAP521", "ED25519"])
def test_stub_request_is_signed_by_the_new_key(key_type: str) -> None:
    key = new_key(key_type)
    csr = x509.load_der_x509_csr(stub_csr(key))
    assert csr.is_signature_valid
    assert csr.subject == x509.Name([])
    pem = key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(pem, None)
    assert loaded.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_unknown_key_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown podCertificate keyType 'DSA'"):
        new_key("DSA")


def test_host_pod_mounts_the_certificate_from_the_token_secret() -> None:
    (volume,) = translate_pod(VPOD, CTX)["spec"]["volumes"]
    assert volume["projected"]["sources"] == [
        {
            "secret": {
                "name": CTX.service_account_secret,
                "items": [
                    {"key": "cert.tls.0.bundle", "path": "bundle.pem"},
                    {"key": "cert.tls.0.chain", "path": "chain.pem"},
                ],
            }
        }
    ]
    assert cert_specs(VPOD) == [
        CertSpec("cert.tls.0", "e2e.example.com/s", "ED25519", 3600, {"e2e.example.com/path": "/x"})
    ]
    assert files(cert_specs(VPOD)[0], b"K", b"C") == {
        "cert.tls.0.bundle": b"KC",
        "cert.tls.0.key": b"K",
        "cert.tls.0.chain": b"C",
    }


class Virtual:
    """Answers as a virtual API server whose signer issues (or denies) on the second look."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.created: list[dict[str, Any]] = []
        self.polls = 0

    def get(self, path: str) -> dict[str, Any]:
        if "/podcertificaterequests/" in path:
            self.polls += 1
            return {"status": self.answer if self.polls > 1 else {}}
        return {"metadata": {"uid": "sa-uid" if "serviceaccounts" in path else "node-uid"}}

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert path == "/apis/certificates.k8s.io/v1/namespaces/default/podcertificaterequests"
        self.created.append(body)
        return {"metadata": {"name": "req-1"}}


def _certs(answer: dict[str, Any]) -> tuple[PodCertificates, Virtual, list[tuple[str, str]]]:
    virtual, events = Virtual(answer), []
    recorder = SimpleNamespace(warn=lambda obj, kind, reason, msg: events.append((reason, msg)))
    engine = SimpleNamespace(virtual=virtual, recorder=recorder)
    return PodCertificates(engine), virtual, events  # type: ignore[arg-type]


def test_request_then_issued_certificate_is_collected() -> None:
    issued = {
        "conditions": [{"type": "Issued", "status": "True"}],
        "certificateChain": "CHAIN\n",
        "beginRefreshAt": "2030-01-01T00:00:00Z",
    }
    certs, virtual, _ = _certs(issued)
    specs = cert_specs(VPOD)
    data, wake = certs.step(VPOD, "s", specs)
    assert data == {}  # sent, not signed yet: look again soon
    assert wake > 0
    (body,) = virtual.created
    spec = body["spec"]
    assert spec | {"stubPKCS10Request": None} == {
        "signerName": "e2e.example.com/s",
        "podName": "web",
        "podUID": "vuid",
        "serviceAccountName": "default",
        "serviceAccountUID": "sa-uid",
        "nodeName": "node-1",
        "nodeUID": "node-uid",
        "maxExpirationSeconds": 3600,
        "unverifiedUserAnnotations": {"e2e.example.com/path": "/x"},
        "stubPKCS10Request": None,
    }
    assert x509.load_der_x509_csr(base64.b64decode(spec["stubPKCS10Request"])).is_signature_valid
    assert body["metadata"]["ownerReferences"][0]["uid"] == "vuid"
    data, wake = certs.step(VPOD, "s", specs)
    assert data["cert.tls.0.chain"] == b"CHAIN\n"
    assert data["cert.tls.0.bundle"].startswith(b"-----BEGIN PRIVATE KEY-----")
    assert data["cert.tls.0.bundle"].endswith(b"CHAIN\n")
    assert wake == 1893456000.0  # renewed from beginRefreshAt
    assert certs.step(VPOD, "s", specs)[0] == {}  # nothing new until then
    assert len(virtual.created) == 1


def test_denied_request_is_an_event_and_not_retried() -> None:
    denied = {"conditions": [{"type": "Denied", "reason": "UnsupportedKeyType", "message": "no"}]}
    certs, virtual, events = _certs(denied)
    specs = cert_specs(VPOD)
    certs.step(VPOD, "s", specs)
    data, wake = certs.step(VPOD, "s", specs)
    assert data == {}
    assert wake == 0.0
    assert events == [
        (
            "PodCertificateDenied",
            "pod certificate from e2e.example.com/s: Denied: UnsupportedKeyType no",
        )
    ]
    certs.step(VPOD, "s", specs)
    assert len(virtual.created) == 1
