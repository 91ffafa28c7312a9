"""The syncer against real API servers: virtual objects that change after their creation."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from syncer_helpers import running, wait_for

from pytest_vcluster.hosts.local_vcluster import LocalVCluster
from syncer.translate.names import host_name


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": name}, "annotations": {"note": "one"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}], **spec},
    }


def test_pod_edits_reach_the_host_pod(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    """Labels, annotations (added, changed, removed), images and the deadline follow; a
    Service's host endpoints follow the new labels."""
    vcore.create_namespaced_pod("team-a", _pod("edited"))
    hname = host_name("edited", "team-a", "sync")
    wait_for(lambda: running(vcore, "team-a", "app=edited", 1), what="pod running")
    vcore.create_namespaced_service(
        "team-a",
        {
            "metadata": {"name": "tier"},
            "spec": {"selector": {"tier": "front"}, "ports": [{"port": 80}]},
        },
    )
    vcore.patch_namespaced_pod(
        "edited",
        "team-a",
        {
            "metadata": {"labels": {"tier": "front"}, "annotations": {"note": None, "new": "two"}},
            "spec": {
                "containers": [{"name": "c", "image": "busybox:2"}],
                "activeDeadlineSeconds": 600,
            },
        },
    )

    def followed() -> client.V1Pod | None:
        h = hcore.read_namespaced_pod(hname, vc.host_namespace)
        labels, ann = h.metadata.labels, h.metadata.annotations
        ok = (
            labels.get("vc.pytest-vcluster.io/tier") == "front"
            and ann.get("new") == "two"
            and "note" not in ann
            and h.spec.containers[0].image == "busybox:2"
            and h.spec.active_deadline_seconds == 600
        )
        return h if ok else None

    h = wait_for(followed, what="host pod following the virtual edits")
    assert h.metadata.labels["vc.pytest-vcluster.io/app"] == "edited"

    def endpoints() -> list[str]:
        ep = hcore.read_namespaced_endpoints(host_name("tier", "team-a", "sync"), vc.host_namespace)
        return [a.ip for s in ep.subsets or [] for a in s.addresses or []]

    assert wait_for(endpoints, what="host endpoints of the relabelled pod") == [h.status.pod_ip]


def test_pod_with_node_name_runs_on_that_node(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    """spec.nodeName bypasses the scheduler, as on a real cluster: the pod runs on the host
    node of that name (a node the vcluster shows), and names no node → refused with an Event."""
    vcore.create_namespaced_pod("team-a", _pod("placed-first"))
    first = wait_for(lambda: running(vcore, "team-a", "app=placed-first", 1), what="pod")[0]
    node = first.spec.node_name
    vcore.create_namespaced_pod("team-a", _pod("pinned", nodeName=node))
    pinned = wait_for(lambda: running(vcore, "team-a", "app=pinned", 1), what="pinned pod")[0]
    assert pinned.spec.node_name == node
    h = hcore.read_namespaced_pod(host_name("pinned", "team-a", "sync"), vc.host_namespace)
    assert h.spec.node_name == node
    vcore.create_namespaced_pod("team-a", _pod("lost", nodeName="no-such-node"))

    def refused() -> Any:
        p = vcore.read_namespaced_pod("lost", "team-a")
        return [c for c in p.status.conditions or [] if c.reason == "NodeNotFound"]

    cond = wait_for(refused, what="NodeNotFound condition")[0]
    assert "spec.nodeName 'no-such-node' is not a node of this vcluster" in cond.message
    assert node in cond.message
    events = vcore.list_namespaced_event("team-a", field_selector="involvedObject.name=lost").items
    assert any(e.reason == "NodeNotFound" for e in events)
    assert vcore.read_namespaced_pod("lost", "team-a").metadata.deletion_timestamp is None


def test_an_evicted_pod_ends_failed_with_its_disruption_condition(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    """Eviction in the vcluster: the host copy goes, and the virtual pod — held by a finalizer,
    as a Job's pods are — ends in phase Failed with the eviction's DisruptionTarget condition
    (what a Job's pod failure policy reads) before it is removed, as a kubelet's pod would."""
    finalizer = "example.com/keep"
    body = _pod("evicted")
    body["metadata"]["finalizers"] = [finalizer]
    vcore.create_namespaced_pod("team-a", body)
    hname = host_name("evicted", "team-a", "sync")
    wait_for(lambda: running(vcore, "team-a", "app=evicted", 1), what="pod running")
    vcore.create_namespaced_pod_eviction(
        "evicted", "team-a", {"metadata": {"name": "evicted", "namespace": "team-a"}}
    )

    def host_gone() -> bool:
        names = [p.metadata.name for p in hcore.list_namespaced_pod(vc.host_namespace).items]
        return hname not in names

    wait_for(host_gone, what="host pod deleted")

    def ended() -> client.V1Pod | None:
        p = vcore.read_namespaced_pod("evicted", "team-a")
        return p if p.status.phase == "Failed" else None

    pod = wait_for(ended, what="virtual pod in phase Failed")
    conditions = {c.type: c for c in pod.status.conditions or []}
    assert conditions["DisruptionTarget"].status == "True"
    assert conditions["DisruptionTarget"].reason == "EvictionByEvictionAPI"
    assert conditions["Ready"].status == "False"
    assert all(s.state.terminated is not None for s in pod.status.container_statuses)
    assert pod.metadata.deletion_timestamp is not None
    vcore.patch_namespaced_pod("evicted", "team-a", {"metadata": {"finalizers": None}})

    def removed() -> bool:
        return not vcore.list_namespaced_pod("team-a", field_selector="metadata.name=evicted").items

    wait_for(removed, what="virtual pod removed once its finalizer is")


def test_service_selector_port_and_type_changes_reach_the_host(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    vcore.create_namespaced_service(
        "team-a",
        {
            "metadata": {"name": "changing"},
            "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]},
        },
    )
    hname = host_name("changing", "team-a", "sync")
    wait_for(lambda: hcore.read_namespaced_service(hname, vc.host_namespace), what="host copy")
    svc = vcore.read_namespaced_service("changing", "team-a")
    svc.spec.selector = {"app": "b"}
    svc.spec.type = "NodePort"
    svc.spec.ports = [client.V1ServicePort(port=81, target_port=8081)]
    vcore.replace_namespaced_service("changing", "team-a", svc)

    def followed() -> client.V1Service | None:
        h = hcore.read_namespaced_service(hname, vc.host_namespace)
        ports = [(p.port, p.target_port) for p in h.spec.ports]
        ok = h.spec.type == "NodePort" and ports == [(81, 8081)]
        ok = ok and h.spec.selector.get("vc.pytest-vcluster.io/app") == "b"
        return h if ok else None

    h = wait_for(followed, what="host Service following the edit")
    assert "vc.pytest-vcluster.io/namespace" in h.spec.selector
    # The host took the node port the virtual API server allocated: a client keeps the one its
    # update returned.
    node_port = h.spec.ports[0].node_port
    assert node_port
    assert vcore.read_namespaced_service("changing", "team-a").spec.ports[0].node_port == node_port


def test_node_port_the_host_refuses_is_the_hosts_on_both_sides(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    ns = "port-taken"
    hcore.create_namespace({"metadata": {"name": ns}})
    try:
        owner = {"spec": {"type": "NodePort", "ports": [{"port": 80}]}, "metadata": {"name": "o"}}
        taken = hcore.create_namespaced_service(ns, owner).spec.ports[0].node_port
        body = {
            "metadata": {"name": "clash-port"},
            "spec": {"type": "NodePort", "selector": {"app": "x"},
                     "ports": [{"port": 80, "nodePort": taken}]},
        }  # fmt: skip
        created = vcore.create_namespaced_service("team-a", body)
        assert created.spec.ports[0].node_port == taken  # free inside the vcluster
        hname = host_name("clash-port", "team-a", "sync")

        def aligned() -> int:
            h = hcore.read_namespaced_service(hname, vc.host_namespace).spec.ports[0].node_port
            v = vcore.read_namespaced_service("clash-port", "team-a").spec.ports[0].node_port
            return int(v) if v == h else 0

        port = wait_for(aligned, what="virtual node port == the host's")
        assert port != taken
        assert hcore.read_namespaced_service("o", ns).spec.ports[0].node_port == taken
    finally:
        hcore.delete_namespace(ns)


def test_users_endpoint_slices_of_a_selectorless_service_reach_the_host(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    """The slices a user writes by hand for a selector-less Service (the conformance spec's
    "multiple endpoint IPs specified in multiple EndpointSlices"): on the host, named for the
    host Service, so its proxy routes to them; deleted with the virtual ones. Only addresses of
    the vcluster's pods go: another (the host's API server, say) is left out, with an Event."""
    from kubernetes import config

    disc = client.DiscoveryV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))
    hdisc = client.DiscoveryV1Api(hcore.api_client)
    for name in ("slice-a", "slice-b"):
        vcore.create_namespaced_pod("team-a", _pod(name))
    pods = [wait_for(lambda n=n: running(vcore, "team-a", f"app={n}", 1), what=n)[0]
            for n in ("slice-a", "slice-b")]  # fmt: skip
    ip_a, ip_b = (p.status.pod_ip for p in pods)
    vcore.create_namespaced_service(
        "team-a", {"metadata": {"name": "custom"}, "spec": {"ports": [{"port": 80}]}}
    )
    body = {
        "metadata": {
            "name": "custom-1",
            "labels": {
                "kubernetes.io/service-name": "custom",
                "endpointslice.kubernetes.io/managed-by": "a-test",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip_a], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 8090, "protocol": "TCP"}],
    }
    disc.create_namespaced_endpoint_slice("team-a", body)
    hsvc = host_name("custom", "team-a", "sync")
    hname = host_name("custom-1", "team-a", "sync")

    def host_addresses() -> list[str]:
        eps = hdisc.read_namespaced_endpoint_slice(hname, vc.host_namespace)
        return [a for e in eps.endpoints or [] for a in e.addresses]

    wait_for(lambda: host_addresses() == [ip_a], what="host EndpointSlice")
    eps = hdisc.read_namespaced_endpoint_slice(hname, vc.host_namespace)
    assert eps.metadata.labels["kubernetes.io/service-name"] == hsvc
    assert [(p.name, p.port) for p in eps.ports] == [("http", 8090)]
    # An edit follows; an address that is no pod of this vcluster does not reach the host.
    body["endpoints"] = [
        {"addresses": [ip_b], "conditions": {"ready": True}},
        {"addresses": ["10.96.0.1"], "conditions": {"ready": True}},  # the host's API server
    ]
    disc.patch_namespaced_endpoint_slice("custom-1", "team-a", {"endpoints": body["endpoints"]})
    wait_for(lambda: host_addresses() == [ip_b], what="host EndpointSlice edited")

    def warned() -> list[str]:
        events = vcore.list_namespaced_event("team-a").items
        return [e.message for e in events if e.reason == "AddressesNotSynced"]

    assert "10.96.0.1" in wait_for(warned, what="the refusal's Event")[0]
    # The host's slices of the Service are only this one (no mirrored twin).
    mine = hdisc.list_namespaced_endpoint_slice(
        vc.host_namespace, label_selector=f"kubernetes.io/service-name={hsvc}"
    ).items
    assert [s.metadata.name for s in mine] == [hname]
    disc.delete_namespaced_endpoint_slice("custom-1", "team-a")

    def gone() -> bool:
        names = [s.metadata.name for s in hdisc.list_namespaced_endpoint_slice(
            vc.host_namespace).items]  # fmt: skip
        return hname not in names

    wait_for(gone, what="host EndpointSlice deleted")
    vcore.delete_namespaced_service("custom", "team-a")
    for name in ("slice-a", "slice-b"):
        vcore.delete_namespaced_pod(name, "team-a", grace_period_seconds=0)


def test_selectorless_endpoints_reach_the_host_only_for_the_vclusters_pods(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    """A hand-written Endpoints reaches the host with its pod's address, not with another."""
    vcore.create_namespaced_service(
        "team-a", {"metadata": {"name": "by-hand"}, "spec": {"ports": [{"port": 80}]}}
    )
    vcore.create_namespaced_pod("team-a", _pod("late"))
    ip = wait_for(lambda: running(vcore, "team-a", "app=late", 1), what="pod")[0].status.pod_ip
    addresses = [{"ip": ip}, {"ip": "192.0.2.7"}]
    vcore.create_namespaced_endpoints(
        "team-a",
        {"metadata": {"name": "by-hand"},
         "subsets": [{"addresses": addresses, "ports": [{"port": 8080}]}]},
    )  # fmt: skip
    hname = host_name("by-hand", "team-a", "sync")

    def host_ips() -> list[str]:
        ep = hcore.read_namespaced_endpoints(hname, vc.host_namespace)
        return [a.ip for s in ep.subsets or [] for a in s.addresses or []]

    wait_for(lambda: host_ips() == [ip], what="host Endpoints with the pod's address only")
    vcore.delete_namespaced_service("by-hand", "team-a")
    vcore.delete_namespaced_pod("late", "team-a", grace_period_seconds=0)


def test_cluster_trust_bundles_are_the_vclusters(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    """A projected clusterTrustBundle names a bundle of the vcluster (the host kubelet would
    look on the host): its certificates go into the pod's token Secret, which the host pod
    mounts at the source's path."""
    import base64

    from kubernetes import config

    from pytest_vcluster.pki import CertificateAuthority
    from syncer.resources.tokens import token_secret_name

    pem = CertificateAuthority("bundle-test").pair.cert_pem.decode()
    api = config.new_client_from_config(str(vc.kubeconfig_path))
    client.CertificatesV1Api(api).create_cluster_trust_bundle(
        {"metadata": {"name": "test-bundle"}, "spec": {"trustBundle": pem}}
    )
    body = _pod(
        "with-ctb",
        volumes=[
            {
                "name": "ctbs",
                "projected": {
                    "sources": [{"clusterTrustBundle": {"name": "test-bundle", "path": "ca.pem"}}]
                },
            }
        ],
    )
    vcore.create_namespaced_pod("team-a", body)
    hname = host_name("with-ctb", "team-a", "sync")
    hpod = wait_for(lambda: hcore.read_namespaced_pod(hname, vc.host_namespace), what="host pod")
    (vol,) = [v for v in hpod.spec.volumes if v.name == "ctbs"]
    (src,) = vol.projected.sources
    assert src.cluster_trust_bundle is None  # the host's bundles are not asked
    assert [(i.key, i.path) for i in src.secret.items] == [("ctb.ctbs.0", "ca.pem")]

    def written() -> str:
        secret = hcore.read_namespaced_secret(token_secret_name(hname), vc.host_namespace)
        return base64.b64decode((secret.data or {}).get("ctb.ctbs.0", "")).decode()

    got = wait_for(written, what="bundle in the token Secret")
    assert got.strip() == pem.strip()
    vcore.delete_namespaced_pod("with-ctb", "team-a", grace_period_seconds=0)


def test_external_ips_are_not_copied_to_the_host(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    """A tenant's externalIPs would take any IP's traffic on the host (CVE-2020-8554)."""
    vcore.create_namespaced_service(
        "team-a",
        {"metadata": {"name": "grabby"},
         "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}],
                  "externalIPs": ["203.0.113.7"]}},
    )  # fmt: skip
    hname = host_name("grabby", "team-a", "sync")
    host = wait_for(lambda: hcore.read_namespaced_service(hname, vc.host_namespace), what="copy")
    assert not host.spec.external_ips

    def warned() -> list[str]:
        events = vcore.list_namespaced_event("team-a").items
        return [e.message for e in events if e.reason == "ExternalIPsNotSynced"]

    assert "203.0.113.7" in wait_for(warned, what="the Event")[0]
    vcore.delete_namespaced_service("grabby", "team-a")


def test_external_name_services_stay_virtual(
    vc: LocalVCluster, vcore: client.CoreV1Api, hcore: client.CoreV1Api
) -> None:
    """On the host an ExternalName Service would point the host's DNS and ingress controllers
    at any name; the vcluster's own DNS answers it inside. A Service that turns into one loses
    its host copy."""
    vcore.create_namespaced_service(
        "team-a",
        {"metadata": {"name": "alias"},
         "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}},
    )  # fmt: skip
    hname = host_name("alias", "team-a", "sync")
    wait_for(lambda: hcore.read_namespaced_service(hname, vc.host_namespace), what="copy")
    vcore.patch_namespaced_service(
        "alias",
        "team-a",
        {"spec": {"type": "ExternalName", "externalName": "kubernetes.default.svc.cluster.local",
                  "selector": None, "clusterIP": None, "clusterIPs": None, "ports": None}},
    )  # fmt: skip

    def host_copy_gone() -> bool:
        names = [s.metadata.name for s in hcore.list_namespaced_service(vc.host_namespace).items]
        return hname not in names

    wait_for(host_copy_gone, what="host copy removed")

    def warned() -> list[str]:
        events = vcore.list_namespaced_event("team-a").items
        return [e.message for e in events if e.reason == "ExternalNameNotSynced"]

    assert "kubernetes.default.svc.cluster.local" in wait_for(warned, what="the Event")[0]
    vcore.create_namespaced_service(
        "team-a",
        {"metadata": {"name": "alias2"},
         "spec": {"type": "ExternalName", "externalName": "example.com"}},
    )  # fmt: skip
    wait_for(lambda: len(warned()) >= 2 or None, what="an Event for the new one")
    assert host_name("alias2", "team-a", "sync") not in [
        s.metadata.name for s in hcore.list_namespaced_service(vc.host_namespace).items
    ]
    vcore.delete_namespaced_service("alias", "team-a")
    vcore.delete_namespaced_service("alias2", "team-a")
