"""A local vcluster starts from the host's bootstrap RBAC objects and system PriorityClasses,
and only from those; its teardown says what it could not remove."""

from __future__ import annotations

import dataclasses
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from syncer_helpers import bare_pod

from pytest_vcluster.errors import CleanupError
from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.hosts.local_vcluster import LocalVCluster
from pytest_vcluster.versions import parse_k8s_version


@pytest.fixture(scope="module")
def host(local_binaries: dict[str, Path]) -> Iterator[LocalHost]:
    with LocalHost(parse_k8s_version(None), local_binaries, nodes=0) as h:
        yield h


def _rbac(kubeconfig: Path) -> client.RbacAuthorizationV1Api:
    return client.RbacAuthorizationV1Api(config.new_client_from_config(str(kubeconfig)))


def test_bootstrap_rbac_is_seeded_but_user_objects_are_not(host: LocalHost) -> None:
    host_rbac = _rbac(host.kubeconfig_path)
    host_rbac.create_cluster_role(
        client.V1ClusterRole(metadata=client.V1ObjectMeta(name="made-by-a-test"), rules=[])
    )
    host_api = config.new_client_from_config(str(host.kubeconfig_path))
    client.SchedulingV1Api(host_api).create_priority_class(
        client.V1PriorityClass(metadata=client.V1ObjectMeta(name="made-by-a-test"), value=1000)
    )
    vc = LocalVCluster(host.info(), "seeded")
    assert vc._seed_from_host() > 130  # before start: what the apiserver will find in etcd
    with vc:
        rbac = _rbac(vc.kubeconfig_path)
        names = {r.metadata.name for r in rbac.list_cluster_role().items}
        assert {
            "cluster-admin",
            "admin",
            "view",
            "system:controller:replicaset-controller",
        } <= names
        assert "made-by-a-test" not in names
        scheduling = client.SchedulingV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))
        classes = {p.metadata.name for p in scheduling.list_priority_class().items}
        assert classes == {"system-cluster-critical", "system-node-critical"}
        # The copies are live objects of this vcluster: they can be changed and deleted here
        # without touching the host's.
        rbac.delete_cluster_role("view")
        assert host_rbac.read_cluster_role("view").metadata.name == "view"
        # The vcluster works on the seeded objects (its admin and controllers use them).
        core = client.CoreV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))
        assert core.read_namespaced_service_account("default", "default")


def test_another_apiserver_binary_gets_no_seed(host: LocalHost, tmp_path: Path) -> None:
    other = tmp_path / "kube-apiserver"
    other.symlink_to(host.info().binary_paths()["kube-apiserver"])
    vc = LocalVCluster(host.info(), "unseeded", binaries={"kube-apiserver": other})
    assert vc._seed_from_host() == 0


def test_teardown_that_cannot_reach_etcd_raises(host: LocalHost) -> None:
    """Before: delete() swallowed every error, so the plugin's CleanupWarning never fired."""
    gone = dataclasses.replace(host.info(), etcd_url="http://127.0.0.1:9")  # nothing listens
    vc = LocalVCluster(gone, "orphan")
    with pytest.raises(CleanupError, match=r"vcluster orphan: not removed: its objects"):
        vc.delete()
    assert not vc.workdir.exists()  # the rest was removed all the same


def test_seeded_vcluster_is_ready_before_the_seed_hooks_and_they_change_nothing(
    host: LocalHost,
) -> None:
    """Ready is /readyz without the two hooks whose objects were seeded (they first look a
    second after the API server serves): authorization by those objects works at once, and
    when the hooks do run they find nothing to write."""
    with LocalVCluster(host.info(), "early") as vc:
        api = config.new_client_from_config(str(vc.kubeconfig_path))
        rbac, scheduling = client.RbacAuthorizationV1Api(api), client.SchedulingV1Api(api)

        def versions() -> dict[str, str]:
            items = [
                *rbac.list_cluster_role().items,
                *rbac.list_cluster_role_binding().items,
                *rbac.list_role_for_all_namespaces().items,
                *rbac.list_role_binding_for_all_namespaces().items,
                *scheduling.list_priority_class().items,
            ]
            return {
                f"{o.kind}/{o.metadata.namespace}/{o.metadata.name}": o.metadata.resource_version
                for o in items
            }

        at_ready = versions()
        # A ServiceAccount's requests are authorized by the seeded bootstrap roles already.
        core = client.CoreV1Api(api)
        token = core.create_namespaced_service_account_token(
            "default",
            "default",
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
        ).status.token
        sa_config = client.Configuration()
        sa_config.host = api.configuration.host
        sa_config.ssl_ca_cert = api.configuration.ssl_ca_cert
        sa_config.api_key = {"authorization": f"Bearer {token}"}
        as_sa = client.ApiClient(sa_config)
        sa_core = client.CoreV1Api(as_sa)
        assert client.VersionApi(as_sa).get_code().major  # system:public-info-viewer
        with pytest.raises(client.ApiException) as denied:
            sa_core.list_namespaced_pod("default")  # no role grants it
        assert denied.value.status == 403
        assert "cannot list resource" in denied.value.body
        # The full /readyz follows once the two hooks have looked, and they wrote nothing.
        rest = vc.control_plane.rest()  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while rest.get("/readyz")[0] != 200:
            assert time.monotonic() < deadline, "/readyz never became ready"
            time.sleep(0.1)
        assert versions() == at_ready


def test_a_namespace_made_at_ready_takes_pods_at_once(host: LocalHost) -> None:
    """Its ``default`` ServiceAccount comes from the syncer (kube-controller-manager's
    controller is still starting when the vcluster is ready, and adopts it later)."""
    with LocalVCluster(host.info(), "fresh") as vc:
        core = client.CoreV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team")))
        deadline = time.monotonic() + 5
        while True:
            try:
                account = core.read_namespaced_service_account("default", "team")
                break
            except client.ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        assert account.metadata.name == "default"
        # Made by the syncer: it counts its requests per kind.
        metrics = urllib.request.urlopen(f"http://{vc.syncer_health}/metrics", timeout=10).read()
        assert b'server="virtual",kind="POST serviceaccounts"' in metrics
        pod = core.create_namespaced_pod("team", bare_pod("p"))
        assert pod.spec.service_account_name == "default"
