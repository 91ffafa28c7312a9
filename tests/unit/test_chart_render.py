"""The Helm chart, rendered with ``helm template``: structure, values, schema, error messages."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_vcluster.binaries import BinaryResolver
from pytest_vcluster.errors import VClusterError
from pytest_vcluster.hosts.incluster import CHART_DIR, PKI_VALUES, deep_merge, split_image
from pytest_vcluster.hosts.incluster.chart import chart_values, pod_security_level, write_pki
from pytest_vcluster.hosts.local_vcluster import SYNCER_RULES, VCLUSTER_CONTROLLERS
from pytest_vcluster.naming import default_cache_dir, host_namespace_body
from pytest_vcluster.versions import parse_k8s_version

IMAGES = {
    "controlPlane": "pytest-vcluster/control-plane:v1.37.2-abc",
    "syncer": "pytest-vcluster/syncer:def",
}


@pytest.fixture(scope="module")
def helm() -> Path:
    resolver = BinaryResolver(
        parse_k8s_version(None),
        default_cache_dir(),
        download_base=os.environ.get("PYTEST_VCLUSTER_DOWNLOAD_URL", "off"),
        progress=lambda msg: None,
    )
    try:
        return resolver.resolve("helm").path
    except VClusterError as exc:  # pragma: no cover - CI fills the cache first
        pytest.skip(f"no helm binary: {exc}")


def values_for(
    cidr: str = "10.96.0.0/12",
    coredns_image: str = "",
    syncer_args: tuple[str, ...] = (),
    **user: Any,
) -> dict[str, Any]:
    """What the plugin hands ``helm install`` for vcluster vc1 (chart values)."""
    return chart_values(IMAGES, cidr, coredns_image, syncer_args, user)


@pytest.fixture(scope="module")
def pki_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    tmp = tmp_path_factory.mktemp("chart")
    write_pki(tmp / "pki", "vc1", "vc1", "vcluster-vc1", "10.96.0.0/12")
    return [f"--set-file=pki.{k}={tmp / 'pki' / f}" for k, f in PKI_VALUES.items()]


def render(
    helm: Path, args: list[str], values: dict[str, Any] | None = None, tmp: Path | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [str(helm), "template", "vc1", str(CHART_DIR), "--namespace", "vcluster-vc1", *args]
    if values is not None:
        assert tmp is not None
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        argv += ["--values", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def docs(helm: Path, pki_args: list[str], tmp: Path, **values: Any) -> dict[str, Any]:
    proc = render(helm, pki_args, values_for("10.96.0.0/16", **values), tmp)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for d in yaml.safe_load_all(proc.stdout):
        if d:
            out[f"{d['kind']}/{d['metadata']['name']}"] = d
    return out


def test_lint_is_clean(helm: Path) -> None:
    proc = subprocess.run(
        [str(helm), "lint", str(CHART_DIR)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[ERROR]" not in proc.stdout
    assert "[WARNING]" not in proc.stdout


def test_objects_and_labels(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    objs = docs(helm, pki_args, tmp_path)
    assert sorted(objs) == [
        "ConfigMap/vc1-bootstrap",
        "Pod/vc1-test-api",
        "Role/vc1-syncer",
        "RoleBinding/vc1-syncer",
        "Secret/vc-vc1",
        "Secret/vc1-pki",
        "Service/vc1",
        "ServiceAccount/vc1",
        "StatefulSet/vc1",
    ]
    for obj in objs.values():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "vcluster"
        assert labels["app.kubernetes.io/instance"] == "vc1"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "pytest-vcluster"
        assert labels["app.kubernetes.io/version"] == "1.37.2"
        assert labels["app.kubernetes.io/component"]
        assert obj["metadata"]["namespace"] == "vcluster-vc1"


def test_syncer_role_matches_the_local_runtime(
    helm: Path, pki_args: list[str], tmp_path: Path
) -> None:
    objs = docs(helm, pki_args, tmp_path)
    assert objs["Role/vc1-syncer"]["rules"] == SYNCER_RULES
    binding = objs["RoleBinding/vc1-syncer"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "vc1", "namespace": "vcluster-vc1"}
    ]


def _containers(objs: dict[str, Any]) -> dict[str, Any]:
    pod = objs["StatefulSet/vc1"]["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


def test_statefulset_pod(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    objs = docs(helm, pki_args, tmp_path)
    sts = objs["StatefulSet/vc1"]
    pod = sts["spec"]["template"]["spec"]
    assert sts["spec"]["replicas"] == 1
    assert pod["serviceAccountName"] == "vc1"
    assert {v["name"]: next(k for k in v if k != "name") for v in pod["volumes"]} == {
        "data": "emptyDir",
        "tmp": "emptyDir",
        "run": "emptyDir",
        "pki": "secret",
        "bootstrap": "configMap",
    }
    assert "volumeClaimTemplates" not in sts["spec"]
    cs = _containers(objs)
    cp, syncer = cs["control-plane"], cs["syncer"]
    assert cp["image"] == IMAGES["controlPlane"]
    assert syncer["image"] == IMAGES["syncer"]
    args = cp["args"]
    assert f"--controllers={VCLUSTER_CONTROLLERS}" in args
    assert args.count("--service-cluster-ip-range=10.96.0.0/16") == 2
    assert args.count("---") == 2  # etcd, kube-apiserver, kube-controller-manager
    # etcd and kube-apiserver start together (the API server retries etcd); the
    # controller-manager once the API server is ready.
    assert [a for a in args if a.startswith("--ready=")] == [
        "--ready=https://127.0.0.1:6443/readyz"
    ]
    assert (
        args.index("--ready=https://127.0.0.1:6443/readyz")
        == args.index("--step=kube-apiserver") + 1
    )
    assert args[args.index("--step=kube-controller-manager") + 1] == "--restart=3"
    assert "--enable-priority-and-fairness=false" in args
    assert "--advertise-address=$(POD_IP)" in args
    assert "--name=vc1" in syncer["args"]
    assert "--host-namespace=vcluster-vc1" in syncer["args"]
    assert "--api-service-host=vc1.vcluster-vc1.svc" in syncer["args"]
    # probes answer within seconds
    for c in (cp, syncer):
        assert c["readinessProbe"]["periodSeconds"] == 1
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert cp["startupProbe"]["periodSeconds"] == 1


def _millicores(q: str) -> int:
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


def test_eight_fit_on_two_cores(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    cs = _containers(docs(helm, pki_args, tmp_path))
    cpu = sum(_millicores(c["resources"]["requests"]["cpu"]) for c in cs.values())
    # a 2-core kind node keeps ~1 core for its own control plane and DNS
    assert 8 * cpu <= 1000


def test_kubeconfig_secret(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    objs = docs(helm, pki_args, tmp_path)
    cfg = yaml.safe_load(base64.b64decode(objs["Secret/vc-vc1"]["data"]["config"]))
    assert cfg["clusters"][0]["cluster"]["server"] == "https://vc1.vcluster-vc1.svc:443"
    ca = base64.b64decode(objs["Secret/vc1-pki"]["data"]["ca.crt"])
    assert base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]) == ca
    internal = yaml.safe_load(base64.b64decode(objs["Secret/vc1-pki"]["data"]["kubeconfig"]))
    assert internal["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"


def test_user_values_and_syncer_args(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    vc_values = {"syncer": {"workers": 4}, "labels": {"team": "a"}}
    objs = docs(helm, pki_args, tmp_path, **vc_values)
    assert "--workers=4" in _containers(objs)["syncer"]["args"]
    assert objs["Service/vc1"]["metadata"]["labels"]["team"] == "a"
    values = values_for(syncer_args=("--enable-sync-resources=ingresses",))
    assert values["syncer"]["extraArgs"] == ["--enable-sync-resources=ingresses"]


def test_unknown_value_is_refused_by_the_schema(
    helm: Path, pki_args: list[str], tmp_path: Path
) -> None:
    values = values_for()
    values["syncer"]["wokers"] = 3
    proc = render(helm, pki_args, values, tmp_path)
    assert proc.returncode != 0
    assert "wokers" in proc.stderr
    assert "additional properties" in proc.stderr.lower()


def test_missing_image_tag_says_what_to_do(helm: Path, tmp_path: Path) -> None:
    proc = render(helm, [])
    assert proc.returncode != 0
    assert "images/control-plane/build.py" in proc.stderr or "images/syncer/build.py" in proc.stderr


def test_partial_pki_is_refused(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    values = values_for()
    only_ca = [a for a in pki_args if a.startswith("--set-file=pki.caCert=")]
    proc = render(helm, only_ca, values, tmp_path)
    assert proc.returncode != 0
    assert "is required with the other pki.* values" in proc.stderr


def test_plain_helm_install_makes_its_own_pki(helm: Path, tmp_path: Path) -> None:
    """No pki.* (helm install without pytest-vcluster): a CA, an API server certificate for the
    Service, localhost and the vcluster's `kubernetes` Service IP, a service-account key and a
    static admin token in system:masters; the same certificates everywhere in one render."""
    from cryptography import x509

    values = values_for("10.96.0.0/16")

    def rendered() -> dict[str, Any]:
        proc = render(helm, [], values, tmp_path)
        assert proc.returncode == 0, proc.stderr
        return {
            f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(proc.stdout) if d
        }

    objs = rendered()
    pki = {k: base64.b64decode(v) for k, v in objs["Secret/vc1-pki"]["data"].items()}
    ca = x509.load_pem_x509_certificate(pki["ca.crt"])
    api = x509.load_pem_x509_certificate(pki["apiserver.crt"])
    api.verify_directly_issued_by(ca)
    sans = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "vc1.vcluster-vc1.svc", "kubernetes.default.svc"} <= set(
        sans.get_values_for_type(x509.DNSName)
    )
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "10.96.0.1",
    }
    token = pki["admin.token"].decode()
    assert len(token) == 48
    assert pki["tokens.csv"].decode() == f'{token},admin,admin,"system:masters"\n'
    for cfg in (
        yaml.safe_load(base64.b64decode(objs["Secret/vc-vc1"]["data"]["config"])),
        yaml.safe_load(pki["kubeconfig"]),
    ):
        assert cfg["users"][0]["user"] == {"token": token}
        assert (
            base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
            == (pki["ca.crt"])
        )
    args = _containers(objs)["control-plane"]["args"]
    assert "--token-auth-file=/pki/tokens.csv" in args
    # Each install makes its own.
    again = base64.b64decode(rendered()["Secret/vc1-pki"]["data"]["ca.crt"])
    assert again != pki["ca.crt"]


def test_plugin_pki_has_no_token(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    objs = docs(helm, pki_args, tmp_path)
    assert "tokens.csv" not in objs["Secret/vc1-pki"]["data"]
    assert not [a for a in _containers(objs)["control-plane"]["args"] if "token-auth" in a]
    cfg = yaml.safe_load(base64.b64decode(objs["Secret/vc-vc1"]["data"]["config"]))
    assert set(cfg["users"][0]["user"]) == {"client-certificate-data", "client-key-data"}


def test_helpers() -> None:
    assert split_image("a/b:c") == ("a/b", "c")
    assert split_image("localhost:5000/a") == ("localhost:5000/a", "latest")
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


# -- one test per value that changes the output ------------------------------------------------
def _syncer_args(objs: dict[str, Any]) -> list[str]:
    return list(_containers(objs)["syncer"]["args"])


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
    assert settings.bootstrap_dir == "/bootstrap"
    assert settings.api_service_host == "vc1.vcluster-vc1.svc"


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
    bootstrap = list(yaml.safe_load_all(objs["ConfigMap/vc1-bootstrap"]["data"]["coredns.yaml"]))
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


def test_coredns_bootstrap_manifests(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    from syncer import bootstrap

    objs = docs(helm, pki_args, tmp_path, coredns={"replicas": 2})
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
    values = values_for(coredns_image="registry.k8s.io/coredns/coredns:v1.12.0")
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


def test_chart_dir_prefers_the_packaged_copy(tmp_path: Path) -> None:
    from pytest_vcluster.hosts import incluster

    assert incluster.chart_dir() == Path(incluster.__file__).parents[2] / "chart"
    assert (incluster.chart_dir() / "Chart.yaml").is_file()
    assert (incluster.chart_dir() / "values.schema.json").is_file()


def test_wheel_package_data_covers_the_chart() -> None:
    """pyproject's package-data globs (pytest_vcluster/chart -> ../chart) match every file helm
    packages, so a non-editable install carries a complete chart."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = CHART_DIR.resolve().parent
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["pytest_vcluster"]
    ignored = {"NOTES-dev.md"}  # .helmignore
    files = [
        str(p.relative_to(root))
        for p in (root / "chart").rglob("*")
        if p.is_file() and p.name not in ignored
    ]
    assert files
    for f in files:
        assert any(fnmatch.fnmatch(f, g) for g in globs), f
    assert (root / "pytest_vcluster" / "chart").resolve() == (root / "chart").resolve()


# -- the fake nodes' kubelet API ---------------------------------------------------------------
def _kubelet_wiring(objs: dict[str, Any]) -> None:
    """The API server calls the syncer's kubelet API with a client certificate of the CA, the
    syncer serves with a certificate naming 127.0.0.1 and pins that client certificate."""
    from cryptography import x509

    from syncer.settings import parse

    pki = {k: base64.b64decode(v) for k, v in objs["Secret/vc1-pki"]["data"].items()}
    ca = x509.load_pem_x509_certificate(pki["ca.crt"])
    client = x509.load_pem_x509_certificate(pki["kubelet-client.crt"])
    client.verify_directly_issued_by(ca)
    assert client.subject.rfc4514_string().endswith("CN=kube-apiserver-kubelet-client")
    api_args = _containers(objs)["control-plane"]["args"]
    for flag in (
        "--kubelet-client-certificate=/pki/kubelet-client.crt",
        "--kubelet-client-key=/pki/kubelet-client.key",
        "--kubelet-certificate-authority=/pki/ca.crt",
        "--kubelet-preferred-address-types=Hostname",
    ):
        assert flag in api_args
    settings = parse(_syncer_args(objs))
    assert settings.kubelet_address == "127.0.0.1:10250"
    assert settings.kubelet_client_cert_file == "/pki/kubelet-client.crt"
    assert settings.kubelet_cert_file == "/pki/apiserver.crt"
    assert not settings.simulated_host
    serving = x509.load_pem_x509_certificate(pki["apiserver.crt"])
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    rules = objs["Role/vc1-syncer"]["rules"]
    assert {
        "apiGroups": [""],
        "resources": ["pods/log", "pods/exec", "pods/attach", "pods/portforward"],
        "verbs": ["get", "create"],
    } in rules


def test_kubelet_api_with_the_plugins_pki(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    _kubelet_wiring(docs(helm, pki_args, tmp_path))


def test_kubelet_api_with_the_charts_own_pki(helm: Path, tmp_path: Path) -> None:
    proc = render(helm, [], values_for("10.96.0.0/16"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    _kubelet_wiring(
        {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(proc.stdout) if d}
    )


def test_kubelet_port_value(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    args = _syncer_args(docs(helm, pki_args, tmp_path, syncer={"kubeletPort": 11250}))
    assert "--kubelet-address=127.0.0.1:11250" in args
