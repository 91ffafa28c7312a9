"""Pod tokens the syncer signs itself (--token-signing-key, on in the local runtime and the
chart) against a real virtual API server: accepted as its own, with the claims its TokenRequest
writes for the same pod."""

from __future__ import annotations

import base64
import urllib.request
from typing import Any

import jwt
from kubernetes import client, config
from syncer_helpers import bare_pod, wait_for

from pytest_vcluster.hosts.local_vcluster import LocalVCluster
from syncer.translate.names import host_name

# Differ token to token: issued at, expiry and the token's own id.
PER_TOKEN = ("iat", "nbf", "exp", "jti")


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.get_unverified_header(token), {k: v for k, v in claims.items() if k not in PER_TOKEN}


def test_signed_token_is_the_api_servers_own(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    vcore.create_namespaced_pod("team-a", bare_pod("signed"))
    secret_name = host_name("signed", "team-a", "sync") + "-sa-token"

    def token() -> str | None:
        try:
            s = hcore.read_namespaced_secret(secret_name, vc.host_namespace)
        except client.ApiException:
            return None
        return base64.b64decode(s.data["token"]).decode()

    signed = wait_for(token, what="the pod's token Secret")
    # Signed by the syncer: it sent the virtual API server no TokenRequest.
    metrics = urllib.request.urlopen(f"http://{vc.syncer_health}/metrics", timeout=10).read()
    assert b'kind="POST pods/binding"' in metrics
    assert b"serviceaccounts/token" not in metrics
    pod = vcore.read_namespaced_pod("signed", "team-a")
    assert pod.spec.node_name  # bound before its token was written
    # What the API server's own TokenRequest gives for the same pod, same lifetime.
    lifetime = jwt.decode(signed, options={"verify_signature": False})
    requested = vcore.create_namespaced_service_account_token(
        "default",
        "team-a",
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=lifetime["exp"] - lifetime["iat"],
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name="signed", uid=pod.metadata.uid
                ),
            )
        ),
    ).status.token
    assert _unverified(signed) == _unverified(requested)
    assert _unverified(signed)[1]["kubernetes.io"]["node"]["name"] == pod.spec.node_name
    auth = client.AuthenticationV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))
    review = auth.create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=signed))
    ).status
    assert review.authenticated is True, review.error
    assert review.user.username == "system:serviceaccount:team-a:default"
    extra = review.user.extra
    assert extra["authentication.kubernetes.io/pod-name"] == ["signed"]
    assert extra["authentication.kubernetes.io/pod-uid"] == [pod.metadata.uid]
    assert extra["authentication.kubernetes.io/node-name"] == [pod.spec.node_name]
    node = vcore.read_node(pod.spec.node_name)
    assert extra["authentication.kubernetes.io/node-uid"] == [node.metadata.uid]
    # A token naming a pod that is gone is refused: the API server checks the claims' pod.
    vcore.delete_namespaced_pod("signed", "team-a", grace_period_seconds=0)
    wait_for(
        lambda: (
            not auth.create_token_review(
                client.V1TokenReview(spec=client.V1TokenReviewSpec(token=signed))
            ).status.authenticated
        ),
        what="the deleted pod's token refused",
    )
