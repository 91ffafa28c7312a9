"""Pod tokens the syncer signs itself (translate/sa_tokens.py, resources/token_signer.py); the
API server accepting them is tests/integration/test_syncer_signed_tokens.py."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from syncer.kube import request_kind
from syncer.resources.token_signer import SigningKeyError, TokenSigner
from syncer.translate.pod_status import bound_status
from syncer.translate.sa_tokens import Ref, key_id, pod_token_claims


def _write_key(path: Path, key: object) -> str:
    pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    return str(path)


def test_claims_are_the_token_requests() -> None:
    claims = pod_token_claims(
        issuer="https://iss",
        audiences=["https://iss"],
        namespace="ns",
        service_account=Ref("app", "sa-uid"),
        pod=Ref("web", "pod-uid"),
        node=Ref("node-1", "node-uid"),
        now=1000,
        seconds=3600,
        jti="j",
    )
    assert claims == {
        "aud": ["https://iss"],
        "exp": 4600,
        "iat": 1000,
        "iss": "https://iss",
        "jti": "j",
        "kubernetes.io": {
            "namespace": "ns",
            "serviceaccount": {"name": "app", "uid": "sa-uid"},
            "pod": {"name": "web", "uid": "pod-uid"},
            "node": {"name": "node-1", "uid": "node-uid"},
        },
        "nbf": 1000,
        "sub": "system:serviceaccount:ns:app",
    }


def test_unbound_pod_names_no_node_and_a_missing_node_no_uid() -> None:
    common = dict(
        issuer="i",
        audiences=["i"],
        namespace="ns",
        service_account=Ref("default", "u"),
        pod=Ref("p", "pu"),
        now=0,
        seconds=600,
        jti="j",
    )
    assert "node" not in pod_token_claims(node=None, **common)["kubernetes.io"]  # type: ignore[arg-type]
    missing = pod_token_claims(node=Ref("gone", ""), **common)  # type: ignore[arg-type]
    assert missing["kubernetes.io"]["node"] == {"name": "gone"}


def test_key_id_is_unpadded_base64url_of_the_der_hash() -> None:
    kid = key_id(b"der")
    assert len(kid) == 43
    assert "=" not in kid
    assert base64.urlsafe_b64decode(kid + "=") == hashlib.sha256(b"der").digest()


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (ec.generate_private_key(ec.SECP384R1()), "ES384"),
    ],
)
def test_signed_token_verifies_with_the_public_key(
    tmp_path: Path, key: object, algorithm: str
) -> None:
    signer = TokenSigner(_write_key(tmp_path / "sa.key", key), "https://iss")
    token = signer.pod_token("ns", Ref("default", "u"), Ref("p", "pu"), None, 600, "")
    header = jwt.get_unverified_header(token)
    assert header == {"alg": algorithm, "kid": signer.kid}  # no "typ", as the API server's
    claims = jwt.decode(
        token,
        key.public_key(),  # type: ignore[attr-defined]
        algorithms=[algorithm],
        audience="https://iss",  # the issuer: the API server's default audience
        issuer="https://iss",
    )
    assert claims["exp"] - claims["iat"] == 600
    other = signer.pod_token("ns", Ref("default", "u"), Ref("p", "pu"), None, 600, "vault")
    assert jwt.decode(other, options={"verify_signature": False})["aud"] == ["vault"]


def test_a_key_that_cannot_sign_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match=r"--token-signing-key=.*missing"):
        TokenSigner(str(tmp_path / "missing"), "i")
    path = _write_key(tmp_path / "ed.key", ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(SigningKeyError, match="an RSA or EC"):
        TokenSigner(path, "i")


def test_bound_status_is_what_a_binding_writes() -> None:
    before = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
    }
    after = bound_status(before)
    assert after == {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    assert bound_status(None)["conditions"] == [{"type": "PodScheduled", "status": "True"}]


@pytest.mark.parametrize(
    ("method", "target", "kind"),
    [
        ("POST", "/api/v1/namespaces/a/pods/p/binding", "POST pods/binding"),
        ("PATCH", "/api/v1/namespaces/a/pods/p/status", "PATCH pods/status"),
        ("POST", "/api/v1/namespaces/a/serviceaccounts/sa/token", "POST serviceaccounts/token"),
        ("GET", "/api/v1/pods?watch=true&resourceVersion=1", "WATCH pods"),
        ("POST", "/apis/events.k8s.io/v1/namespaces/a/events", "POST events"),
        ("GET", "/api/v1/namespaces/x", "GET namespaces"),
        ("GET", "/readyz", "GET /readyz"),
    ],
)
def test_request_kind(method: str, target: str, kind: str) -> None:
    assert request_kind(method, target) == kind
