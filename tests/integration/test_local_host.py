"""The embedded local host: real etcd, apiserver, controller-manager, scheduler and kwok."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kubernetes import client

from pytest_vcluster import procs
from pytest_vcluster.hosts import controlplane, local
from pytest_vcluster.hosts.controlplane import ControlPlane
from pytest_vcluster.hosts.local import LocalHost, reap_stale_workdirs
from pytest_vcluster.procs import ProcessGroup
from pytest_vcluster.versions import parse_k8s_version

K8S = parse_k8s_version(None)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value {last!r}")


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def host(local_binaries: dict[str, Path]):  # type: ignore[no-untyped-def]
    with LocalHost(K8S, local_binaries, nodes=2) as h:
        yield h


def test_ready_host_runs_deployments_on_fake_nodes(host: LocalHost) -> None:
    api = host.api_client()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    assert core.read_namespaced_service_account("default", "default").metadata.name == "default"
    nodes = core.list_node().items
    assert sorted(n.metadata.name for n in nodes) == ["kwok-node-0", "kwok-node-1"]
    assert all(c.status == "True" for n in nodes for c in n.status.conditions if c.type == "Ready")
    version = client.VersionApi(api).get_code()
    assert version.git_version == f"v{K8S}"

    labels = {"app": "demo"}
    apps.create_namespaced_deployment(
        "default",
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="demo"),
            spec=client.V1DeploymentSpec(
                replicas=4,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
                ),
            ),
        ),
    )

    def running() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod("default", label_selector="app=demo").items
        ok = len(pods) == 4 and all(p.status.phase == "Running" and p.status.pod_ip for p in pods)
        return pods if ok else []

    pods = wait_for(running, what="4 Running pods")
    assert {p.spec.node_name for p in pods} <= {"kwok-node-0", "kwok-node-1"}
    dep = wait_for(
        lambda: (
            (d := apps.read_namespaced_deployment("demo", "default")).status.ready_replicas == 4
            and d
        ),
        what="deployment ready",
    )
    assert dep.status.available_replicas == 4
    # Deleting a pod makes it go away (kwok's delete stage) and the ReplicaSet replaces it.
    core.delete_namespaced_pod(pods[0].metadata.name, "default")

    def replaced() -> bool:
        names = {p.metadata.name for p in core.list_namespaced_pod("default").items}
        return pods[0].metadata.name not in names and len(running()) == 4

    wait_for(replaced, what="deleted pod gone and replaced")
    api.close()


def test_authentication_and_rbac_are_real(host: LocalHost) -> None:
    cp = host.control_plane
    assert cp is not None
    port = int(cp.server.rsplit(":", 1)[1])

    def get(path: str, cert: tuple[Path, Path] | None) -> int:
        ctx = ssl.create_default_context(cafile=str(cp.workdir / "ca.crt"))
        if cert:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        import http.client

        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status

    assert get("/api/v1/pods", None) == 401  # no anonymous access at all
    nobody = cp.ca.issue("nobody", client=True)
    crt, key = nobody.write(cp.workdir, "nobody")
    assert get("/api/v1/pods", (crt, key)) == 403  # authenticated, but RBAC grants nothing
    assert get("/api/v1/pods", (cp.workdir / "admin.crt", cp.workdir / "admin.key")) == 200


def test_etcd_prefix_isolates_control_planes(host: LocalHost, tmp_path: Path) -> None:
    assert host.etcd is not None
    core = client.CoreV1Api(host.api_client())
    core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="host-only"))
    )
    group = ProcessGroup()
    other = ControlPlane(
        name="other",
        workdir=tmp_path / "other",
        binaries=host.binaries,
        etcd_url=host.etcd.url,
        etcd_prefix="/vcluster/other",
        procs=group,
        scheduler=False,
    )
    try:
        other.start()
        deadline = time.monotonic() + 60
        other.wait_apiserver(deadline)
        other.wait_default_service_account(deadline)
        from kubernetes import config

        oc = client.CoreV1Api(config.new_client_from_config(str(other.kubeconfig_path)))
        names = {c.metadata.name for c in oc.list_namespaced_config_map("default").items}
        assert "host-only" not in names
        assert oc.list_node().items == []  # the host's nodes are not visible either
        oc.create_namespaced_config_map(
            "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="other-only"))
        )
        host_names = {c.metadata.name for c in core.list_namespaced_config_map("default").items}
        assert "other-only" not in host_names
    finally:
        group.stop()


def test_stop_leaves_no_process_and_no_data(local_binaries: dict[str, Path]) -> None:
    h = LocalHost(K8S, local_binaries)
    h.start()
    pids, workdir = h.pids(), h.workdir
    assert len(pids) == 5
    assert all(procs.pid_alive(p) for p in pids)
    rss = h.rss()
    assert set(rss) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    assert all(v > 1_000_000 for v in rss.values())
    h.stop()
    assert not any(procs.pid_alive(p) for p in pids)
    assert not workdir.exists()
    assert processes_mentioning(str(workdir)) == []


def test_port_taken_picks_another(
    local_binaries: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        real = procs.free_port
        handed: list[int] = []

        def first_taken(host: str = "127.0.0.1") -> int:
            port = taken if not handed else real(host)
            handed.append(port)
            return port

        monkeypatch.setattr(controlplane, "free_port", first_taken)
        with LocalHost(K8S, local_binaries) as h:
            assert h.etcd is not None
            assert handed[0] == taken
            assert f":{taken}" not in h.etcd.url
            assert "address already in use" in (h.workdir / "etcd.log").read_text()


START_AND_WAIT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pytest_vcluster.hosts.local import LocalHost
    from pytest_vcluster.versions import parse_k8s_version
    bins = dict(a.split("=", 1) for a in sys.argv[1:])
    host = LocalHost(parse_k8s_version(None), {k: Path(v) for k, v in bins.items()},
                     progress=lambda m: print(m, flush=True))
    with host:
        print("WORKDIR", host.workdir, flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_runner_killed_mid_start_leaves_no_process(
    local_binaries: dict[str, Path], sig: signal.Signals
) -> None:
    argv = [sys.executable, "-c", START_AND_WAIT, *(f"{k}={v}" for k, v in local_binaries.items())]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # kill it while it waits for the apiserver
        if "waiting for kube-apiserver" in line:
            break
    root = local.runtime_root()
    workdirs = [
        d
        for d in root.iterdir()
        if (d / "owner").exists() and (d / "owner").read_text().split()[0] == str(proc.pid)
    ]
    assert len(workdirs) == 1
    workdir = workdirs[0]
    assert len(processes_mentioning(str(workdir))) >= 3  # etcd, apiserver, controller-manager...
    proc.send_signal(sig)
    proc.wait(30)
    wait_for(lambda: processes_mentioning(str(workdir)) == [], 10, "children to exit")
    if sig == signal.SIGKILL:
        assert workdir.exists()  # nobody could clean up ...
        assert workdir in reap_stale_workdirs(root)  # ... so the next start does
    assert not workdir.exists()
