"""The Helm chart's values: one test per value that changes what ``helm template`` renders."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import IMAGES, docs, render, values_for
from chart_helpers import containers as _containers
from chart_helpers import syncer_args as _syncer_args

from pytest_vcluster.hosts.incluster.chart import pod_security_level
from pytest_vcluster.naming import host_namespace_body


def test_persistence_uses_a_claim_deleted_with_the_release(
    helm: Path, pki_args: list[str], tmp_path: Path
) -> None:
    values = {
        "controlPlane": {
            "persistence": {"enabled": True, "size": "2Gi", "storageClass": "standard"}
        }
    }
    sts = docs(helm, pki_args, tmp_path, **values)["StatefulSet/vc1"]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Delete",
        "whenScaled": "Delete",
    }
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "standard"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    volumes = {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert "data" not in volumes  # the claim template provides it


def test_sync_toggles_become_syncer_flags(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    assert not [a for a in _syncer_args(docs(helm, pki_args, tmp_path)) if "sync" in a]
    values = {
        "sync": {
            "ingresses": {"enabled": False},
            "events": {"enabled": False},
            "allConfigMapsAndSecrets": True,
        }
    }
    args = _syncer_args(docs(helm, pki_args, tmp_path, **values))
    assert "--disable-sync-resources=events,ingresses" in args
    assert "--sync-all-configmaps-secrets" in args


def test_sync_flags_are_understood_by_the_syncer(
    helm: Path, pki_args: list[str], tmp_path: Path
) -> None:
    from syncer.settings import parse

    values = {
        "sync": {"ingresses": {"enabled": False}, "allConfigMapsAndSecrets": True},
        "isolation": {"podSecurityStandard": "privileged"},
    }
    settings = parse(_syncer_args(docs(helm, pki_args, tmp_path, **values)))
    assert "ingresses" not in settings.resources
    assert "pods" in settings.resources
    assert settings.sync_all_configs
    assert settings.allow_privileged
    assert settings.bootstrap_dir is None  # CoreDNS in the vcluster's pod (the default)
    assert settings.dns_host_service == "vc1-dns"
    assert settings.dns_endpoint == ("$(POD_IP)", 1053)
    pod_dns = parse(_syncer_args(docs(helm, pki_args, tmp_path, coredns={"embedded": False})))
    assert pod_dns.bootstrap_dir == "/bootstrap"
    assert pod_dns.dns_endpoint is None
    assert settings.api_service_host == "vc1.vcluster-vc1.svc"
    assert settings.api_endpoint is not None  # $(POD_IP):6443, the kubernetes Service's
    assert settings.allowed_endpoint_cidrs == ()
    assert not settings.allow_external_ips


def test_allowed_endpoint_cidrs_reach_the_syncer(
    helm: Path, pki_args: list[str], tmp_path: Path
) -> None:
    import ipaddress

    from syncer.settings import parse

    values = {
        "sync": {
            "endpoints": {"allowedCIDRs": ["192.0.2.0/24", "fd00::/64"]},
            "services": {"allowExternalIPs": True},
        }
    }
    settings = parse(_syncer_args(docs(helm, pki_args, tmp_path, **values)))
    assert settings.allow_external_ips
    assert settings.allowed_endpoint_cidrs == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("fd00::/64"),
    )


def test_privileged_pods_are_denied_unless_the_standard_is_privileged(
    helm: Path, pki_args: list[str], tmp_path: Path
) -> None:
    for level in ("baseline", "restricted"):
        values = {"isolation": {"podSecurityStandard": level}}
        assert "--allow-privileged" not in _syncer_args(docs(helm, pki_args, tmp_path, **values))
    values = {"isolation": {"podSecurityStandard": "privileged"}}
    assert "--allow-privileged" in _syncer_args(docs(helm, pki_args, tmp_path, **values))


def test_pod_security_standard_labels_the_namespace_the_plugin_creates(tmp_path: Path) -> None:
    values = {"isolation": {"podSecurityStandard": "restricted"}}
    body = host_namespace_body("vc1", {"run": "r"}, pod_security_level(values_for(**values)))
    labels = body["metadata"]["labels"]
    assert body["metadata"]["name"] == "vcluster-vc1"
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["app.kubernetes.io/managed-by"] == "pytest-vcluster"
    assert labels["run"] == "r"
    assert pod_security_level({}) == "baseline"


def test_vcluster_pods_pass_the_restricted_standard(
    helm: Path, pki_args: list[str], tmp_path: Path
) -> None:
    objs = docs(helm, pki_args, tmp_path)
    pod_dns = docs(helm, pki_args, tmp_path, coredns={"embedded": False})
    bootstrap = list(yaml.safe_load_all(pod_dns["ConfigMap/vc1-bootstrap"]["data"]["coredns.yaml"]))
    coredns = next(d for d in bootstrap if d["kind"] == "Pod")["spec"]
    pods = [
        objs["StatefulSet/vc1"]["spec"]["template"]["spec"],
        objs["Pod/vc1-test-api"]["spec"],
        coredns,
    ]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"]:
            ctx = c["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert not [p for p in c.get("ports") or [] if p["containerPort"] < 1024]


def test_resource_quota_and_limit_range(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    objs = docs(helm, pki_args, tmp_path)
    assert not [k for k in objs if k.startswith(("ResourceQuota", "LimitRange", "NetworkPolicy"))]
    values = {
        "isolation": {
            "resourceQuota": {"enabled": True, "quota": {"pods": "7"}},
            "limitRange": {"enabled": True},
        }
    }
    objs = docs(helm, pki_args, tmp_path, **values)
    hard = objs["ResourceQuota/vc1-quota"]["spec"]["hard"]
    assert hard["pods"] == "7"  # merged over the defaults, as helm merges maps
    assert hard["requests.cpu"] == "4"
    (limit,) = objs["LimitRange/vc1-limits"]["spec"]["limits"]
    assert limit["type"] == "Container"
    assert limit["defaultRequest"] == {"cpu": "10m", "memory": "32Mi"}
    assert limit["default"] == {"memory": "512Mi"}
    # the vcluster pod itself passes a quota on requests
    for c in _containers(objs).values():
        assert c["resources"]["requests"]["cpu"]
        assert c["resources"]["requests"]["memory"]


def test_network_policy(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    objs = docs(helm, pki_args, tmp_path, isolation={"networkPolicy": {"enabled": True}})
    ns_only = objs["NetworkPolicy/vc1-isolation"]["spec"]
    assert ns_only["podSelector"] == {}
    assert ns_only["ingress"] == [{"from": [{"podSelector": {}}]}]
    api = objs["NetworkPolicy/vc1-api"]["spec"]
    assert api["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "vc1"
    assert api["ingress"] == [{"ports": [{"port": 6443, "protocol": "TCP"}]}]
    egress = objs["NetworkPolicy/vc1-egress"]["spec"]
    assert egress["policyTypes"] == ["Egress"]
    own, dns, outside = egress["egress"]
    assert own == {"to": [{"podSelector": {}}]}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert {p["protocol"] for p in dns["ports"]} == {"UDP", "TCP"}
    assert outside["to"] == [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.0.0/16"]}},
        {"ipBlock": {"cidr": "::/0"}},
    ]


def test_network_policy_pod_cidrs_split_by_family(
    helm: Path, pki_args: list[str], tmp_path: Path
) -> None:
    cidrs = ["10.1.0.0/16", "10.2.0.0/16", "fd00:10:244::/56"]
    objs = docs(
        helm, pki_args, tmp_path, isolation={"networkPolicy": {"enabled": True, "podCIDRs": cidrs}}
    )
    outside = objs["NetworkPolicy/vc1-egress"]["spec"]["egress"][2]["to"]
    assert outside == [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": cidrs[:2]}},
        {"ipBlock": {"cidr": "::/0", "except": cidrs[2:]}},
    ]


def test_coredns_bootstrap_manifests(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    from syncer import bootstrap

    objs = docs(helm, pki_args, tmp_path, coredns={"replicas": 2, "embedded": False})
    d = tmp_path / "bootstrap"
    d.mkdir()
    (d / "coredns.yaml").write_text(objs["ConfigMap/vc1-bootstrap"]["data"]["coredns.yaml"])
    loaded = bootstrap.load(d, "10.96.0.10")
    kinds = {f"{o['kind']}/{o['metadata']['name']}": o for o in loaded}
    assert sorted(kinds) == [
        "ClusterRole/system:coredns",
        "ClusterRoleBinding/system:coredns",
        "ConfigMap/coredns",
        "Pod/coredns-0",
        "Pod/coredns-1",
        "Service/kube-dns",
        "ServiceAccount/coredns",
    ]
    svc = kinds["Service/kube-dns"]
    assert svc["metadata"]["namespace"] == "kube-system"
    assert {p["port"] for p in svc["spec"]["ports"]} == {53}
    # Bare pods (the syncer keeps them), one per replica, selected by the Service.
    assert kinds["Pod/coredns-1"]["metadata"]["labels"] == svc["spec"]["selector"]
    assert kinds["Pod/coredns-1"]["metadata"]["namespace"] == "kube-system"
    pod = kinds["Pod/coredns-0"]["spec"]
    assert pod["dnsPolicy"] == "None"
    assert pod["dnsConfig"]["nameservers"] == ["10.96.0.10"]
    assert pod["dnsConfig"]["searches"][0] == "vcluster-vc1.svc.cluster.local"
    assert pod["containers"][0]["image"] == "registry.k8s.io/coredns/coredns:v1.14.6"
    corefile = kinds["ConfigMap/coredns"]["data"]["Corefile"]
    assert "vcluster-vc1.svc.cluster.local:1053 {" in corefile
    assert "forward . 10.96.0.10" in corefile
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in corefile
    assert bootstrap.collection_path(svc) == "/api/v1/namespaces/kube-system/services"
    assert (
        bootstrap.collection_path(kinds["ClusterRole/system:coredns"])
        == "/apis/rbac.authorization.k8s.io/v1/clusterroles"
    )


def test_coredns_image_from_the_host_and_disabled(
    helm: Path, pki_args: list[str], tmp_path: Path
) -> None:
    values = values_for(
        coredns_image="registry.k8s.io/coredns/coredns:v1.12.0", coredns={"embedded": False}
    )
    proc = render(helm, pki_args, values, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'image: "registry.k8s.io/coredns/coredns:v1.12.0"' in proc.stdout
    objs = docs(helm, pki_args, tmp_path, coredns={"enabled": False})
    assert "ConfigMap/vc1-bootstrap" not in objs
    assert not [a for a in _syncer_args(objs) if a.startswith("--bootstrap-dir")]
    volumes = {v["name"] for v in objs["StatefulSet/vc1"]["spec"]["template"]["spec"]["volumes"]}
    assert "bootstrap" not in volumes


def test_helm_test_hook_checks_the_api_server(
    helm: Path, pki_args: list[str], tmp_path: Path
) -> None:
    pod = docs(helm, pki_args, tmp_path)["Pod/vc1-test-api"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "https://vc1.vcluster-vc1.svc:443" in script
    assert "/readyz" in script
    assert pod["spec"]["containers"][0]["image"] == IMAGES["syncer"]
    compile(script, "helm-test", "exec")  # valid Python


def test_service_values(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    objs = docs(helm, pki_args, tmp_path, service={"type": "NodePort", "port": 8443})
    svc = objs["Service/vc1"]["spec"]
    assert svc["type"] == "NodePort"
    assert svc["ports"][0]["port"] == 8443
    assert "--api-service-port=8443" in _syncer_args(objs)
    cfg = yaml.safe_load(base64.b64decode(objs["Secret/vc-vc1"]["data"]["config"]))
    assert cfg["clusters"][0]["cluster"]["server"] == "https://vc1.vcluster-vc1.svc:8443"


def test_pod_placement_values(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    values = {
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "priorityClassName": "high",
        "podAnnotations": {"a": "b"},
        "terminationGracePeriodSeconds": 3,
    }
    sts = docs(helm, pki_args, tmp_path, **values)["StatefulSet/vc1"]
    pod = sts["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert pod["spec"]["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert pod["spec"]["priorityClassName"] == "high"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 3
    assert pod["metadata"]["annotations"]["a"] == "b"
    cp = next(c for c in pod["spec"]["containers"] if c["name"] == "control-plane")
    assert "--grace=2s" in cp["args"]


def test_control_plane_values(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    values = {
        "controlPlane": {
            "extraApiServerArgs": ["--v=2"],
            "extraControllerManagerArgs": ["--concurrent-deployment-syncs=1"],
            "extraEtcdArgs": ["--snapshot-count=1000"],
            "controllers": "*",
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        },
        "syncer": {"extraArgs": ["--token-seconds=600"], "image": {"pullPolicy": "Never"}},
    }
    cs = _containers(docs(helm, pki_args, tmp_path, **values))
    args = cs["control-plane"]["args"]
    for flag in ("--v=2", "--concurrent-deployment-syncs=1", "--snapshot-count=1000"):
        assert flag in args
    assert "--controllers=*" in args
    assert cs["control-plane"]["resources"]["limits"] == {"memory": "2Gi"}
    assert "--token-seconds=600" in cs["syncer"]["args"]
    assert cs["syncer"]["imagePullPolicy"] == "Never"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"isolation": {"podSecurityStandard": "lenient"}}, "podSecurityStandard"),
        ({"sync": {"ingress": {"enabled": False}}}, "ingress"),
        ({"coredns": {"replicas": "two"}}, "replicas"),
        ({"controlPlane": {"persistence": {"enabled": "yes"}}}, "enabled"),
        ({"isolation": {"networkPolicy": {"egress": True}}}, "egress"),
        ({"isolation": {"networkPolicy": {"podCIDRs": ["10.0.0.0"]}}}, "podCIDRs"),
    ],
)
def test_schema_refuses_bad_values(
    helm: Path, pki_args: list[str], tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    proc = render(
        helm,
        pki_args,
        values_for(**values),
        tmp_path,
    )
    assert proc.returncode != 0
    assert message in proc.stderr
