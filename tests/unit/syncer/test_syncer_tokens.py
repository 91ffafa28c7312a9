"""When and what the syncer writes into a pod's token Secret (fakes for both API servers; the
real token contents are checked on kind: tests/e2e/test_fidelity_e2e.py)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncer.resources.tokens import TOKEN_REFRESH, Tokens
from syncer.settings import parse

BASE = ["--name=vc", "--host-namespace=vcluster-vc", "--virtual-kubeconfig=k"]


class Recorder:
    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.got: list[str] = []

    def get(self, path: str) -> dict[str, Any]:
        self.got.append(path)
        return {"metadata": {"uid": f"uid-of-{path.rsplit('/', 1)[1]}"}}

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append((path, body))
        audiences = body.get("spec", {}).get("audiences") or ["api"]
        return {"status": {"token": f"token-for-{audiences[0]}"}}


class FakeCache:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))


def _tokens(*args: str) -> tuple[Tokens, Recorder, Recorder, list[float]]:
    virtual, host, requeues = Recorder(), Recorder(), []
    queue = SimpleNamespace(add_after=lambda key, delay: requeues.append(delay))
    caches: dict[str, Any] = {}
    engine = SimpleNamespace(
        settings=parse([*BASE, *args]),
        virtual=virtual,
        host=host,
        queue=queue,
        host_ns_path=lambda api, plural: f"{api}/namespaces/vcluster-vc/{plural}",
        virtual_informers=caches,
        cache_virtual=lambda resource, path: caches.setdefault(resource, FakeCache()),
    )
    return Tokens(engine, lambda: b"CA"), virtual, host, requeues  # type: ignore[arg-type]


VPOD = {
    "metadata": {"name": "web", "namespace": "default", "uid": "vuid"},
    "spec": {
        "serviceAccountName": "app",
        "volumes": [
            {"name": "kube-api-access-x", "projected": {"sources": []}},
            {
                "name": "vault",
                "projected": {
                    "sources": [{"serviceAccountToken": {"audience": "vault", "path": "t"}}]
                },
            },
        ],
    },
}


def _hpod(node: str | None) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-x-default-x-vc", "uid": "huid"},
        "spec": {"nodeName": node} if node else {},
        "status": {},
    }


def test_tokens_wait_for_the_binding_then_carry_every_source() -> None:
    tokens, virtual, host, requeues = _tokens()
    tokens.created("web-x-default-x-vc")
    tokens.ensure(VPOD, _hpod(None))
    assert virtual.created == []  # not bound yet: a token now would not name the node
    assert host.created == []
    tokens.ensure(VPOD, _hpod("node-1"))
    assert [p for p, _ in virtual.created] == [
        "/api/v1/namespaces/default/serviceaccounts/app/token"
    ] * 2
    assert virtual.created[0][1]["spec"]["boundObjectRef"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web",
        "uid": "vuid",
    }
    assert "audiences" not in virtual.created[0][1]["spec"]
    assert virtual.created[1][1]["spec"]["audiences"] == ["vault"]
    ((path, secret),) = host.created
    assert path == "/api/v1/namespaces/vcluster-vc/secrets"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "token": "token-for-api",
        "token.vault.0": "token-for-vault",
        "ca.crt": "CA",
        "namespace": "default",
    }
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "huid"
    due = float(secret["metadata"]["annotations"][TOKEN_REFRESH])
    assert abs(due - (time.time() + 0.8 * 3600)) < 5
    assert requeues
    assert abs(requeues[-1] - 0.8 * 3600) < 5
    tokens.ensure(VPOD, _hpod("node-1"))  # not due again yet
    assert len(host.created) == 1


def test_early_tokens_are_written_before_the_binding() -> None:
    tokens, virtual, host, _ = _tokens("--early-tokens")
    tokens.created("web-x-default-x-vc")
    tokens.ensure(VPOD, _hpod(None))
    assert len(virtual.created) == 2
    assert len(host.created) == 1


def test_a_pod_without_token_volumes_gets_no_secret() -> None:
    tokens, virtual, host, _ = _tokens()
    bare = {"metadata": VPOD["metadata"], "spec": {"automountServiceAccountToken": False}}
    tokens.created("web-x-default-x-vc")
    tokens.ensure(bare, _hpod("node-1"))
    assert virtual.created == []
    assert host.created == []


def test_signed_tokens_take_no_request_once_the_caches_have_seen_account_and_node(
    tmp_path: Path,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "sa.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tokens, virtual, host, _ = _tokens(f"--token-signing-key={path}")
    caches = tokens.engine.virtual_informers
    caches["serviceaccounts"].objects[("default", "app")] = {"metadata": {"uid": "sa-uid"}}
    caches["nodes"] = FakeCache()
    tokens.created("web-x-default-x-vc")
    tokens.ensure(VPOD, _hpod("node-1"))
    assert virtual.created == []  # no TokenRequest
    assert virtual.got == ["/api/v1/nodes/node-1"]  # the node not in the cache yet: looked up
    ((_, secret),) = host.created
    claims = jwt.decode(
        base64.b64decode(secret["data"]["token"]),
        key.public_key(),
        algorithms=["RS256"],
        audience="https://kubernetes.default.svc.cluster.local",
    )
    assert claims["kubernetes.io"] == {
        "namespace": "default",
        "serviceaccount": {"name": "app", "uid": "sa-uid"},
        "pod": {"name": "web", "uid": "vuid"},
        "node": {"name": "node-1", "uid": "uid-of-node-1"},
    }
    vault = jwt.decode(
        base64.b64decode(secret["data"]["token.vault.0"]),
        key.public_key(),
        algorithms=["RS256"],
        audience="vault",
    )
    assert vault["sub"] == "system:serviceaccount:default:app"
