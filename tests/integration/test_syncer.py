"""The syncer against real API servers (a local host, kwok nodes): sync, deletion, restarts."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from kubernetes import client, config
from syncer_helpers import bare_pod, running, wait_for

from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.hosts.local_vcluster import LocalVCluster
from syncer.constants import MANAGED_BY_LABEL, OBJECT_UID
from syncer.translate.names import host_name


@pytest.fixture(scope="module")
def vapps(vc: LocalVCluster) -> client.AppsV1Api:
    return client.AppsV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))


def deployment(name: str, replicas: int, **pod_spec: Any) -> client.V1Deployment:
    labels = {"app": name}
    spec = client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")], **pod_spec)
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=spec
            ),
        ),
    )


def host_pods(hcore: client.CoreV1Api, vc: LocalVCluster) -> list[client.V1Pod]:
    return hcore.list_namespaced_pod(vc.host_namespace).items


def test_deployment_runs_with_translated_host_pods(
    vc: LocalVCluster, vcore: client.CoreV1Api, vapps: client.AppsV1Api, hcore: client.CoreV1Api
) -> None:
    vapps.create_namespaced_deployment("team-a", deployment("web", 3))
    pods = wait_for(lambda: running(vcore, "team-a", "app=web", 3), what="3 running virtual pods")
    by_host = {host_name(p.metadata.name, "team-a", "sync"): p for p in pods}
    hp = {p.metadata.name: p for p in host_pods(hcore, vc)}
    assert set(by_host) <= set(hp)
    for hname, vpod in by_host.items():
        h = hp[hname]
        assert h.metadata.labels[MANAGED_BY_LABEL] == "sync"
        assert h.metadata.annotations[OBJECT_UID] == vpod.metadata.uid
        assert h.status.pod_ip == vpod.status.pod_ip  # status copied back
        assert vpod.spec.node_name == h.spec.node_name  # bound to the fake node of that name
        assert h.spec.automount_service_account_token is False
        env = {e.name: e.value for e in h.spec.containers[0].env}
        assert env["KUBERNETES_SERVICE_PORT"] == str(vc.control_plane.port)  # type: ignore[union-attr]
    nodes = {n.metadata.name for n in vcore.list_node().items}
    assert nodes == {p.spec.node_name for p in pods}
    # The pod's service-account token is a real token of the virtual API server.
    h = hp[next(iter(by_host))]
    secret = hcore.read_namespaced_secret(f"{h.metadata.name}-sa-token", vc.host_namespace)
    token = base64.b64decode(secret.data["token"]).decode()
    review = client.AuthenticationV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))
    result = review.create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
    )
    assert result.status.authenticated is True
    assert result.status.user.username == "system:serviceaccount:team-a:default"


def test_service_gets_the_host_cluster_ip(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    created = vcore.create_namespaced_service(
        "team-a",
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                selector={"app": "web"}, ports=[client.V1ServicePort(port=80)]
            ),
        ),
    )
    hname = host_name("web", "team-a", "sync")

    def same_ip() -> str:
        h = hcore.read_namespaced_service(hname, vc.host_namespace)
        v = vcore.read_namespaced_service("web", "team-a")
        return v.spec.cluster_ip if v.spec.cluster_ip == h.spec.cluster_ip else ""

    ip = wait_for(same_ip, what="virtual ClusterIP == host ClusterIP")
    assert ip.startswith("10.96.")
    # The host took the virtual IP: the virtual Service was never re-created (a client reading
    # it right after creating it must not see it vanish).
    assert ip == created.spec.cluster_ip
    assert vcore.read_namespaced_service("web", "team-a").metadata.uid == created.metadata.uid
    h = hcore.read_namespaced_service(hname, vc.host_namespace)
    # The host selector only matches pods of the same virtual namespace.
    assert h.spec.selector["vc.pytest-vcluster.io/namespace"] == "team-a"
    assert (
        h.metadata.annotations[OBJECT_UID]
        == vcore.read_namespaced_service("web", "team-a").metadata.uid
    )
    # Host endpoints are computed by the host from the synced pods.
    ep = wait_for(
        lambda: (e := hcore.read_namespaced_endpoints(hname, vc.host_namespace)).subsets and e,
        what="host endpoints",
    )
    assert len(ep.subsets[0].addresses) == 3


def test_service_whose_ip_the_host_refuses_takes_the_host_ip(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    # An IP the host has given to a service of its own, free inside the virtual cluster.
    ns = "ip-taken"
    hcore.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    ports = [client.V1ServicePort(port=80)]
    try:
        taken = hcore.create_namespaced_service(
            ns,
            client.V1Service(
                metadata=client.V1ObjectMeta(name="owner"), spec=client.V1ServiceSpec(ports=ports)
            ),
        ).spec.cluster_ip
        created = vcore.create_namespaced_service(
            "team-a",
            client.V1Service(
                metadata=client.V1ObjectMeta(name="clash"),
                spec=client.V1ServiceSpec(cluster_ip=taken, selector={"app": "x"}, ports=ports),
            ),
        )
        assert created.spec.cluster_ip == taken
        hname = host_name("clash", "team-a", "sync")

        def aligned() -> client.V1Service | None:
            h = hcore.read_namespaced_service(hname, vc.host_namespace)
            v = vcore.read_namespaced_service("clash", "team-a")
            ok = v.spec.cluster_ip == h.spec.cluster_ip
            return v if ok and h.metadata.annotations[OBJECT_UID] == v.metadata.uid else None

        v = wait_for(aligned, what="virtual service re-created with the host's IP")
        assert v.spec.cluster_ip != taken
        assert v.metadata.uid != created.metadata.uid
        # The host's own service was left alone.
        assert hcore.read_namespaced_service("owner", ns).spec.cluster_ip == taken
    finally:
        hcore.delete_namespace(ns)


def test_configmap_and_secret_updates_propagate(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    ns = "team-a"
    vcore.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"k": "1"})
    )
    vcore.create_namespaced_secret(
        ns, client.V1Secret(metadata=client.V1ObjectMeta(name="sec"), string_data={"p": "x"})
    )
    vcore.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="unused"), data={"k": "1"})
    )
    env = [
        client.V1EnvVar(
            name="K",
            value_from=client.V1EnvVarSource(
                config_map_key_ref=client.V1ConfigMapKeySelector(name="cfg", key="k")
            ),
        ),
        client.V1EnvVar(
            name="P",
            value_from=client.V1EnvVarSource(
                secret_key_ref=client.V1SecretKeySelector(name="sec", key="p")
            ),
        ),
    ]
    vcore.create_namespaced_pod(
        ns,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="user", labels={"app": "user"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x", env=env)]),
        ),
    )
    cm_h, sec_h = host_name("cfg", ns, "sync"), host_name("sec", ns, "sync")
    wait_for(lambda: running(vcore, ns, "app=user", 1), what="user pod running")
    assert hcore.read_namespaced_config_map(cm_h, vc.host_namespace).data == {"k": "1"}
    assert (
        base64.b64decode(hcore.read_namespaced_secret(sec_h, vc.host_namespace).data["p"]) == b"x"
    )
    host_pod = hcore.read_namespaced_pod(host_name("user", ns, "sync"), vc.host_namespace)
    refs = {e.name: e.value_from for e in host_pod.spec.containers[0].env if e.value_from}
    assert refs["K"].config_map_key_ref.name == cm_h
    assert refs["P"].secret_key_ref.name == sec_h
    # Only referenced ConfigMaps are synced by default.
    names = {c.metadata.name for c in hcore.list_namespaced_config_map(vc.host_namespace).items}
    assert host_name("unused", ns, "sync") not in names
    vcore.patch_namespaced_config_map("cfg", ns, {"data": {"k": "2", "new": "3"}})
    vcore.patch_namespaced_secret("sec", ns, {"stringData": {"p": "y"}})
    wait_for(
        lambda: (
            hcore.read_namespaced_config_map(cm_h, vc.host_namespace).data == {"k": "2", "new": "3"}
        ),
        what="configmap update",
    )
    wait_for(
        lambda: (
            base64.b64decode(hcore.read_namespaced_secret(sec_h, vc.host_namespace).data["p"])
            == b"y"
        ),
        what="secret update",
    )


def test_privileged_pod_is_refused_with_event_and_condition(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="root"),
        spec=client.V1PodSpec(
            host_network=True,
            containers=[
                client.V1Container(
                    name="c", image="x", security_context=client.V1SecurityContext(privileged=True)
                )
            ],
        ),
    )
    vcore.create_namespaced_pod("team-a", pod)

    def refused() -> Any:
        p = vcore.read_namespaced_pod("root", "team-a")
        return [c for c in p.status.conditions or [] if c.reason == "SyncDenied"]

    cond = wait_for(refused, what="SyncDenied condition")[0]
    assert "privileged" in cond.message
    assert "hostNetwork" in cond.message
    events = vcore.list_namespaced_event("team-a", field_selector="involvedObject.name=root").items
    assert any(e.reason == "SyncDenied" and e.type == "Warning" for e in events)
    assert host_name("root", "team-a", "sync") not in {
        p.metadata.name for p in host_pods(hcore, vc)
    }


def test_deleting_virtual_objects_removes_host_ones(
    vc: LocalVCluster, vcore: client.CoreV1Api, vapps: client.AppsV1Api, hcore: client.CoreV1Api
) -> None:
    vapps.create_namespaced_deployment("default", deployment("gone", 2))
    wait_for(lambda: running(vcore, "default", "app=gone", 2), what="2 pods")
    vcore.create_namespaced_service(
        "default",
        client.V1Service(
            metadata=client.V1ObjectMeta(name="gone"),
            spec=client.V1ServiceSpec(
                selector={"app": "gone"}, ports=[client.V1ServicePort(port=80)]
            ),
        ),
    )
    svc_h = host_name("gone", "default", "sync")
    wait_for(
        lambda: (
            hcore.read_namespaced_service(svc_h, vc.host_namespace).spec.cluster_ip
            == vcore.read_namespaced_service("gone", "default").spec.cluster_ip
        ),
        what="host service with the same ClusterIP",
    )
    vapps.delete_namespaced_deployment("gone", "default")
    vcore.delete_namespaced_service("gone", "default")

    def all_gone() -> bool:
        pods = [p for p in host_pods(hcore, vc) if p.metadata.name.startswith("gone-")]
        svcs = [
            s
            for s in hcore.list_namespaced_service(vc.host_namespace).items
            if s.metadata.name == svc_h
        ]
        vpods = vcore.list_namespaced_pod("default", label_selector="app=gone").items
        return not pods and not svcs and not vpods

    wait_for(all_gone, what="host pods and service deleted, virtual pods finalized")


def test_host_pod_deleted_makes_controller_recreate(
    vc: LocalVCluster, vcore: client.CoreV1Api, vapps: client.AppsV1Api, hcore: client.CoreV1Api
) -> None:
    vapps.create_namespaced_deployment("default", deployment("phoenix", 1))
    first = wait_for(lambda: running(vcore, "default", "app=phoenix", 1), what="pod")[0]
    hcore.delete_namespaced_pod(
        host_name(first.metadata.name, "default", "sync"), vc.host_namespace
    )

    def replaced() -> list[client.V1Pod]:
        pods = running(vcore, "default", "app=phoenix", 1)
        return pods if pods and pods[0].metadata.uid != first.metadata.uid else []

    wait_for(replaced, what="a replacement virtual pod")


def test_syncer_killed_mid_sync_loses_and_duplicates_nothing(
    vc: LocalVCluster, vcore: client.CoreV1Api, vapps: client.AppsV1Api, hcore: client.CoreV1Api
) -> None:
    vcore.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="crash")))
    vapps.create_namespaced_deployment("crash", deployment("many", 20))
    time.sleep(0.5)  # some pods synced, others not yet
    vc.restart_syncer()  # SIGKILL + start
    pods = wait_for(lambda: running(vcore, "crash", "app=many", 20), 60, "20 running pods")
    hosts = [
        p
        for p in host_pods(hcore, vc)
        if p.metadata.annotations.get("vc.pytest-vcluster.io/object-namespace") == "crash"
    ]
    assert sorted(p.metadata.name for p in hosts) == sorted(
        host_name(p.metadata.name, "crash", "sync") for p in pods
    )
    # Orphans from before the restart are collected: delete while the syncer is down.
    vc.syncer.kill()  # type: ignore[union-attr]
    vapps.delete_namespaced_deployment("many", "crash")
    time.sleep(1)
    vc.restart_syncer()
    wait_for(
        lambda: (
            not [
                p
                for p in host_pods(hcore, vc)
                if p.metadata.annotations.get("vc.pytest-vcluster.io/object-namespace") == "crash"
            ]
        ),
        60,
        "orphans removed",
    )


@pytest.mark.parametrize("side", ["virtual", "host"])
def test_api_server_restart_is_survived(
    side: str,
    host: LocalHost,
    vc: LocalVCluster,
    vcore: client.CoreV1Api,
    vapps: client.AppsV1Api,
    hcore: client.CoreV1Api,
) -> None:
    cp = vc.control_plane if side == "virtual" else host.control_plane
    assert cp is not None
    cp.restart_apiserver()
    name = f"after-{side}"
    vapps.create_namespaced_deployment("default", deployment(name, 2))
    wait_for(lambda: running(vcore, "default", f"app={name}", 2), 60, f"pods after {side} restart")
    assert vc.syncer is not None
    assert vc.syncer.alive()


def test_ingress_and_pvc_are_copied_with_translated_references(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    net = client.NetworkingV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))
    hnet = client.NetworkingV1Api(hcore.api_client)
    backend = client.V1IngressBackend(
        service=client.V1IngressServiceBackend(
            name="web", port=client.V1ServiceBackendPort(number=80)
        )
    )
    net.create_namespaced_ingress(
        "team-a",
        client.V1Ingress(
            metadata=client.V1ObjectMeta(name="front"),
            spec=client.V1IngressSpec(
                default_backend=backend,
                tls=[client.V1IngressTLS(hosts=["a.example"], secret_name="tls")],
            ),
        ),
    )
    vcore.create_namespaced_persistent_volume_claim(
        "team-a",
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="data"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
            ),
        ),
    )
    ing = wait_for(
        lambda: hnet.read_namespaced_ingress(
            host_name("front", "team-a", "sync"), vc.host_namespace
        ),
        what="host ingress",
    )
    assert ing.spec.default_backend.service.name == host_name("web", "team-a", "sync")
    assert ing.spec.tls[0].secret_name == host_name("tls", "team-a", "sync")
    pvc = wait_for(
        lambda: hcore.read_namespaced_persistent_volume_claim(
            host_name("data", "team-a", "sync"), vc.host_namespace
        ),
        what="host PVC",
    )
    assert pvc.spec.resources.requests["storage"] == "1Gi"
    assert pvc.metadata.annotations[OBJECT_UID] == (
        vcore.read_namespaced_persistent_volume_claim("data", "team-a").metadata.uid
    )
    # Deleting the virtual objects removes the host copies.
    net.delete_namespaced_ingress("front", "team-a")
    vcore.delete_namespaced_persistent_volume_claim("data", "team-a")

    def gone() -> bool:
        names = {i.metadata.name for i in hnet.list_namespaced_ingress(vc.host_namespace).items}
        claims = {
            c.metadata.name
            for c in hcore.list_namespaced_persistent_volume_claim(vc.host_namespace).items
        }
        return host_name("front", "team-a", "sync") not in names and (
            host_name("data", "team-a", "sync") not in claims
        )

    wait_for(gone, what="host ingress and PVC deleted")


def test_pod_token_is_refreshed_before_it_expires(host: LocalHost, hcore: client.CoreV1Api) -> None:
    # 600 s is the API server's shortest token; refreshing at 0.5% of it (3 s) shows within a
    # test that the syncer re-requests the token and rewrites the host Secret on schedule.
    args = ("--token-seconds=600", "--token-refresh-fraction=0.005")
    with LocalVCluster(host.info(), "tokens", syncer_args=args) as tvc:
        core = client.CoreV1Api(config.new_client_from_config(str(tvc.kubeconfig_path)))
        auth = client.AuthenticationV1Api(core.api_client)
        core.create_namespaced_pod("default", bare_pod("t"))
        secret_name = host_name("t", "default", "tokens") + "-sa-token"

        def token() -> tuple[str, int]:
            s = hcore.read_namespaced_secret(secret_name, tvc.host_namespace)
            expiry = int(s.metadata.annotations["vc.pytest-vcluster.io/token-expiry"])
            return base64.b64decode(s.data["token"]).decode(), expiry

        first, first_expiry = wait_for(token, what="the pod's token secret")
        seen = {first}
        # Two refreshes: each one schedules the next.
        for _ in range(2):
            current, expiry = wait_for(
                lambda: (lambda t: t if t[0] not in seen else None)(token()),
                30,
                "a refreshed token",
            )
            seen.add(current)
        assert expiry > first_expiry
        review = auth.create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=current))
        )
        assert review.status.authenticated is True
        assert review.status.user.username == "system:serviceaccount:default:default"
        core.delete_namespaced_pod("t", "default")


def test_pod_gets_the_variables_of_its_namespaces_services(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    """As a kubelet gives them (the host kubelet must not: it would give the host's)."""
    svc = vcore.create_namespaced_service(
        "team-a",
        {
            "metadata": {"name": "fooservice"},
            "spec": {"selector": {"app": "x"}, "ports": [{"port": 8765, "name": "http"}]},
        },
    )
    ip = svc.spec.cluster_ip
    body = {"metadata": {"name": "envvars"}, "spec": {"containers": [{"name": "c", "image": "b"}]}}
    vcore.create_namespaced_pod("team-a", body)
    unlinked = {**body, "metadata": {"name": "unlinked"}}
    unlinked["spec"] = {**body["spec"], "enableServiceLinks": False}
    vcore.create_namespaced_pod("team-a", unlinked)

    def host_env(name: str) -> dict[str, str]:
        hpod = hcore.read_namespaced_pod(host_name(name, "team-a", "sync"), vc.host_namespace)
        return {e.name: e.value for e in hpod.spec.containers[0].env}

    env = wait_for(lambda: host_env("envvars"), what="host pod")
    assert env["FOOSERVICE_SERVICE_HOST"] == ip
    assert env["FOOSERVICE_SERVICE_PORT_HTTP"] == "8765"
    assert env["FOOSERVICE_PORT"] == f"tcp://{ip}:8765"
    assert not any(k.startswith("FOOSERVICE") for k in wait_for(lambda: host_env("unlinked")))
    for name in ("envvars", "unlinked"):
        vcore.delete_namespaced_pod(name, "team-a", grace_period_seconds=0)
    vcore.delete_namespaced_service("fooservice", "team-a")
