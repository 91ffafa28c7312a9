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
from pytest_vcluster.hosts.base import HostInfo
from pytest_vcluster.hosts.incluster import (
    CHART_DIR,
    PKI_VALUES,
    InClusterVCluster,
    deep_merge,
    split_image,
)
from pytest_vcluster.hosts.local_vcluster import SYNCER_RULES, VCLUSTER_CONTROLLERS
from pytest_vcluster.naming import default_cache_dir
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


def _vcluster(tmp_path: Path, **kw: Any) -> InClusterVCluster:
    host = HostInfo(
        kind="kind",
        k8s_version="1.37.2",
        server="https://127.0.0.1:6443",
        kubeconfig=str(tmp_path / "host.kubeconfig"),
        etcd_url="",
        pki_dir="",
        workdir=str(tmp_path / "host"),
        binaries={},
    )
    return InClusterVCluster(host, "vc1", **kw)


@pytest.fixture(scope="module")
def pki_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    tmp = tmp_path_factory.mktemp("chart")
    vc = _vcluster(tmp)
    vc.workdir.mkdir(parents=True)
    vc._write_pki("10.96.0.0/12")
    return [f"--set-file=pki.{k}={vc.workdir / 'pki' / f}" for k, f in PKI_VALUES.items()]


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
    vc = _vcluster(tmp, values=values)
    proc = render(helm, pki_args, vc.chart_values(IMAGES, "10.96.0.0/16"), tmp)
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
    }
    cs = _containers(objs)
    cp, syncer = cs["control-plane"], cs["syncer"]
    assert cp["image"] == IMAGES["controlPlane"]
    assert syncer["image"] == IMAGES["syncer"]
    args = cp["args"]
    assert f"--controllers={VCLUSTER_CONTROLLERS}" in args
    assert args.count("--service-cluster-ip-range=10.96.0.0/16") == 2
    assert args.count("---") == 2  # etcd, kube-apiserver, kube-controller-manager
    assert "--ready=http://127.0.0.1:2379/health" in args
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
    vc = _vcluster(tmp_path, syncer_args=("--enable-sync-resources=ingresses",))
    assert vc.chart_values(IMAGES, "10.96.0.0/12")["syncer"]["extraArgs"] == [
        "--enable-sync-resources=ingresses"
    ]


def test_unknown_value_is_refused_by_the_schema(
    helm: Path, pki_args: list[str], tmp_path: Path
) -> None:
    values = _vcluster(tmp_path).chart_values(IMAGES, "10.96.0.0/12")
    values["syncer"]["wokers"] = 3
    proc = render(helm, pki_args, values, tmp_path)
    assert proc.returncode != 0
    assert "wokers" in proc.stderr
    assert "additional properties" in proc.stderr.lower()


def test_missing_pki_and_image_tag_say_what_to_do(helm: Path, tmp_path: Path) -> None:
    proc = render(helm, [])
    assert proc.returncode != 0
    assert "pytest-vcluster passes them with --set-file" in proc.stderr or (
        "images/control-plane/build.py" in proc.stderr
    )


def test_helpers() -> None:
    assert split_image("a/b:c") == ("a/b", "c")
    assert split_image("localhost:5000/a") == ("localhost:5000/a", "latest")
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
