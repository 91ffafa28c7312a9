"""The kubeconfig host checked against a real API server (the local host's): reachable,
its version, RBAC; and the plugin failing fast, before any vcluster, on an unusable host."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pytest_vcluster import kubeconfig as kc
from pytest_vcluster.errors import HostStartError
from pytest_vcluster.hosts.kubeconfig import KubeconfigHost
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.hosts.local_info import LocalHostInfo as HostInfo
from pytest_vcluster.versions import parse_k8s_version

K8S = parse_k8s_version(None)


@pytest.fixture(scope="module")
def host(local_binaries: dict[str, Path]) -> Iterator[HostInfo]:
    with LocalHost(K8S, local_binaries, nodes=0) as h:
        yield h.info()


def _user_kubeconfig(host: HostInfo, path: Path, user: str, orgs: tuple[str, ...] = ()) -> Path:
    pair = host.ca().issue(user, orgs=orgs, client=True)
    ca = (Path(host.pki_dir) / "ca.crt").read_bytes()
    return kc.write(path, kc.render("h", host.server, ca, pair.cert_pem, pair.key_pem, user))


def test_admin_kubeconfig_is_checked_and_flattened(host: HostInfo, tmp_path: Path) -> None:
    h = KubeconfigHost(host.kubeconfig, None, tmp_path)
    info = h.info()
    assert (info.kind, info.k8s_version, info.server) == ("kubeconfig", str(K8S), host.server)
    assert Path(info.workdir).parent == tmp_path / "kubeconfig"
    flat = yaml.safe_load(Path(info.kubeconfig).read_text())
    assert len(flat["contexts"]) == 1
    assert Path(info.kubeconfig).stat().st_mode & 0o077 == 0


def test_file_references_work_against_the_real_server(host: HostInfo, tmp_path: Path) -> None:
    pki = Path(host.pki_dir)
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": host.server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": "u",
                "user": {
                    "client-certificate": str(pki / "admin.crt"),
                    "client-key": str(pki / "admin.key"),
                },
            }
        ],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "refs"
    path.write_text(yaml.safe_dump(cfg))
    assert KubeconfigHost(str(path), "x", tmp_path).info().k8s_version == str(K8S)


def test_user_without_namespace_rights_is_refused(host: HostInfo, tmp_path: Path) -> None:
    path = _user_kubeconfig(host, tmp_path / "nobody", "nobody")
    with pytest.raises(HostStartError, match="may not create namespaces or delete namespaces"):
        KubeconfigHost(str(path), None, tmp_path / "c").check()


def test_unreachable_server_fails_fast(host: HostInfo, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = _user_kubeconfig(host, tmp_path / "gone", "admin", ("system:masters",))
    cfg = yaml.safe_load(path.read_text())
    cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    with pytest.raises(HostStartError, match=f"cannot reach the API server.*127.0.0.1:{port}"):
        KubeconfigHost(str(path), None, tmp_path / "c", timeout=3).check()
    assert time.monotonic() - t0 < 10


def test_plugin_fails_before_any_vcluster_on_a_host_without_rights(
    pytester: pytest.Pytester, host: HostInfo
) -> None:
    path = _user_kubeconfig(host, pytester.path / "nobody", "nobody")
    pytester.makepyfile("def test_x(vcluster):\n    pass\n")
    result = pytester.runpytest(
        "--vcluster-host=kubeconfig", f"--vcluster-kubeconfig={path}", "-p", "no:randomly"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*the kubeconfig host is not usable: context 'h' may not create namespaces*"]
    )
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=host.kubeconfig)
    names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    api.close()
    assert not [n for n in names if n.startswith("vcluster-")]
