"""What the plugin hands ``helm install``: the chart, its images, its values, its certificates.

Pure functions (and files under a vcluster's work dir): the chart's rendering is tested with
``helm template`` on exactly these values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import InClusterError
from ...values import deep_merge
from ...versions import parse_k8s_version
from ..controlplane import ADMIN_USER


def chart_dir() -> Path:
    """The chart in the package (``pytest_vcluster/chart``, a wheel), else the repo's."""
    here = Path(__file__).resolve()
    packaged = here.parents[2] / "chart"
    if (packaged / "Chart.yaml").is_file():
        return packaged
    return here.parents[3] / "chart"


CHART_DIR = chart_dir()
CONTROL_PLANE_REPO = "pytest-vcluster/control-plane"
SYNCER_REPO = "pytest-vcluster/syncer"
# --set-file pki.<key>=<file>: the certificates the plugin makes (helm alone makes its own).
PKI_VALUES = {
    "caCert": "ca.crt",
    "caKey": "ca.key",
    "apiServerCert": "apiserver.crt",
    "apiServerKey": "apiserver.key",
    "adminCert": "admin.crt",
    "adminKey": "admin.key",
    "serviceAccountKey": "sa.key",
    "serviceAccountPub": "sa.pub",
    "kubeletClientCert": "kubelet-client.crt",
    "kubeletClientKey": "kubelet-client.key",
}


def split_image(ref: str) -> tuple[str, str]:
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        return ref, "latest"
    return repo, tag


def newest_local_image(repo: str, tag_prefix: str = "") -> str | None:
    """The most recently created ``repo:<tag_prefix>*`` image in Docker, if any."""
    from ...docker import find_cli

    docker = find_cli()
    out = docker.run(
        ["images", "--format", "{{.Repository}}:{{.Tag}}\t{{.CreatedAt}}", repo], check=False
    ).stdout.decode()
    rows = [ln.split("\t") for ln in out.splitlines() if "\t" in ln]
    mine = [r for r in rows if r[0].split(":", 1)[1].startswith(tag_prefix)]
    return max(mine, key=lambda r: r[1])[0] if mine else None


def resolve_images(k8s_version: str) -> dict[str, str]:
    """Image refs: ``PYTEST_VCLUSTER_{CONTROL_PLANE,SYNCER}_IMAGE``, else the newest built."""
    tag = parse_k8s_version(k8s_version).tag
    images: dict[str, str] = {}
    wanted = (("controlPlane", CONTROL_PLANE_REPO, tag + "-"), ("syncer", SYNCER_REPO, ""))
    from ...images import ENV

    for key, repo, prefix in wanted:
        env = ENV[key]
        ref = os.environ.get(env) or newest_local_image(repo, prefix)
        if not ref:
            raise InClusterError(
                f"no {repo} image for Kubernetes {k8s_version} in Docker: build and push both "
                f"with `pytest-vcluster images build --k8s-version {k8s_version} --push "
                f"REGISTRY/PREFIX` and set the variables it prints (or set {env})"
            )
        images[key] = ref
    return images


def chart_values(
    images: Mapping[str, str],
    cidr: str,
    coredns_image: str = "",
    syncer_args: Sequence[str] = (),
    user: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Values the plugin sets (images, service range, syncer flags); the user's win."""
    cp_repo, cp_tag = split_image(images["controlPlane"])
    sy_repo, sy_tag = split_image(images["syncer"])
    ours: dict[str, Any] = {
        "controlPlane": {
            "image": {"repository": cp_repo, "tag": cp_tag, "pullPolicy": "IfNotPresent"},
            "serviceCIDR": cidr,
        },
        "syncer": {
            "image": {"repository": sy_repo, "tag": sy_tag, "pullPolicy": "IfNotPresent"},
        },
    }
    coredns = images.get("coredns") or coredns_image
    if coredns:
        dns_repo, dns_tag = split_image(coredns)
        ours["coredns"] = {"image": {"repository": dns_repo, "tag": dns_tag}}
    if syncer_args:
        ours["syncer"]["extraArgs"] = list(syncer_args)
    return deep_merge(ours, user or {})


def pod_security_level(values: Mapping[str, Any]) -> str:
    """The chart's ``isolation.podSecurityStandard``, which the host namespace enforces."""
    return str((values.get("isolation") or {}).get("podSecurityStandard") or "baseline")


def readyz_exclude(values: Mapping[str, Any]) -> tuple[str, ...]:
    """The API server's readiness checks the chart's probes leave out (``vcluster.readyz``):
    with the etcd template, the hooks whose objects it carries (hosts/etcd.BOOTSTRAP_HOOKS)."""
    from ..etcd import BOOTSTRAP_HOOKS

    return BOOTSTRAP_HOOKS if (values.get("controlPlane") or {}).get("etcdTemplate", True) else ()


def _number_like(text: str) -> bool:
    """Whether a YAML reader other than PyYAML's could take ``text`` for a number or a bool:
    PyYAML leaves ``066547740495`` (a syncer image tag) or ``1e5`` unquoted, and Helm reads
    them as numbers."""
    t = text.strip().lower().replace("_", "")
    if t in {"", "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n"}:
        return True
    for parse in (float, lambda v: int(v, 0)):
        try:
            parse(t)
        except ValueError:
            continue
        return True
    return False


def values_yaml(values: Mapping[str, Any]) -> str:
    """``values`` as the ``--values`` file: every string Helm could read as something else is
    quoted."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
        style = "'" if _number_like(data) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(dict(values), Dumper=Dumper, sort_keys=False)


def coredns_enabled(values: Mapping[str, Any]) -> bool:
    return bool((values.get("coredns") or {}).get("enabled", True))


def dns_host_service(values: Mapping[str, Any], release: str, vcluster: str) -> str:
    """The host Service in front of the vcluster's DNS: the chart's ``<release>-dns`` when
    CoreDNS runs in the vcluster's pod (``coredns.embedded``), else the host copy of the
    virtual kube-system/kube-dns."""
    if (values.get("coredns") or {}).get("embedded", True):
        return f"{release}-dns"
    from syncer.translate.names import host_name

    return host_name("kube-dns", "kube-system", vcluster)


def api_server_sans(release: str, namespace: str) -> tuple[str, ...]:
    """The API server certificate's names: the common ones and the release's host Service."""
    from ...pki import api_server_names

    svc = (release, f"{release}.{namespace}", f"{release}.{namespace}.svc")
    return api_server_names(*svc, f"{release}.{namespace}.svc.cluster.local")


def write_pki(
    d: Path,
    name: str,
    release: str,
    namespace: str,
    cidr: str,
    service_ip: str = "",
    node_address: str = "",
) -> None:
    """The vcluster's CA and certificates into ``d`` (ECDSA: microseconds each).
    ``service_ip``: the release's host Service's ClusterIP, which the vcluster's pods dial as
    their ``kubernetes`` Service (the syncer gives that Service this IP). ``node_address``: the
    host node this process reaches the API server on (at a node port), when it does."""
    from ... import pki

    d.mkdir(parents=True)
    ca = pki.CertificateAuthority(f"vcluster-{name}-ca")
    ca.pair.write(d, "ca")
    ca.issue(
        "kube-apiserver",
        dns=api_server_sans(release, namespace),
        ips=pki.service_ip_sans(cidr) + tuple(ip for ip in (service_ip, node_address) if ip),
        server=True,
    ).write(d, "apiserver")
    ca.issue(ADMIN_USER, orgs=("system:masters",), client=True).write(d, "admin")
    ca.issue("kube-apiserver-kubelet-client", client=True).write(d, "kubelet-client")
    sa_key, sa_pub = pki.service_account_key()
    (d / "sa.key").write_bytes(sa_key)
    (d / "sa.pub").write_bytes(sa_pub)


def api_service_body(
    release: str, namespace: str, values: Mapping[str, Any], node_port: bool = False
) -> dict[str, Any]:
    """The chart's API Service, made before ``helm install`` so its ClusterIP can go into the
    certificate (and, as a NodePort, its node port into the kubeconfig); the ownership marks let
    helm adopt it (and ``helm uninstall`` delete it)."""
    service = values.get("service") or {}
    port = int(service.get("port") or 443)
    kind = "NodePort" if node_port else str(service.get("type") or "ClusterIP")
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": release,  # the chart's vcluster.fullname
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {
                "meta.helm.sh/release-name": release,
                "meta.helm.sh/release-namespace": namespace,
            },
        },
        "spec": {
            "type": kind,
            "selector": {
                "app.kubernetes.io/name": "vcluster",
                "app.kubernetes.io/instance": release,
            },
            "ports": [{"name": "https", "port": port, "targetPort": "https", "protocol": "TCP"}],
        },
    }


def pki_args(d: Path) -> list[str]:
    return [f"--set-file=pki.{key}={d / name}" for key, name in PKI_VALUES.items()]


def helm_error(stderr: str) -> str:
    text = stderr.strip()
    # "Error: INSTALLATION FAILED: values don't meet the specifications of the schema(s) ..."
    text = re.sub(r"^Error: (INSTALLATION FAILED: )?", "", text)
    return text[-3000:] or "(no output)"
