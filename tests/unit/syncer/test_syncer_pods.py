"""Virtual pod -> host pod (syncer.translate.pods): references, tokens, env, DNS, metadata."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from pod_helpers import CTX, NS, SA_VOLUME, container, pod

from syncer.constants import LABEL_PREFIX, OBJECT_NAME, OBJECT_NAMESPACE, OBJECT_UID
from syncer.translate.names import host_name, translate_labels
from syncer.translate.pods import (
    SA_MOUNT_PATH,
    PodContext,
    TokenSpec,
    token_specs,
    translate_pod,
)


def ref(name: str) -> str:
    return host_name(name, NS, "vc")


def at(obj: Any, *path: str | int) -> Any:
    for step in path:
        obj = obj[step]
    return obj


REFERENCES = [
    (
        {"volumes": [{"name": "v", "configMap": {"name": "cm"}}]},
        ("volumes", 0, "configMap", "name"),
    ),
    (
        {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]},
        ("volumes", 0, "secret", "secretName"),
    ),
    (
        {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
        ("volumes", 0, "persistentVolumeClaim", "claimName"),
    ),
    (
        {"volumes": [{"name": "v", "projected": {"sources": [{"configMap": {"name": "cm"}}]}}]},
        ("volumes", 0, "projected", "sources", 0, "configMap", "name"),
    ),
    (
        {"volumes": [{"name": "v", "projected": {"sources": [{"secret": {"name": "s"}}]}}]},
        ("volumes", 0, "projected", "sources", 0, "secret", "name"),
    ),
    (
        {"volumes": [{"name": "v", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "s"}}}]},
        ("volumes", 0, "csi", "nodePublishSecretRef", "name"),
    ),
    (
        {
            "containers": [
                container(
                    env=[
                        {"name": "E", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}
                    ]
                )
            ]
        },
        ("containers", 0, "env", -1, "valueFrom", "configMapKeyRef", "name"),
    ),
    (
        {
            "initContainers": [
                container(
                    env=[{"name": "E", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
                )
            ]
        },
        ("initContainers", 0, "env", -1, "valueFrom", "secretKeyRef", "name"),
    ),
    (
        {"containers": [container(envFrom=[{"configMapRef": {"name": "cm"}}])]},
        ("containers", 0, "envFrom", 0, "configMapRef", "name"),
    ),
    (
        {"containers": [container(envFrom=[{"prefix": "P_", "secretRef": {"name": "s"}}])]},
        ("containers", 0, "envFrom", 0, "secretRef", "name"),
    ),
    ({"imagePullSecrets": [{"name": "regcred"}]}, ("imagePullSecrets", 0, "name")),
]


@pytest.mark.parametrize(("spec", "path"), REFERENCES)
def test_references_are_translated(spec: dict[str, Any], path: tuple[str | int, ...]) -> None:
    virtual = pod(**spec)
    before = copy.deepcopy(virtual)
    host = translate_pod(virtual, CTX)
    assert virtual == before  # pure: the input is untouched
    assert at(host["spec"], *path) == ref(at(virtual["spec"], *path))


def test_service_account_volume_is_replaced_by_host_secret() -> None:
    host = translate_pod(pod(), CTX)
    spec = host["spec"]
    assert spec["volumes"] == [
        {
            "name": "kube-api-access-abcde",
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {
                        "secret": {
                            "name": CTX.service_account_secret,  # not translated again
                            "items": [
                                {"key": "token", "path": "token"},
                                {"key": "ca.crt", "path": "ca.crt"},
                                {"key": "namespace", "path": "namespace"},
                            ],
                        }
                    }
                ],
            },
        }
    ]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "kube-api-access-abcde", "mountPath": SA_MOUNT_PATH}
    ]
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec
    assert "serviceAccount" not in spec


def test_any_volume_mounted_at_the_token_path_is_replaced() -> None:
    virtual = pod(
        volumes=[{"name": "tok", "secret": {"secretName": "my-token"}}],
        containers=[container(volumeMounts=[{"name": "tok", "mountPath": SA_MOUNT_PATH + "/"}])],
    )
    (volume,) = translate_pod(virtual, CTX)["spec"]["volumes"]
    assert volume["name"] == "tok"
    assert "secret" not in volume
    assert volume["projected"]["sources"][0]["secret"]["name"] == CTX.service_account_secret


def test_other_token_sources_come_from_the_token_secret_not_the_host_kubelet() -> None:
    vault = {
        "name": "vault",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"audience": "vault", "path": "t"}},
                {"configMap": {"name": "cm"}},
                {"serviceAccountToken": {"expirationSeconds": 7200, "path": "api/t"}},
            ]
        },
    }
    virtual = pod(volumes=[copy.deepcopy(SA_VOLUME), vault])
    host = translate_pod(virtual, CTX)
    secret = CTX.service_account_secret
    assert host["spec"]["volumes"][1]["projected"]["sources"] == [
        {"secret": {"name": secret, "items": [{"key": "token.vault.0", "path": "t"}]}},
        {"configMap": {"name": ref("cm")}},
        {"secret": {"name": secret, "items": [{"key": "token.vault.2", "path": "api/t"}]}},
    ]
    assert "serviceAccountToken" not in json.dumps(host["spec"])
    # One token per source (audience, lifetime; at least the API server's 10 min minimum).
    assert token_specs(virtual, 3600) == [
        TokenSpec("token", "", 3600),
        TokenSpec("token.vault.0", "vault", 3600),
        TokenSpec("token.vault.2", "", 7200),
    ]
    short = {"name": "s", "projected": {"sources": [_token(60)]}}
    bare = pod(volumes=[short], containers=[container()])
    assert token_specs(bare, 3600) == [TokenSpec("token.s.0", "", 600)]


def _token(seconds: int) -> dict[str, Any]:
    return {"serviceAccountToken": {"expirationSeconds": seconds, "path": "x"}}


def test_pod_without_token_volumes_needs_no_token() -> None:
    assert token_specs(pod(volumes=[], containers=[container()]), 3600) == []


def test_pod_without_token_volume_gets_none() -> None:
    host = translate_pod(pod(volumes=[], containers=[container()]), CTX)
    assert host["spec"]["volumes"] == []


def env_of(host: dict[str, Any], kind: str = "containers") -> dict[str, str]:
    return {e["name"]: e.get("value") for e in host["spec"][kind][0]["env"]}


def test_api_server_env_replaces_user_values_and_comes_first() -> None:
    user_env = [
        {"name": "KUBERNETES_SERVICE_HOST", "value": "evil"},
        {"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST)"},
    ]
    host = translate_pod(
        pod(containers=[container(env=user_env)], initContainers=[container()]), CTX
    )
    for kind in ("containers", "initContainers"):
        env = env_of(host, kind)
        assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.10"
        assert env["KUBERNETES_SERVICE_PORT"] == "443"
        assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.10:443"
    names = [e["name"] for e in host["spec"]["containers"][0]["env"]]
    assert names.count("KUBERNETES_SERVICE_HOST") == 1
    assert names[-1] == "URL"  # after the variable it expands
    assert host["spec"]["enableServiceLinks"] is False


def test_api_server_env_for_ipv6() -> None:
    ctx = PodContext(**{**CTX.__dict__, "api_host": "fd00::10", "api_port": 6443})
    env = env_of(translate_pod(pod(), ctx))
    assert env["KUBERNETES_PORT"] == "tcp://[fd00::10]:6443"
    assert env["KUBERNETES_PORT_6443_TCP_ADDR"] == "fd00::10"


VIRTUAL_DNS = {
    "nameservers": ["10.96.0.53"],
    "searches": [f"{NS}.svc.cluster.local", "svc.cluster.local", "cluster.local"],
    "options": [{"name": "ndots", "value": "5"}],
}


@pytest.mark.parametrize(
    ("spec", "policy", "config"),
    [
        ({"dnsPolicy": "ClusterFirst"}, "None", VIRTUAL_DNS),
        ({"dnsPolicy": None}, "None", VIRTUAL_DNS),  # missing
        ({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": True}, "None", VIRTUAL_DNS),
        ({"dnsPolicy": "ClusterFirst", "hostNetwork": True}, "ClusterFirst", None),
        ({"dnsPolicy": "Default"}, "Default", None),
        (
            {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"]}},
            "None",
            {"nameservers": ["1.1.1.1"]},
        ),
        (
            {
                "dnsConfig": {
                    "nameservers": ["1.1.1.1", "10.96.0.53"],
                    "searches": ["example.com"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
                }
            },
            "None",
            {
                "nameservers": ["10.96.0.53", "1.1.1.1"],
                "searches": [*VIRTUAL_DNS["searches"], "example.com"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            },
        ),
    ],
)
def test_dns(spec: dict[str, Any], policy: str, config: dict[str, Any] | None) -> None:
    virtual = pod(**spec)
    if spec.get("dnsPolicy", "") is None:
        del virtual["spec"]["dnsPolicy"]
    host = translate_pod(virtual, CTX)["spec"]
    assert host["dnsPolicy"] == policy
    assert host.get("dnsConfig") == config


def test_dns_uses_cluster_domain() -> None:
    ctx = PodContext(**{**CTX.__dict__, "cluster_domain": "corp.local"})
    searches = translate_pod(pod(), ctx)["spec"]["dnsConfig"]["searches"]
    assert searches == [f"{NS}.svc.corp.local", "svc.corp.local", "corp.local"]


@pytest.mark.parametrize(
    ("name", "spec", "hostname"),
    [
        ("web-0", {}, "web-0"),
        ("web-0", {"hostname": "custom"}, "custom"),
        ("w" * 70, {}, "w" * 63),
        ("w" * 62 + "-x", {}, "w" * 62),  # kubelet-style trim of the cut
        ("web.v1", {}, None),  # not a DNS label: left to the host kubelet
    ],
)
def test_hostname_defaults_to_virtual_name(
    name: str, spec: dict[str, Any], hostname: str | None
) -> None:
    assert translate_pod(pod(name, **spec), CTX)["spec"].get("hostname") == hostname


def test_host_metadata_of_pod() -> None:
    meta = translate_pod(pod(), CTX)["metadata"]
    assert meta["name"] == ref("web-0")
    assert meta["namespace"] == "host-ns"
    assert meta["labels"] == translate_labels({"app": "web"}, NS, "vc")


def resolve(host_pod: dict[str, Any], field_path: str) -> Any:
    """What the host kubelet yields for a downward API field path."""
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", field_path)
    if match:
        return host_pod["metadata"][match[1]].get(match[2])
    return at(host_pod, *field_path.split("."))


@pytest.mark.parametrize(
    ("field_path", "virtual_value"),
    [
        ("metadata.name", "web-0"),
        ("metadata.namespace", NS),
        ("metadata.uid", "pod-uid"),
        ("metadata.labels['app']", "web"),
    ],
)
def test_downward_api_yields_virtual_values(field_path: str, virtual_value: str) -> None:
    env = [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": field_path}}}]
    item = {"path": "v", "fieldRef": {"fieldPath": field_path}}
    volumes = [
        copy.deepcopy(SA_VOLUME),
        {"name": "info", "downwardAPI": {"items": [copy.deepcopy(item)]}},
        {"name": "p", "projected": {"sources": [{"downwardAPI": {"items": [item]}}]}},
    ]
    host = translate_pod(pod(containers=[container(env=env)], volumes=volumes), CTX)
    paths = [
        host["spec"]["containers"][0]["env"][-1]["valueFrom"]["fieldRef"]["fieldPath"],
        host["spec"]["volumes"][1]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
        at(host["spec"]["volumes"][2], "projected", "sources", 0, "downwardAPI", "items", 0)[
            "fieldRef"
        ]["fieldPath"],
    ]
    for path in paths:
        assert resolve(host, path) == virtual_value


def test_translation_is_deterministic() -> None:
    virtual = pod(volumes=[copy.deepcopy(SA_VOLUME), {"name": "v", "configMap": {"name": "cm"}}])
    assert translate_pod(virtual, CTX) == translate_pod(copy.deepcopy(virtual), CTX)
    assert LABEL_PREFIX in next(iter(translate_pod(virtual, CTX)["metadata"]["labels"]))
    annotations = translate_pod(virtual, CTX)["metadata"]["annotations"]
    assert (annotations[OBJECT_NAME], annotations[OBJECT_NAMESPACE]) == ("web-0", NS)
    assert annotations[OBJECT_UID] == "pod-uid"
