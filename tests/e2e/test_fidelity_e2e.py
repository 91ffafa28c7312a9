"""What the conformance suite found a vcluster on kind did differently from its host, each
checked on real containers: tokens that name their node, projected token sources, RuntimeClasses,
and a NodePort reached on the node's address.

    pytest -m e2e tests/e2e/test_fidelity_e2e.py -s
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster

from .manifests import pod as _pod

pytestmark = pytest.mark.e2e

HANDLER = "test-handler"  # configured in the node image's containerd, as in kind's


@pytest.fixture(scope="module")
def host_runtime_class(kind_host: KindHost) -> Iterator[str]:
    """The host admin's offer: a RuntimeClass named after its handler."""
    from kubernetes import config

    api = client.NodeV1Api(config.new_client_from_config(str(kind_host.kubeconfig_path)))
    body = {"metadata": {"name": HANDLER}, "handler": HANDLER}
    try:
        api.create_runtime_class(body)
        made = True
    except ApiException as exc:
        if exc.status != 409:
            raise
        made = False
    yield HANDLER
    if made:
        api.delete_runtime_class(HANDLER)


@pytest.fixture(scope="module")
def vc(kind_host: KindHost, vcluster_images: dict[str, str], app_image: str) -> Iterator[VCluster]:
    kind_host.load_images([app_image])
    vc = VCluster(kind_host.info(), "fid", images=vcluster_images, timeout=180, progress=print)
    vc.create()
    try:
        yield vc
    finally:
        vc.delete()


@pytest.fixture(scope="module")
def core(vc: VCluster) -> client.CoreV1Api:
    return client.CoreV1Api(vc.api_client)


@pytest.fixture(scope="module")
def host_core(vc: VCluster) -> client.CoreV1Api:
    return client.CoreV1Api(vc.host_api_client())


def _host_pod(vc: VCluster, host_core: client.CoreV1Api, name: str) -> Any:
    return host_core.read_namespaced_pod(vc.host_name(name), vc.host_namespace)


def _review(vc: VCluster, token: str, audiences: list[str] | None = None) -> Any:
    spec: dict[str, Any] = {"token": token}
    if audiences:
        spec["audiences"] = audiences
    api = client.AuthenticationV1Api(vc.api_client)
    return api.create_token_review({"spec": spec}).status


def test_the_mounted_token_names_the_pods_node(
    vc: VCluster, core: client.CoreV1Api, app_image: str
) -> None:
    """As the conformance spec "ServiceAccounts should mount an API token into pods" checks."""
    core.create_namespaced_service_account("default", {"metadata": {"name": "mount-test"}})
    vc.apply(_pod("tok", app_image, serviceAccountName="mount-test"))
    vc.wait_for("Pod", "tok", "Ready", timeout=120)
    pod = core.read_namespaced_pod("tok", "default")
    node = core.read_node(pod.spec.node_name)
    token = vc.kubectl(
        "exec", "tok", "--", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ).stdout
    review = _review(vc, token)
    assert review.authenticated, review.error
    assert review.user.username == "system:serviceaccount:default:mount-test"
    extra = review.user.extra
    assert extra["authentication.kubernetes.io/pod-name"] == ["tok"]
    assert extra["authentication.kubernetes.io/pod-uid"] == [pod.metadata.uid]
    assert extra["authentication.kubernetes.io/node-name"] == [pod.spec.node_name]
    assert extra["authentication.kubernetes.io/node-uid"] == [node.metadata.uid]


def test_projected_token_sources_are_virtual_tokens_for_their_audience(
    vc: VCluster, core: client.CoreV1Api, host_core: client.CoreV1Api, app_image: str
) -> None:
    volume = {
        "name": "vault",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"audience": "vault", "path": "token"}},
                {"serviceAccountToken": {"expirationSeconds": 3600, "path": "api/token"}},
            ]
        },
    }
    mount = {"name": "vault", "mountPath": "/vault", "readOnly": True}
    vc.apply(_pod("proj", app_image, volumes=[volume], container={"volumeMounts": [mount]}))
    vc.wait_for("Pod", "proj", "Ready", timeout=120)
    vault = vc.kubectl("exec", "proj", "--", "cat", "/vault/token").stdout
    api = vc.kubectl("exec", "proj", "--", "cat", "/vault/api/token").stdout
    for_vault = _review(vc, vault, ["vault"])
    assert for_vault.authenticated, for_vault.error
    assert for_vault.audiences == ["vault"]
    assert for_vault.user.username == "system:serviceaccount:default:default"
    assert not _review(vc, vault).authenticated  # not a token for the API server
    assert _review(vc, api).authenticated
    # The host kubelet minted nothing: the host pod mounts Secret items only.
    host_spec = _host_pod(vc, host_core, "proj").spec.to_dict()
    assert "service_account_token': {" not in json.dumps(host_spec, default=str)
    sources = next(v for v in host_spec["volumes"] if v["name"] == "vault")["projected"]["sources"]
    assert all(s["secret"] and not s["service_account_token"] for s in sources)


def test_runtime_class_runs_on_the_host_class_of_its_handler(
    vc: VCluster,
    core: client.CoreV1Api,
    host_core: client.CoreV1Api,
    host_runtime_class: str,
    app_image: str,
) -> None:
    node = client.NodeV1Api(vc.api_client)
    node.create_runtime_class(
        {
            "metadata": {"name": "sandboxed"},
            "handler": host_runtime_class,
            "overhead": {"podFixed": {"cpu": "10m"}},
        }
    )
    node.create_runtime_class({"metadata": {"name": "nowhere"}, "handler": "no-such-handler"})
    vc.apply(_pod("rc", app_image, runtimeClassName="sandboxed"))
    vc.wait_for("Pod", "rc", "Ready", timeout=120)
    assert core.read_namespaced_pod("rc", "default").spec.overhead == {"cpu": "10m"}
    assert _host_pod(vc, host_core, "rc").spec.runtime_class_name == host_runtime_class
    # A handler the host offers no class for: the host's refusal, on the virtual pod.
    vc.apply(_pod("rc-missing", app_image, runtimeClassName="nowhere"))
    deadline = time.monotonic() + 60
    message = ""
    while time.monotonic() < deadline and "no-such-handler" not in message:
        conditions = core.read_namespaced_pod("rc-missing", "default").status.conditions or []
        message = " ".join(c.message or "" for c in conditions)
        time.sleep(0.5)
    assert 'RuntimeClass "no-such-handler" not found' in message, message


def test_node_port_answers_on_the_nodes_internal_ip(
    vc: VCluster, core: client.CoreV1Api, host_core: client.CoreV1Api, app_image: str
) -> None:
    web = "mkdir -p /w && echo on-the-node > /w/index.html && exec httpd -f -p 8080 -h /w"
    vc.apply(
        [
            _pod("np-web", app_image, web),
            _pod("np-client", app_image),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "np"},
                "spec": {
                    "type": "NodePort",
                    "selector": {"app": "np-web"},
                    "ports": [{"port": 80, "targetPort": 8080}],
                },
            },
        ]
    )
    for pod in ("np-web", "np-client"):
        vc.wait_for("Pod", pod, "Ready", timeout=120)
    node_name = core.read_namespaced_pod("np-client", "default").spec.node_name
    shown = {a.type: a.address for a in core.read_node(node_name).status.addresses}
    real = {a.type: a.address for a in host_core.read_node(node_name).status.addresses}
    assert shown["InternalIP"] == real["InternalIP"]
    node_port = core.read_namespaced_service("np", "default").spec.ports[0].node_port
    # busybox's static wget crashes without NSS libraries: plain HTTP over nc.
    request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {shown['InternalIP']} {node_port}"
    deadline = time.monotonic() + 60
    while True:
        got = vc.kubectl("exec", "np-client", "--", "sh", "-c", request, check=False)
        if "on-the-node" in got.stdout or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert got.stdout.strip().splitlines()[-1:] == ["on-the-node"], got.stderr


def test_in_place_resize_reaches_the_host_pod(
    vc: VCluster, core: client.CoreV1Api, host_core: client.CoreV1Api, app_image: str
) -> None:
    small = {"requests": {"cpu": "50m"}, "limits": {"cpu": "100m"}}
    big = {"requests": {"cpu": "150m"}, "limits": {"cpu": "200m"}}
    vc.apply(_pod("rs", app_image, container={"resources": small}))
    vc.wait_for("Pod", "rs", "Ready", timeout=120)
    patch = {"spec": {"containers": [{"name": "c", "resources": big}]}}
    vc.kubectl("patch", "pod", "rs", "--subresource=resize", "-p", json.dumps(patch))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        host = _host_pod(vc, host_core, "rs")
        status = core.read_namespaced_pod("rs", "default").status
        shown = (status.container_statuses or [None])[0]
        if (
            host.spec.containers[0].resources.limits == {"cpu": "200m"}
            and shown is not None
            and shown.resources is not None
            and (shown.resources.limits or {}).get("cpu") == "200m"
        ):
            break
        time.sleep(0.5)
    assert host.spec.containers[0].resources.requests == {"cpu": "150m"}
    assert shown is not None
    assert shown.resources is not None
    assert shown.resources.limits == {"cpu": "200m"}  # the kubelet resized it, status came back
    assert shown.restart_count == 0  # in place


SIGNER = "e2e.pytest-vcluster.io/test"


def _issue(vc: VCluster, request: dict[str, Any]) -> str:
    """Sign one PodCertificateRequest as a signer would (a CA made here); the chain's PEM."""
    import base64
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    csr = x509.load_der_x509_csr(base64.b64decode(request["spec"]["stubPKCS10Request"]))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pytest-vcluster test signer")])
    start = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_name)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(hours=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://test/pc")]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = leaf.public_bytes(serialization.Encoding.PEM).decode()

    def stamp(t: datetime.datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    status = {
        "status": {
            "conditions": [
                {
                    "type": "Issued",
                    "status": "True",
                    "reason": "Issued",
                    "message": "issued by the test",
                    "lastTransitionTime": stamp(start),
                }
            ],
            "certificateChain": chain,
            "notBefore": stamp(start),
            "notAfter": stamp(start + datetime.timedelta(hours=2)),
            "beginRefreshAt": stamp(start + datetime.timedelta(hours=1)),
        }
    }
    name = request["metadata"]["name"]
    vc.kubectl(
        "patch", "podcertificaterequest", name, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    return chain


def test_pod_certificate_is_issued_by_the_vclusters_signer(
    vc: VCluster, host_core: client.CoreV1Api, app_image: str
) -> None:
    """A projected podCertificate source: the request is made in the vcluster (for the
    virtual pod and node), its signer answers there, and the pod mounts key and chain."""
    source = {
        "podCertificate": {
            "signerName": SIGNER,
            "keyType": "ECDSAP256",
            "credentialBundlePath": "bundle.pem",
            "certificateChainPath": "chain.pem",
        }
    }
    volume = {"name": "tls", "projected": {"sources": [source]}}
    mount = {"name": "tls", "mountPath": "/tls", "readOnly": True}
    vc.apply(_pod("pc", app_image, volumes=[volume], container={"volumeMounts": [mount]}))
    deadline = time.monotonic() + 60
    requests: list[dict[str, Any]] = []
    while not requests and time.monotonic() < deadline:
        listed = json.loads(vc.kubectl("get", "podcertificaterequests", "-o", "json").stdout)
        requests = [r for r in listed["items"] if r["spec"]["podName"] == "pc"]
        time.sleep(0.5)
    assert len(requests) == 1, "no PodCertificateRequest for the pod in the vcluster"
    spec = requests[0]["spec"]
    pod = client.CoreV1Api(vc.api_client).read_namespaced_pod("pc", "default")
    assert spec["podUID"] == pod.metadata.uid
    assert spec["nodeName"] == pod.spec.node_name
    assert spec["signerName"] == SIGNER
    chain = _issue(vc, requests[0])
    vc.wait_for("Pod", "pc", "Ready", timeout=180)
    assert vc.kubectl("exec", "pc", "--", "cat", "/tls/chain.pem").stdout == chain
    bundle = vc.kubectl("exec", "pc", "--", "cat", "/tls/bundle.pem").stdout
    assert bundle.startswith("-----BEGIN PRIVATE KEY-----")
    assert bundle.endswith(chain)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(bundle[: -len(chain)].encode(), None)
    leaf = x509.load_pem_x509_certificate(chain.encode())
    assert key.public_key() == leaf.public_key()  # the key the request was made with
    host_spec = _host_pod(vc, host_core, "pc").spec.to_dict()
    assert "pod_certificate': {" not in json.dumps(host_spec, default=str)
