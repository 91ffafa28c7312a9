"""logs, exec, attach, port-forward and cp through a vcluster on kind: real containers, the
clients users run (kubectl, the ``kubernetes`` package), and the same answers a real cluster
gives — compared against the kind host itself where a message is checked.

Errors and refusals, and ``kubectl debug``: test_kubelet_api_errors_e2e.py.

    pytest -m e2e tests/e2e/test_kubelet_api_e2e.py -s
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.stream import portforward, stream

from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.vcluster import VCluster

from .kubelet_api import NAME
from .kubelet_api import wait as _wait

pytestmark = pytest.mark.e2e


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


def _websocket_log(api: client.ApiClient, pod: str) -> bytes:
    """``GET pods/<pod>/log`` over a WebSocket (``binary.k8s.io``), as the conformance spec
    reads it: every data frame, until the server closes."""
    import ssl

    import websocket  # websocket-client: a dependency of the kubernetes package

    cfg = api.configuration
    url = cfg.host.replace("https://", "wss://") + f"/api/v1/namespaces/default/pods/{pod}/log"
    sslopt: dict[str, object] = {"ca_certs": cfg.ssl_ca_cert, "cert_reqs": ssl.CERT_REQUIRED}
    if cfg.cert_file:
        sslopt |= {"certfile": cfg.cert_file, "keyfile": cfg.key_file}
    token = cfg.api_key.get("authorization")
    headers = [f"Authorization: {token}"] if token else []
    ws = websocket.create_connection(
        url, sslopt=sslopt, header=headers, subprotocols=["binary.k8s.io"], timeout=30
    )
    out = b""
    try:
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return out
            out += data
    except websocket.WebSocketConnectionClosedException:
        return out
    finally:
        ws.close()


def test_logs_over_a_websocket(vc: VCluster) -> None:
    """A whole log (its writer done) arrives over a WebSocket too, as on the host: relayed
    chunked it was lost whole (the API server's WebSocket writer drops the data of a read that
    also returns EOF)."""
    vc.kubectl("exec", "shell", "--", "touch", "/tmp/go")
    full = vc.kubectl("logs", "shell").stdout
    assert full.startswith("started\n")
    assert _websocket_log(vc.api_client, "shell").decode() == full


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


def test_no_kubelet_connection_is_left_open(vc: VCluster, kind_host: KindHost) -> None:
    def closed() -> bool:
        return _host_metric(kind_host, vc, "syncer_kubelet_open_connections") == 0

    try:
        # A connection that never sent a request is closed 30 s after its handshake (+2 s to
        # close): 75 s covers one the API server opened just as this test began.
        _wait(closed, 75)
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
