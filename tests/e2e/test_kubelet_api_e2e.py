"""logs, exec, attach, port-forward and cp through a vcluster on kind: real containers, the
clients users run (kubectl, the ``kubernetes`` package), and the same answers a real cluster
gives — compared against the kind host itself where a message is checked.

    pytest -m e2e tests/e2e/test_kubelet_api_e2e.py -s
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.stream import portforward, stream

from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster

from .manifests import pod as _pod

pytestmark = pytest.mark.e2e

NAME = "kapi"


WEB = (
    "mkdir -p /a /b && echo port-a > /a/index.html && echo port-b > /b/index.html && "
    "httpd -p 8080 -h /a && exec httpd -f -p 8081 -h /b"
)
SHELL = "echo started; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo after-open; exec sleep 3600"


@pytest.fixture(scope="module")
def vc(kind_host: KindHost, vcluster_images: dict[str, str], app_image: str) -> Iterator[VCluster]:
    kind_host.load_images([app_image])
    vc = VCluster(kind_host.info(), NAME, images=vcluster_images, timeout=180, progress=print)
    vc.create()
    try:
        vc.apply(
            [
                _pod("shell", app_image, SHELL),
                _pod("web", app_image, WEB, container={"readinessProbe": _ready(8081)}),
                _pod(
                    "echoer",
                    app_image,
                    "while read l; do echo got-$l; done",
                    container={"stdin": True},
                ),
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "web"},
                    "spec": {
                        "selector": {"app": "web"},
                        "ports": [
                            {"name": "a", "port": 80, "targetPort": 8080},
                            {"name": "b", "port": 81, "targetPort": 8081},
                        ],
                    },
                },
            ]
        )
        for pod in ("shell", "web", "echoer"):
            vc.wait_for("Pod", pod, "Ready", timeout=120)
        yield vc
    finally:
        log = getattr(vc._impl, "workdir", Path("/nonexistent")) / "port-forward.log"
        if log.exists():  # shown with -s: restarts of the plugin's port-forward, and why
            print("port-forward.log (tail):\n" + log.read_text()[-3000:])
        vc.delete()


def _ready(port: int) -> dict[str, Any]:
    return {"tcpSocket": {"port": port}, "periodSeconds": 1}


@pytest.fixture(scope="module")
def core(vc: VCluster) -> client.CoreV1Api:
    return client.CoreV1Api(vc.api_client)


def _kubectl(vc: VCluster) -> list[str]:
    return [str(vc.tool("kubectl")), f"--kubeconfig={vc.kubeconfig_path}"]


class Lines:
    """A subprocess's stdout read line by line on a thread (select() cannot see what the
    text wrapper has buffered already)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        import queue
        import threading

        self.queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                self.queue.put(line)
            self.queue.put("")

        threading.Thread(target=pump, daemon=True).start()

    def next(self, timeout: float) -> str:
        import queue

        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return ""


_lines: dict[int, Lines] = {}


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line of ``proc``'s stdout, "" after ``timeout`` or at its end."""
    if proc.pid not in _lines:
        _lines[proc.pid] = Lines(proc)
    return _lines[proc.pid].next(timeout)


def _host_metric(kind_host: KindHost, vc: VCluster, name: str) -> float:
    path = f"/api/v1/namespaces/{vc.host_namespace}/pods/{NAME}-0:8081/proxy/metrics"
    text = kind_host.kubectl_run("get", "--raw", path).stdout
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


# -- logs -----------------------------------------------------------------------------------------
def test_logs_follow_streams_lines_as_they_are_written(vc: VCluster) -> None:
    """A line written after the stream opened arrives while it is still open."""
    proc = subprocess.Popen(
        [*_kubectl(vc), "logs", "-f", "shell"], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        assert _readline(proc, 30).strip() == "started"
        vc.kubectl("exec", "shell", "--", "touch", "/tmp/go")
        assert _readline(proc, 15).strip() == "after-open"
        assert proc.poll() is None  # still following
    finally:
        proc.kill()
        proc.wait()


def test_log_options(vc: VCluster, core: client.CoreV1Api) -> None:
    vc.kubectl("exec", "shell", "--", "touch", "/tmp/go")
    full = vc.kubectl("logs", "shell").stdout
    assert full.splitlines()[:1] == ["started"]
    assert vc.kubectl("logs", "shell", "--tail=1").stdout.splitlines() == [full.splitlines()[-1]]
    assert vc.kubectl("logs", "shell", "--limit-bytes=3").stdout == full[:3]
    stamped = vc.kubectl("logs", "shell", "--timestamps", "-c", "c").stdout.splitlines()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z started$", stamped[0]), stamped
    assert vc.kubectl("logs", "shell", "--since=1h").stdout == full
    assert (
        core.read_namespaced_pod_log("shell", "default", tail_lines=1)
        == full.splitlines()[-1] + "\n"
    )
    assert vc.logs("shell") == full  # the handle reads through the vcluster too


# -- exec -----------------------------------------------------------------------------------------
def test_exec_with_stdin_and_exit_codes(vc: VCluster) -> None:
    out = vc.kubectl("exec", "-i", "shell", "--", "cat", input="hello\nworld\n").stdout
    assert out == "hello\nworld\n"
    proc = vc.kubectl(
        "exec", "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False
    )
    assert proc.returncode == 3
    assert proc.stdout == "out\n"
    assert "err" in proc.stderr


def test_python_client_exec_exit_code_and_tty_resize(core: client.CoreV1Api) -> None:
    out = stream(
        core.connect_get_namespaced_pod_exec,
        "shell",
        "default",
        command=["cat", "/a"],
        stderr=True,
        stdout=True,
        _preload_content=True,
    )
    assert "No such file or directory" in out
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "shell",
        "default",
        command=["sh", "-c", "exit 7"],
        stdout=True,
        stderr=True,
        _preload_content=False,
    )
    resp.run_forever(timeout=30)
    assert resp.returncode == 7
    tty = stream(
        core.connect_get_namespaced_pod_exec,
        "shell",
        "default",
        command=["sh"],
        stdin=True,
        stdout=True,
        tty=True,
        _preload_content=False,
    )
    try:
        tty.write_channel(4, json.dumps({"Width": 123, "Height": 45}))  # the resize channel
        time.sleep(0.5)
        tty.write_stdin("stty size; exit\n")
        seen = ""
        deadline = time.monotonic() + 30
        while "45 123" not in seen and tty.is_open() and time.monotonic() < deadline:
            tty.update(timeout=1)
            seen += tty.read_stdout(timeout=0.1) or ""
        assert "45 123" in seen, seen
    finally:
        tty.close()


def test_exec_errors_match_the_host(vc: VCluster, kind_host: KindHost, app_image: str) -> None:
    """A container that does not exist, a pod whose container never started, a log of a
    container that never ran: the vcluster answers what the kind cluster itself answers for
    the same pods (exit code and message)."""
    ns = f"kapi-ref-{uuid.uuid4().hex[:6]}"
    kind_host.kubectl_run("create", "namespace", ns)
    stuck = _pod("stuck", "pytest-vcluster/does-not-exist:1", "true")
    try:
        for obj in (stuck, _pod("shell", app_image, SHELL)):
            kind_host.kubectl_run("apply", "-n", ns, "-f", "-", input=json.dumps(obj))
        vc.apply(stuck)
        _wait(
            lambda: "ErrImageNeverPull" in vc.kubectl("get", "pod", "stuck", "-o", "json").stdout,
            60,
        )
        _wait(
            lambda: (
                "ErrImageNeverPull"
                in kind_host.kubectl_run("get", "pod", "-n", ns, "stuck", "-o", "json").stdout
            ),
            60,
        )
        kind_host.kubectl_run(
            "wait", "-n", ns, "--for=condition=Ready", "pod/shell", "--timeout=60s"
        )
        for args in (
            ("exec", "shell", "-c", "nope", "--", "true"),
            ("exec", "stuck", "--", "true"),
            ("logs", "stuck"),
            ("port-forward", "stuck", ":80"),
        ):
            got = vc.kubectl(*args, check=False, timeout=60)
            ref = kind_host.kubectl_run("-n", ns, *args, check=False)
            assert got.returncode == ref.returncode != 0, (got, ref)
            assert got.stderr.strip() == ref.stderr.strip(), (got.stderr, ref.stderr)
    finally:
        kind_host.kubectl_run("delete", "namespace", ns, "--wait=false", check=False)
        vc.kubectl("delete", "pod", "stuck", "--wait=false", check=False)


def _wait(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s")


def test_attach_with_stdin(vc: VCluster) -> None:
    proc = subprocess.Popen(
        [*_kubectl(vc), "attach", "-i", "echoer"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    try:
        assert proc.stdin is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and line != "got-ping":
            proc.stdin.write("ping\n")
            proc.stdin.flush()
            line = _readline(proc, 2).strip()
        assert line == "got-ping"
    finally:
        proc.kill()
        proc.wait()


def test_kubectl_debug_runs_an_ephemeral_container(vc: VCluster, app_image: str) -> None:
    """``kubectl debug --profile=baseline``: the ephemeral container reaches the host pod,
    runs, and its log and status come back."""
    vc.kubectl(
        "debug", "shell", f"--image={app_image}", "--image-pull-policy=Never", "--profile=baseline",
        "--container=dbg", "--", "sh", "-c", "echo debug-ok; sleep 3600",
    )  # fmt: skip
    _wait(lambda: "debug-ok" in vc.kubectl("logs", "shell", "-c", "dbg", check=False).stdout, 90)
    pod = json.loads(vc.kubectl("get", "pod", "shell", "-o", "json").stdout)
    statuses = pod["status"].get("ephemeralContainerStatuses") or []
    assert [s["name"] for s in statuses] == ["dbg"]
    assert "running" in statuses[0]["state"]


def test_kubectl_debug_default_profile_is_refused_with_an_event(
    vc: VCluster, app_image: str
) -> None:
    """kubectl's default ``general`` profile adds SYS_PTRACE, which Pod Security baseline
    forbids: not synced, and the Event says why (``--profile=baseline`` works, above)."""
    vc.kubectl(
        "debug", "shell", f"--image={app_image}", "--image-pull-policy=Never",
        "--container=ptrace", "--", "sleep", "3600",
    )  # fmt: skip

    def refused() -> bool:
        events = vc.kubectl(
            "get", "events", "--field-selector=involvedObject.name=shell", "-o", "json"
        ).stdout
        return any(
            e.get("reason") == "SyncDenied" and "'ptrace': capability SYS_PTRACE" in e["message"]
            for e in json.loads(events)["items"]
        )

    _wait(refused, 60)
    pod = json.loads(vc.kubectl("get", "pod", "shell", "-o", "json").stdout)
    names = [s["name"] for s in pod["status"].get("ephemeralContainerStatuses") or []]
    assert "ptrace" not in names


# -- port-forward ---------------------------------------------------------------------------------
def _forward(vc: VCluster, target: str, *ports: str) -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen(
        [*_kubectl(vc), "port-forward", target, *ports],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    local: list[int] = []
    while len(local) < len(ports):
        line = _readline(proc, 30)
        if not line:
            proc.kill()
            raise AssertionError(f"port-forward printed nothing: {proc.stderr.read()}")  # type: ignore[union-attr]
        m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
        if m:
            local.append(int(m.group(1)))
    return proc, local


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as resp:
        return str(resp.read().decode().strip())


def test_port_forward_pod_two_ports_100_concurrent_connections(vc: VCluster) -> None:
    proc, (a, b) = _forward(vc, "pod/web", ":8080", ":8081")
    try:
        with ThreadPoolExecutor(100) as pool:
            got = list(pool.map(_get, [a, b] * 50))
        assert got == ["port-a", "port-b"] * 50
    finally:
        proc.kill()
        proc.wait()


def test_port_forward_service(vc: VCluster) -> None:
    proc, (a, b) = _forward(vc, "svc/web", ":80", ":81")
    try:
        assert (_get(a), _get(b)) == ("port-a", "port-b")
    finally:
        proc.kill()
        proc.wait()


def test_python_client_portforward(core: client.CoreV1Api) -> None:
    """The client's WebSocket port-forward (v4.channel.k8s.io, passed through by both API
    servers to the kubelet). One forward per connection: its websocket ends with the first."""
    for port, body in ((8080, b"port-a"), (8081, b"port-b")):
        pf = portforward(
            core.connect_get_namespaced_pod_portforward, "web", "default", ports=str(port)
        )
        try:
            sock = pf.socket(port)
            sock.setblocking(True)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            assert data.startswith(b"HTTP/1.")
            assert data.rstrip().endswith(body)
            assert pf.error(port) is None
        finally:
            pf.close()


# -- cp -------------------------------------------------------------------------------------------
def test_kubectl_cp_both_ways(vc: VCluster, tmp_path: Path) -> None:
    data = os.urandom(1 << 20)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    vc.kubectl("cp", str(src), "default/shell:/tmp/up.bin")
    back = tmp_path / "back.bin"
    vc.kubectl("cp", "default/shell:/tmp/up.bin", str(back))
    assert back.read_bytes() == data


# -- rights ---------------------------------------------------------------------------------------
def test_user_without_exec_rights_gets_403(vc: VCluster, core: client.CoreV1Api) -> None:
    rbac = client.RbacAuthorizationV1Api(vc.api_client)
    core.create_namespaced_service_account("default", {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        "default",
        {
            "metadata": {"name": "reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "reader", "default", {"spec": {"expirationSeconds": 600}}
    ).status.token
    # A kubeconfig of that user alone (with the admin's client certificate beside a token,
    # the API server would authenticate the certificate).
    cfg = client.Configuration()
    cfg.host = vc.api_client.configuration.host
    cfg.ssl_ca_cert = vc.api_client.configuration.ssl_ca_cert
    reader_kubeconfig = Path(vc.kubeconfig_path).with_name("reader.kubeconfig")
    reader_kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "vc", "cluster": {"server": cfg.host,
                              "certificate-authority": cfg.ssl_ca_cert}}],
                "users": [{"name": "reader", "user": {"token": token}}],
                "contexts": [{"name": "reader", "context": {"cluster": "vc", "user": "reader"}}],
                "current-context": "reader",
            }
        )
    )  # fmt: skip
    kubectl = [str(vc.tool("kubectl")), f"--kubeconfig={reader_kubeconfig}"]
    assert subprocess.run([*kubectl, "get", "pod", "shell"], capture_output=True).returncode == 0
    proc = subprocess.run(
        [*kubectl, "exec", "shell", "--", "true"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "Forbidden" in proc.stderr or "forbidden" in proc.stderr, proc.stderr
    assert 'cannot create resource "pods/exec"' in proc.stderr
    cfg.api_key = {"authorization": f"Bearer {token}"}
    reader = client.CoreV1Api(client.ApiClient(cfg))
    with pytest.raises(ApiException) as err:
        reader.read_namespaced_pod_log("shell", "default")
    assert err.value.status == 403


def test_no_kubelet_connection_is_left_open(vc: VCluster, kind_host: KindHost) -> None:
    def closed() -> bool:
        return _host_metric(kind_host, vc, "syncer_kubelet_open_connections") == 0

    try:
        _wait(closed, 40)  # a connection that never sent a request is closed after 30 s
    except AssertionError:
        path = f"/api/v1/namespaces/{vc.host_namespace}/pods/{NAME}-0:8081/proxy/metrics"
        metrics = kind_host.kubectl_run("get", "--raw", path).stdout
        raise AssertionError(
            "open: " + " ".join(ln for ln in metrics.splitlines() if "open" in ln)
        ) from None


# -- the syncer restarted under an open stream ----------------------------------------------------
def test_syncer_restart_ends_an_open_log_stream_cleanly(vc: VCluster, kind_host: KindHost) -> None:
    proc = subprocess.Popen(
        [*_kubectl(vc), "logs", "-f", "shell"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    try:
        assert _readline(proc, 30).strip() == "started"
        pod = f"{NAME}-0"
        before = _restarts(kind_host, vc, pod)
        kind_host.kubectl_run(
            "exec", "-n", vc.host_namespace, pod, "-c", "syncer", "--",
            "python3", "-c", "import os, signal; os.kill(1, signal.SIGTERM)",
        )  # fmt: skip
        rc = proc.wait(timeout=60)  # the stream ends (it does not hang)
        assert rc == 0, proc.stderr.read()  # type: ignore[union-attr]
        _wait(lambda: _restarts(kind_host, vc, pod) > before, 60)
        _wait(lambda: vc.kubectl("logs", "shell", check=False).stdout.startswith("started"), 60)
    finally:
        proc.kill()
        proc.wait()


def _restarts(kind_host: KindHost, vc: VCluster, pod: str) -> int:
    obj = kind_host.kubectl_json("get", "pod", "-n", vc.host_namespace, pod)
    statuses = obj["status"].get("containerStatuses") or []
    return sum(s["restartCount"] for s in statuses if s["name"] == "syncer")
