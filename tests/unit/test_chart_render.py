"""The Helm chart from ``helm template``: objects, PKI, schema errors, packaging, kubelet API."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import IMAGES, docs, render, values_for
from chart_helpers import containers as _containers
from chart_helpers import syncer_args as _syncer_args

from pytest_vcluster.hosts.incluster import CHART_DIR, chart, deep_merge, split_image
from pytest_vcluster.hosts.local_vcluster import SYNCER_RULES, VCLUSTER_CONTROLLERS


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
        "ConfigMap/vc1-coredns",
        "Pod/vc1-test-api",
        "Role/vc1-syncer",
        "RoleBinding/vc1-syncer",
        "Secret/vc-vc1",
        "Secret/vc1-pki",
        "Service/vc1",
        "Service/vc1-dns",
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
        "coredns": "configMap",
    }
    assert "volumeClaimTemplates" not in sts["spec"]
    cs = _containers(objs)
    cp, syncer = cs["control-plane"], cs["syncer"]
    assert cp["image"] == IMAGES["controlPlane"]
    assert syncer["image"] == IMAGES["syncer"]
    args = cp["args"]
    assert f"--controllers={VCLUSTER_CONTROLLERS}" in args
    assert args.count("--service-cluster-ip-range=10.96.0.0/16") == 2
    assert args.count("---") == 3  # etcd, kube-apiserver, coredns, kube-controller-manager
    # etcd and kube-apiserver start together (the API server retries etcd); CoreDNS once the
    # API server is ready as the probes see it; the controller-manager at the whole /readyz
    # (it waits for /healthz itself).
    # With the etcd template (the default) the pod is ready but for the hooks whose objects
    # it carries: the probes and the plugin agree on that.
    readyz = "/readyz?" + "&".join(f"exclude={h}" for h in chart.readyz_exclude(values_for()))
    assert "exclude=poststarthook/rbac/bootstrap-roles" in readyz
    ready = [f"--ready=https://127.0.0.1:6443{readyz}", "--ready=https://127.0.0.1:6443/readyz"]
    assert [a for a in args if a.startswith("--ready=")] == ready
    assert args.index(ready[0]) == args.index("--step=kube-apiserver") + 1
    assert args.index(ready[1]) == args.index("--step=coredns") + 1
    assert args.index("--step=coredns") < args.index("--step=kube-controller-manager")
    assert cp["startupProbe"]["httpGet"]["path"] == readyz
    assert cp["readinessProbe"]["httpGet"]["path"] == readyz
    plain = docs(helm, pki_args, tmp_path, controlPlane={"etcdTemplate": False})
    assert chart.readyz_exclude(values_for(controlPlane={"etcdTemplate": False})) == ()
    assert _containers(plain)["control-plane"]["readinessProbe"]["httpGet"]["path"] == "/readyz"
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


def test_dns_in_the_vcluster_pod(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    """coredns.embedded (the default): CoreDNS in the control-plane container on 1053, the
    host Service vc1-dns in front of it from the pod's start, the syncer pinning kube-dns."""
    objs = docs(helm, pki_args, tmp_path)
    svc = objs["Service/vc1-dns"]["spec"]
    assert svc["publishNotReadyAddresses"] is True
    assert svc["selector"] == objs["Service/vc1"]["spec"]["selector"]
    assert [(p["port"], p["protocol"], p["targetPort"]) for p in svc["ports"]] == [
        (53, "UDP", "dns"),
        (53, "TCP", "dns-tcp"),
    ]
    cp, syncer = _containers(objs)["control-plane"], _containers(objs)["syncer"]
    assert {(p["name"], p["containerPort"], p["protocol"]) for p in cp["ports"]} >= {
        ("dns", 1053, "UDP"),
        ("dns-tcp", 1053, "TCP"),
    }
    args = cp["args"]
    step = args.index("--step=coredns")
    assert args[step + 2 : step + 6] == [
        "--restart=3", "/usr/local/bin/coredns", "-conf", "/etc/coredns/Corefile"
    ]  # fmt: skip
    assert {"name": "coredns", "mountPath": "/etc/coredns", "readOnly": True} in cp["volumeMounts"]
    corefile = objs["ConfigMap/vc1-coredns"]["data"]["Corefile"]
    assert "kubeconfig /pki/kubeconfig" in corefile  # the API server on 127.0.0.1
    assert corefile.count("forward . /etc/resolv.conf") == 2  # the host's DNS
    assert "vcluster-vc1.svc.cluster.local:1053 {" in corefile  # host names first
    assert "health" not in corefile  # no port the pod does not need
    assert "--dns-host-service=vc1-dns" in syncer["args"]
    assert "--dns-endpoint=$(POD_IP):1053" in syncer["args"]
    # The vcluster shows the node this pod runs on, as it showed the synced CoreDNS pod's.
    assert "--own-node=$(NODE_NAME)" in syncer["args"]
    assert "--own-node-ip=$(HOST_IP)" in syncer["args"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in syncer["env"]}
    assert env == {
        "POD_IP": "status.podIP",
        "NODE_NAME": "spec.nodeName",
        "HOST_IP": "status.hostIP",
    }
    assert not [a for a in syncer["args"] if a.startswith("--bootstrap-dir")]
    assert chart.dns_host_service(values_for(), "vc1", "vc1") == "vc1-dns"


def test_dns_as_a_synced_pod(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    """coredns.embedded=false: the syncer creates CoreDNS in the vcluster (bootstrap)."""
    objs = docs(helm, pki_args, tmp_path, coredns={"embedded": False})
    assert "Service/vc1-dns" not in objs
    assert "ConfigMap/vc1-coredns" not in objs
    corefile = objs["ConfigMap/vc1-bootstrap"]["data"]["coredns.yaml"]
    assert "forward . ${HOST_DNS}" in corefile
    assert "ready :8181" in corefile
    cp, syncer = _containers(objs)["control-plane"], _containers(objs)["syncer"]
    args = cp["args"]
    assert "--step=coredns" not in args
    assert args.count("---") == 2
    ready = [a for a in args if a.startswith("--ready=")]
    assert ready == ["--ready=https://127.0.0.1:6443/readyz"]
    assert args.index(ready[0]) == args.index("--step=kube-apiserver") + 1
    assert "--bootstrap-dir=/bootstrap" in syncer["args"]
    assert not [a for a in syncer["args"] if a.startswith(("--dns-", "--own-node"))]
    values = values_for(coredns={"embedded": False})
    assert chart.dns_host_service(values, "vc1", "vc1") == "kube-dns-x-kube-system-x-vc1"
    off = docs(helm, pki_args, tmp_path, coredns={"enabled": False})
    assert not [k for k in off if "coredns" in k or "bootstrap" in k or k.endswith("-dns")]
    assert "--step=coredns" not in _containers(off)["control-plane"]["args"]


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
    assert "image.tag is required: `pytest-vcluster images build` builds the" in proc.stderr


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


def test_service_node_port(helm: Path, pki_args: list[str], tmp_path: Path) -> None:
    """The node port the plugin's pre-made Service was given is pinned in the release (helm
    adopts the Service as it is); a ClusterIP Service names none even if one is set."""
    objs = docs(helm, pki_args, tmp_path, service={"type": "NodePort", "nodePort": 31443})
    assert objs["Service/vc1"]["spec"]["type"] == "NodePort"
    assert objs["Service/vc1"]["spec"]["ports"][0]["nodePort"] == 31443
    objs = docs(helm, pki_args, tmp_path, service={"nodePort": 31443})
    assert objs["Service/vc1"]["spec"]["type"] == "ClusterIP"
    assert "nodePort" not in objs["Service/vc1"]["spec"]["ports"][0]


def test_api_service_body_kind() -> None:
    from pytest_vcluster.hosts.incluster.chart import api_service_body

    def kind(values: dict[str, Any], node_port: bool = False) -> str:
        return str(api_service_body("vc1", "vcluster-vc1", values, node_port)["spec"]["type"])

    assert kind({}) == "ClusterIP"
    assert kind({}, node_port=True) == "NodePort"
    assert kind({"service": {"type": "LoadBalancer"}}) == "LoadBalancer"  # the user's, adopted


@pytest.mark.parametrize("tag", ["066547740495", "1e5", "123", "0x1f", "true", "v1.37.2-abc"])
def test_image_tags_that_look_like_numbers_stay_strings(
    helm: Path, pki_args: list[str], tmp_path: Path, tag: str
) -> None:
    """The values file quotes them (PyYAML alone left ``066547740495``, a real syncer image
    tag, bare, and Helm's schema check read a number)."""
    images = {"controlPlane": f"pytest-vcluster/control-plane:{tag}", "syncer": f"s:{tag}"}
    path = tmp_path / "values.yaml"
    path.write_text(chart.values_yaml(chart.chart_values(images, "10.96.0.0/16")))
    argv = [str(helm), "template", "vc1", str(CHART_DIR), "--namespace", "n", *pki_args]
    proc = subprocess.run([*argv, "--values", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f'image: "s:{tag}"' in proc.stdout
    assert yaml.safe_load(path.read_text())["syncer"]["image"]["tag"] == tag
