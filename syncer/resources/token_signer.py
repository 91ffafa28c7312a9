"""Pod tokens signed by the syncer with the virtual API server's own ServiceAccount key.

A TokenRequest per pod was one of the four requests a synced pod cost the vcluster's API server,
and sat in every pod's start (the host kubelet waits for the token Secret). The syncer sits
beside that API server on every host and reads the same key file, so it writes what the
TokenRequest would — same issuer, audiences, ``kid`` and claims (translate/sa_tokens.py) — and
the API server accepts it as its own (a TokenReview of it is the test). The ServiceAccount's and
the node's uids come from informers; a lookup only when the cache has not seen them yet.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..translate.sa_tokens import Ref, key_id, pod_token_claims

#: The JWS algorithm the API server signs with, per key (serviceaccount/jwt.go).
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class SigningKeyError(ValueError):
    """The signing key file cannot be used (named in the message)."""


class TokenSigner:
    def __init__(self, key_file: str, issuer: str, audiences: tuple[str, ...] = ()) -> None:
        try:
            key = serialization.load_pem_private_key(Path(key_file).read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise SigningKeyError(f"--token-signing-key={key_file}: {exc}") from exc
        if isinstance(key, rsa.RSAPrivateKey):
            self.algorithm = "RS256"
        elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGORITHMS:
            self.algorithm = _EC_ALGORITHMS[key.curve.name]
        else:
            raise SigningKeyError(
                f"--token-signing-key={key_file}: an RSA or EC (P-256/384/521) key is accepted"
            )
        self._key: Any = key
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = key_id(der)
        self.issuer = issuer
        self.audiences = list(audiences) or [issuer]  # the API server's default --api-audiences

    def pod_token(
        self,
        namespace: str,
        service_account: Ref,
        pod: Ref,
        node: Ref | None,
        seconds: int,
        audience: str = "",
    ) -> str:
        claims = pod_token_claims(
            issuer=self.issuer,
            audiences=[audience] if audience else self.audiences,
            namespace=namespace,
            service_account=service_account,
            pod=pod,
            node=node,
            now=int(time.time()),
            seconds=seconds,
            jti=str(uuid.uuid4()),
        )
        # The API server's header has no "typ".
        return jwt.encode(claims, self._key, self.algorithm, headers={"kid": self.kid, "typ": None})
