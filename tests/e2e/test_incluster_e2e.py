"""vclusters as Helm releases of chart/ on the offline kind host (real pods, real containers).

    pytest -m e2e tests/e2e/test_incluster_e2e.py -s

Builds (or finds) the control-plane and syncer images, loads them into the kind cluster and
creates vclusters with ``VCluster`` on the ``kind_host`` fixture's cluster.

``test_zz_nothing_left_on_the_host`` runs last, after test_incluster_connectivity_e2e.py too
(modules run in file-name order): nothing of either module may be left on the host.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pytest_vcluster.errors import VClusterError
from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster

from .conftest import E2E_CLUSTER
from .conftest import vcluster_images as vcluster_images  # re-exported: test_kubeconfig_host_e2e

pytestmark = pytest.mark.e2e

PAUSE = "registry.k8s.io/pause:3.10.2"  # preloaded in the node image


def _deployment(replicas: int = 2) -> dict[str, Any]:
    labels = {"app": "sleepy"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sleepy", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "pause", "image": PAUSE, "imagePullPolicy": "Never"}],
                },
            },
        },
    }


def _namespace_gone(kind_host: KindHost, ns: str) -> bool:
    got = kind_host.kubectl_run("get", "namespace", ns, check=False)
    return got.returncode != 0 and "NotFound" in got.stderr


def test_vcluster_release_runs_real_pods_and_leaves_nothing(
    kind_host: KindHost, vcluster_images: dict[str, str]
) -> None:
    vc = VCluster(kind_host.info(), "e2e-a", images=vcluster_images, timeout=180, progress=print)
    vc.create()
    ns = vc.host_namespace
    try:
        print(f"vcluster ready in {vc.ready_seconds:.2f}s; stages {vc._impl.timings}")
        release = kind_host.kubectl_run("get", "statefulset,service,secret", "-n", ns).stdout
        assert "vc-e2e-a" in release
        # Its etcd started from the image's template (the bootstrap RBAC already in place).
        log = kind_host.kubectl_run("logs", "-n", ns, "e2e-a-0", "-c", "control-plane").stdout
        assert "seed: /data/etcd copied from /usr/local/share/pytest-vcluster/etcd-template" in log
        t0 = time.monotonic()
        vc.apply(_deployment())
        vc.wait_for("Deployment", "sleepy", "Available", api_version="apps/v1", timeout=120)
        print(f"Deployment Available in the vcluster after {time.monotonic() - t0:.2f}s")
        pods = kind_host.kubectl_json("get", "pods", "-n", ns)["items"]
        synced = [  # the Deployment's pods (CoreDNS's pod is synced too)
            p
            for p in pods
            if (p["metadata"].get("annotations") or {})
            .get("vc.pytest-vcluster.io/object-name", "")
            .startswith("sleepy-")
        ]
        assert len(synced) == 2, [p["metadata"]["name"] for p in pods]
        for p in synced:
            assert p["status"]["phase"] == "Running"
            assert p["spec"]["nodeName"] == f"{E2E_CLUSTER}-control-plane"
            statuses = p["status"]["containerStatuses"]
            assert statuses[0]["containerID"].startswith("containerd://")  # a real container
        from kubernetes import client

        virtual = client.CoreV1Api(vc.api_client).list_namespaced_pod("default").items
        assert sorted(p.status.phase for p in virtual) == ["Running", "Running"]
    finally:
        vc.delete(wait=False)
    print(f"vcluster deleted in {vc.teardown_seconds:.2f}s")
    # Returned with the release and every pod gone, the namespace terminating (its controller
    # removes it after a fixed 5 s).
    assert kind_host.kubectl_run("get", "pods", "-n", ns, "-o", "name").stdout.strip() == ""
    releases = kind_host.kubectl_run(
        "get", "secrets", "-n", ns, "-l", "owner=helm", "-o", "name", check=False
    ).stdout
    assert releases.strip() == ""
    left = kind_host.kubectl_run(
        "get", "namespace", ns, "-o", "jsonpath={.status.phase}", check=False
    )
    assert left.stdout in ("Terminating", "")
    assert left.stdout or "NotFound" in left.stderr
    assert vc.wait_deleted(timeout=60)
    print(f"host namespace gone {vc._impl.deleted_seconds:.2f}s after delete()")  # type: ignore[union-attr]
    assert _namespace_gone(kind_host, ns)
    assert "e2e-a" not in kind_host.kubectl_run("get", "pods", "-A").stdout


def test_values_error_is_clear_and_leaves_nothing(
    kind_host: KindHost, vcluster_images: dict[str, str]
) -> None:
    """Checked against the chart's schema when the handle is made, as the marker's values are:
    one clear error, nothing installed."""
    with pytest.raises(
        VClusterError, match=r"VCluster\(values=\.\.\.\): fails the chart's"
    ) as info:
        VCluster(
            kind_host.info(),
            "e2e-bad-values",
            images=vcluster_images,
            values={"syncer": {"wokers": 2}},
            timeout=60,
        )
    assert "wokers" in str(info.value)
    assert "additional properties" in str(info.value).lower()
    assert _namespace_gone(kind_host, "vcluster-e2e-bad-values")


def test_missing_image_fails_fast_with_the_reason(
    kind_host: KindHost, vcluster_images: dict[str, str]
) -> None:
    vc = VCluster(
        kind_host.info(),
        "e2e-no-image",
        images=vcluster_images,
        values={"syncer": {"image": {"tag": "does-not-exist", "pullPolicy": "Never"}}},
        timeout=120,
    )
    t0 = time.monotonic()
    with pytest.raises(VClusterError, match="ErrImageNeverPull"):
        vc.create()
    assert time.monotonic() - t0 < 30
    assert _namespace_gone(kind_host, vc.host_namespace)


def test_plugin_vcluster_fixture_on_kind(
    pytester: pytest.Pytester,
    kind_host: KindHost,
    images_env: None,
) -> None:
    pytester.makepyfile(
        """
        from kubernetes import client

        def test_vcluster(vcluster, host_client):
            core = client.CoreV1Api(vcluster.api_client)
            assert core.read_namespaced_service_account("default", "default")
            host = client.CoreV1Api(host_client)
            assert host.read_namespaced_secret("vc-" + vcluster.name, vcluster.host_namespace)
        """
    )
    result = pytester.runpytest_subprocess(
        "--vcluster-host=kind",
        f"--vcluster-kind-cluster={E2E_CLUSTER}",
        f"--vcluster-kind-image={kind_host.image or ''}",
        f"--vcluster-cache-dir={kind_host.cache_dir}",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1)
    left = kind_host.kubectl_run(
        "get", "namespaces", "-l", "app.kubernetes.io/managed-by=pytest-vcluster", "-o", "name"
    ).stdout
    assert left.strip() == ""


def test_unschedulable_pod_fails_fast_with_the_reason(
    kind_host: KindHost, vcluster_images: dict[str, str]
) -> None:
    vc = VCluster(
        kind_host.info(),
        "e2e-unsched",
        images=vcluster_images,
        values={"nodeSelector": {"pytest-vcluster.io/no-such-node": "x"}},
        timeout=120,
    )
    t0 = time.monotonic()
    with pytest.raises(VClusterError, match="Unschedulable"):
        vc.create()
    assert time.monotonic() - t0 < 30
    assert _namespace_gone(kind_host, vc.host_namespace)


def test_host_without_namespace_rights_fails_with_the_reason(
    kind_host: KindHost, vcluster_images: dict[str, str], tmp_path: Path
) -> None:
    """A kubeconfig that may not create namespaces: one clear error, nothing created."""
    ns = "e2e-limited"
    kind_host.kubectl_run("create", "namespace", ns)
    try:
        kind_host.kubectl_run("create", "serviceaccount", "tester", "-n", ns)
        token = kind_host.kubectl_run("create", "token", "tester", "-n", ns).stdout.strip()
        import yaml

        cfg = yaml.safe_load(kind_host.kubeconfig_path.read_text())
        cfg["users"] = [{"name": "tester", "user": {"token": token}}]
        for ctx in cfg["contexts"]:
            ctx["context"]["user"] = "tester"
        limited = tmp_path / "limited.kubeconfig"
        limited.write_text(yaml.safe_dump(cfg))
        import dataclasses

        info = dataclasses.replace(kind_host.info(), kubeconfig=str(limited))
        vc = VCluster(info, "e2e-noperm", images=vcluster_images, timeout=60)
        t0 = time.monotonic()
        with pytest.raises(VClusterError, match="does not let this kubeconfig create namespaces"):
            vc.create()
        assert time.monotonic() - t0 < 30
        assert _namespace_gone(kind_host, vc.host_namespace)
    finally:
        kind_host.kubectl_run("delete", "namespace", ns, "--wait=false")


def test_helm_test_hook_persistence_and_nothing_left(
    kind_host: KindHost, vcluster_images: dict[str, str]
) -> None:
    """etcd on a PVC (local-path in the node), `helm test` passes, and deleting the vcluster
    removes the claim with everything else."""
    values = {"controlPlane": {"persistence": {"enabled": True, "size": "64Mi"}}}
    vc = VCluster(kind_host.info(), "e2e-pvc", images=vcluster_images, values=values, timeout=180)
    vc.create()
    ns = vc.host_namespace
    try:
        pvcs = kind_host.kubectl_json("get", "pvc", "-n", ns)["items"]
        assert [p["metadata"]["name"] for p in pvcs] == ["data-e2e-pvc-0"]
        assert pvcs[0]["status"]["phase"] == "Bound"
        impl = vc._impl
        proc = impl.helm("test", impl.release, "-n", ns, "--timeout", "120s", timeout=150)  # type: ignore[union-attr]
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Succeeded" in proc.stdout
    finally:
        vc.delete()
    assert _namespace_gone(kind_host, ns)
    left = kind_host.kubectl_run("get", "pvc", "-A", "-o", "name").stdout
    assert "e2e-pvc" not in left


def test_vcluster_of_another_kubernetes_version(
    kind_host: KindHost, vcluster_images: dict[str, str], control_plane_image_136: str
) -> None:
    """A 1.36 vcluster on the 1.37 kind host: its control-plane image is the version."""
    from kubernetes import client

    images = {**vcluster_images, "controlPlane": control_plane_image_136}
    with VCluster(
        kind_host.info(), "e2e-v136", images=images, k8s_version="1.36", timeout=240
    ) as vc:
        assert client.VersionApi(vc.api_client).get_code().git_version == "v1.36.3"
        # The syncer serves it like any other: the default ServiceAccount, its DNS (CoreDNS in
        # the vcluster's pod, from the 1.36 image) answering at the kube-dns Service.
        core = client.CoreV1Api(vc.api_client)
        assert core.read_namespaced_service_account("default", "default")
        eps = core.read_namespaced_endpoints("kube-dns", "kube-system")
        assert [p.port for p in eps.subsets[0].ports] == [1053, 1053]
        assert (
            vc._impl.dns_ip
            == core.read_namespaced_service("kube-dns", "kube-system").spec.cluster_ip
        )


def test_plain_helm_install_without_the_plugin(
    kind_host: KindHost, vcluster_images: dict[str, str], tools: dict[str, Path], tmp_path: Path
) -> None:
    """The chart on its own, as its NOTES.txt says: `helm install` with the image values only
    (the chart makes its certificates and an admin token), the kubeconfig from Secret
    vc-<release>, `kubectl port-forward`; `helm uninstall` and the namespace take the rest."""
    import base64
    import subprocess

    import yaml
    from kubernetes import client, config

    from pytest_vcluster.hosts.incluster import CHART_DIR, split_image
    from pytest_vcluster.procs import free_port

    ns, release = "plain-helm", "plain"
    kubeconfig = str(kind_host.kubeconfig_path)
    helm = [str(tools["helm"]), "--kubeconfig", kubeconfig]
    sets: list[str] = []
    for key, ref in (
        ("controlPlane", vcluster_images["controlPlane"]),
        ("syncer", vcluster_images["syncer"]),
    ):
        repo, tag = split_image(ref)
        sets += ["--set", f"{key}.image.repository={repo}", "--set", f"{key}.image.tag={tag}"]
    # What pytest-vcluster would do on kind; with a registry, `--set` its references instead.
    kind_host.load_images([vcluster_images["controlPlane"], vcluster_images["syncer"]])
    forward: subprocess.Popen[bytes] | None = None
    try:
        install = subprocess.run(
            [*helm, "install", release, str(CHART_DIR), "-n", ns, "--create-namespace", *sets],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert install.returncode == 0, install.stderr
        assert "port-forward" in install.stdout  # NOTES.txt
        kind_host.kubectl_run(
            "wait", "--for=condition=Ready", f"pod/{release}-0", "-n", ns, "--timeout=180s",
            timeout=200,
        )  # fmt: skip
        secret = kind_host.kubectl_json("get", "secret", f"vc-{release}", "-n", ns)
        port = free_port()
        kubeconfig_doc = yaml.safe_load(base64.b64decode(secret["data"]["config"]))
        # Through the port-forward (the certificate names 127.0.0.1), as NOTES.txt says.
        kubeconfig_doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
        path = tmp_path / "vcluster.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig_doc))
        forward = subprocess.Popen(
            [str(tools["kubectl"]), "--kubeconfig", kubeconfig, "-n", ns, "port-forward",
             f"svc/{release}", f"{port}:443"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(path), client_configuration=cfg)
        api = client.ApiClient(cfg)
        deadline = time.monotonic() + 30
        while True:
            try:
                review = client.AuthenticationV1Api(api).create_self_subject_review(
                    client.V1SelfSubjectReview()
                )
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert review.status.user_info.username == "admin"
        assert "system:masters" in review.status.user_info.groups
        names = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
        assert {"default", "kube-system"} <= names
        # The syncer works with the chart's own PKI: the vcluster's kube-dns takes the IP of
        # the chart's Service in front of CoreDNS (in the vcluster's pod), and what a test
        # makes in the vcluster runs in the host namespace.
        core = client.CoreV1Api(api)
        dns = kind_host.kubectl_json("get", "service", f"{release}-dns", "-n", ns)
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": "settings"}, "data": {"greeting": "hi"}}
        )
        core.create_namespaced_service(
            "default",
            {"metadata": {"name": "web"},
             "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
        )  # fmt: skip
        core.create_namespaced_pod("default", _sleeper(vcluster_images["syncer"]))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            virtual_dns = core.read_namespaced_service("kube-dns", "kube-system").spec.cluster_ip
            pods = kind_host.kubectl_json("get", "pods", "-n", ns)["items"]
            running = [
                p for p in pods
                if (p["metadata"].get("annotations") or {}).get("vc.pytest-vcluster.io/object-name")
                == "web-0" and p["status"].get("phase") == "Running"
            ]  # fmt: skip
            if running and virtual_dns == dns["spec"]["clusterIP"]:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"web-0 not running in {ns}, or kube-dns at {virtual_dns}")
        api.close()
        # `helm uninstall` alone removes what the syncer made: every synced object is owned by
        # the release's Service, and the host's garbage collector follows its deletion.
        synced = _synced_objects(kind_host, ns)
        assert any(n.startswith("pod/web-0-x-") for n in synced), synced
        assert any(n.startswith("configmap/settings-x-") for n in synced), synced
        assert any(n.startswith("service/web-x-") for n in synced), synced
        t0 = time.monotonic()
        uninstall = subprocess.run(
            [*helm, "uninstall", release, "-n", ns], capture_output=True, text=True, timeout=120
        )
        assert uninstall.returncode == 0, uninstall.stderr
        while (left := _synced_objects(kind_host, ns)) and time.monotonic() - t0 < 60:
            time.sleep(0.5)
        print(f"synced objects gone {time.monotonic() - t0:.1f}s after helm uninstall")
        assert left == [], left
    finally:
        if forward is not None:
            forward.kill()
            forward.wait()
        subprocess.run([*helm, "uninstall", release, "-n", ns], capture_output=True, timeout=120)
        kind_host.kubectl_run("delete", "namespace", ns, "--wait=true", check=False, timeout=180)
    assert _namespace_gone(kind_host, ns)


def _sleeper(image: str) -> dict[str, Any]:
    """A pod that idles, with a ConfigMap mounted (so the ConfigMap is synced too)."""
    return {
        "metadata": {"name": "web-0", "labels": {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": ["python3", "-c", "import time; time.sleep(3600)"],
                    "volumeMounts": [{"name": "settings", "mountPath": "/settings"}],
                }
            ],
            "volumes": [{"name": "settings", "configMap": {"name": "settings"}}],
        },
    }


def _synced_objects(kind_host: KindHost, ns: str) -> list[str]:
    """Host objects in ``ns`` that the syncer made (token Secrets included), by kind/name."""
    kinds = "pods,secrets,configmaps,services,endpoints,persistentvolumeclaims"
    managed = kind_host.kubectl_run(
        "get", kinds, "-n", ns, "-l", "vc.pytest-vcluster.io/managed-by", "-o", "name"
    ).stdout.split()
    tokens = kind_host.kubectl_run(
        "get", "secrets", "-n", ns, "-l", "vc.pytest-vcluster.io/token-of", "-o", "name"
    ).stdout.split()
    return sorted(set(managed + tokens))


def test_zz_nothing_left_on_the_host(kind_host: KindHost) -> None:
    """Runs last in this module: no namespace, release, pod or PVC of these tests is left."""
    left = kind_host.kubectl_run(
        "get", "namespaces", "-l", "app.kubernetes.io/managed-by=pytest-vcluster", "-o", "name"
    ).stdout
    assert left.strip() == ""
    everything = kind_host.kubectl_run("get", "pods,pvc,secrets", "-A", "-o", "name").stdout
    names = [ln.split("/", 1)[1] for ln in everything.split()]
    ours = [n for n in names if n.startswith(("e2e-", "data-e2e-"))]
    assert ours == []
    namespaces = kind_host.kubectl_run("get", "namespaces", "-o", "name").stdout
    assert "vcluster-e2e" not in namespaces
    assert "plain-helm" not in namespaces
    deadline = time.monotonic() + 60  # local-path deletes released volumes asynchronously
    while "vcluster-e2e" in (pvs := kind_host.kubectl_run("get", "pv", "-o", "json").stdout):
        assert time.monotonic() < deadline, pvs
        time.sleep(1)
