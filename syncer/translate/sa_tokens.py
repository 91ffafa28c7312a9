"""The claims of a pod-bound ServiceAccount token, as the API server's TokenRequest writes them
(``pkg/serviceaccount/claims.go``: ``Claims``, with ``ServiceAccountTokenJTI`` and
``ServiceAccountTokenPodNodeInfo`` on, as they are by default since 1.32), and the key id it puts
in the header (``keyIDFromPublicKey``). Pure: the signer (resources/token_signer.py) adds the
clock, a fresh JTI and the signature.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ref:
    name: str
    uid: str


def key_id(public_key_der: bytes) -> str:
    """The ``kid`` header: unpadded base64url of SHA-256 over the PKIX DER public key."""
    return base64.urlsafe_b64encode(hashlib.sha256(public_key_der).digest()).rstrip(b"=").decode()


def pod_token_claims(
    *,
    issuer: str,
    audiences: list[str],
    namespace: str,
    service_account: Ref,
    pod: Ref,
    node: Ref | None,
    now: int,
    seconds: int,
    jti: str,
) -> dict[str, Any]:
    """A token for ``service_account`` bound to ``pod`` (and naming its ``node`` once bound),
    valid ``seconds`` from ``now`` (Unix seconds)."""
    kube: dict[str, Any] = {
        "namespace": namespace,
        "serviceaccount": {"name": service_account.name, "uid": service_account.uid},
        "pod": {"name": pod.name, "uid": pod.uid},
    }
    if node is not None:
        # A node the API server cannot find is named without a uid (token.go does the same).
        kube["node"] = {"name": node.name, **({"uid": node.uid} if node.uid else {})}
    return {
        "aud": audiences,
        "exp": now + seconds,
        "iat": now,
        "iss": issuer,
        "jti": jti,
        "kubernetes.io": kube,
        "nbf": now,
        "sub": f"system:serviceaccount:{namespace}:{service_account.name}",
    }
