"""A template start for in-cluster vclusters: an etcd data directory, made once per image,
holding what a new kube-apiserver's ``rbac/bootstrap-roles`` hook would otherwise create one
object at a time (~140 RBAC objects labelled ``kubernetes.io/bootstrapping=rbac-defaults``) and
its two ``system-`` PriorityClasses. The image carries it; the entrypoint copies it into an empty
``/data/etcd`` before etcd starts, so the hook only compares (the local runtime does the same by
copying the host's keys, ``hosts/local_vcluster.py``).

Made by running the image's own etcd and kube-apiserver here until ``/readyz``, then deleting
every other key (namespaces, leases, the ``kubernetes`` Service: each vcluster makes its own, so
no two share a namespace UID), compacting and defragmenting. Everything in the chart's etcd is on
loopback (member ``vcluster`` at http://127.0.0.1:2380), so one directory fits every pod.
Linux only (the binaries run here); elsewhere the image has no template and starts as before.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

from syncer.constants import DEFAULT_ISSUER
from syncer.etcd import Etcd, EtcdError

from ..errors import VClusterError
from ..hosts.etcd import bootstrap_object
from ..pki import service_account_key
from ..procs import free_port
from ..wait import done_or_not_yet, poll

#: Where the image carries it; the chart's entrypoint argument names the same path.
IMAGE_PATH = "/usr/local/share/pytest-vcluster/etcd-template"
PREFIX = "/registry/"


def kept(key: bytes, value: bytes) -> bool:
    """Whether a key of a freshly started API server belongs in the template (the rule the
    local runtime's copy follows too: ``hosts/etcd.bootstrap_object``)."""
    k = key.decode(errors="replace")
    return k.startswith(PREFIX) and bootstrap_object(k[len(PREFIX) :], value)


def supported() -> bool:
    return platform.system() == "Linux"


def make(
    dest: Path, bins: Mapping[str, Path], progress: Callable[[str], None], timeout: float = 120
) -> int:
    """Write the template data directory to ``dest`` (replaced); how many keys it holds."""
    work = Path(tempfile.mkdtemp(prefix=".etcd-template-", dir=dest.parent))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        data = work / "etcd"
        client, peer, secure = free_port(), free_port(), free_port()
        url = f"http://127.0.0.1:{client}"
        procs.append(_spawn(_etcd_args(bins["etcd"], data, client, peer), work / "etcd.log"))
        apiserver = _apiserver_args(bins["kube-apiserver"], url, secure, work)
        procs.append(_spawn(apiserver, work / "kube-apiserver.log"))
        _wait_ready(f"https://127.0.0.1:{secure}/readyz", procs, timeout, work)
        _stop(procs.pop())  # the API server: nothing writes while the rest goes
        store = Etcd(url)
        kvs, revision = store.get_prefix(PREFIX)
        keep = [kept(kv.key, kv.value) for kv in kvs]
        store.write(deletes=[kv.key for kv, k in zip(kvs, keep, strict=True) if not k])
        store.post("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        store.defragment()
        count = sum(keep)
        _stop(procs.pop())
        if count < 50:  # a start that wrote no bootstrap roles: no template rather than a bad one
            raise VClusterError(f"etcd template: only {count} bootstrap objects were written")
        for wal in (data / "member" / "wal").glob("*.wal"):
            _trim_zeros(wal)
        # The trimmed directory, opened as a pod will: every kept key there.
        procs.append(_spawn(_etcd_args(bins["etcd"], data, client, peer), work / "etcd2.log"))
        _wait_etcd(url, procs, timeout, work)
        reopened, _ = Etcd(url).get_prefix(PREFIX)
        _stop(procs.pop())
        if len(reopened) != count:
            raise VClusterError(f"etcd template: {len(reopened)} keys after a restart, not {count}")
        for f in data.rglob("*"):  # the image's user reads it; the entrypoint's copy is 0600
            f.chmod(0o755 if f.is_dir() else 0o644)
        data.chmod(0o755)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(data, dest)
        progress(f"control-plane: etcd template with {count} bootstrap objects")
        return count
    finally:
        for p in procs:
            _stop(p)
        shutil.rmtree(work, ignore_errors=True)


def _etcd_args(etcd: Path, data: Path, client: int, peer: int) -> list[str]:
    url = f"http://127.0.0.1:{client}"
    return [
        str(etcd), "--name=vcluster", f"--data-dir={data}",
        f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        # the chart's member: what the data records, whatever port made it here
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=vcluster=http://127.0.0.1:2380",
        "--initial-cluster-state=new", "--unsafe-no-fsync=true", "--log-level=error",
    ]  # fmt: skip


def _apiserver_args(apiserver: Path, etcd_url: str, port: int, work: Path) -> list[str]:
    """A kube-apiserver on ``etcd_url`` as the chart starts it where it matters for what it
    writes (RBAC authorization, no priority and fairness, no endpoint reconciler); its serving
    certificate self-signed and a service-account key pair written into ``work``."""
    key, pub = service_account_key()
    (work / "sa.key").write_bytes(key)
    (work / "sa.pub").write_bytes(pub)
    return [
        str(apiserver), f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1", f"--secure-port={port}",
        f"--cert-dir={work / 'certs'}", "--authorization-mode=Node,RBAC",
        f"--service-account-key-file={work / 'sa.pub'}",
        f"--service-account-signing-key-file={work / 'sa.key'}",
        f"--service-account-issuer={DEFAULT_ISSUER}",
        "--service-cluster-ip-range=10.96.0.0/12", "--enable-priority-and-fairness=false",
        "--endpoint-reconciler-type=none", "--anonymous-auth=true", "--profiling=false",
    ]  # fmt: skip


def _trim_zeros(wal: Path) -> None:
    """Cut a WAL segment's preallocated zeros (etcd sizes each one 64 MiB up front; its reader
    stops at the first empty frame, and frames are 8-byte aligned): 62 MiB less per image."""
    data = wal.read_bytes()
    end = len(data.rstrip(b"\0"))
    wal.write_bytes(data[: (end + 7) // 8 * 8])


def _wait_etcd(url: str, procs: list[subprocess.Popen[bytes]], timeout: float, work: Path) -> None:
    def serving() -> None:
        _check_alive(procs, work)
        Etcd(url, timeout=1).status()

    deadline = time.monotonic() + timeout
    retry = (OSError, ValueError, EtcdError)
    poll("etcd serving", serving, deadline, retry=retry, timeout_error=_template_error)


def _check_alive(procs: list[subprocess.Popen[bytes]], work: Path) -> None:
    for p in procs:
        if p.poll() is not None:
            logs = "".join(f.read_text(errors="replace")[-1500:] for f in work.glob("*.log"))
            what = Path(cast(list[str], p.args)[0]).name
            raise VClusterError(f"etcd template: {what} exited: {logs}")


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout: float, work: Path) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # its own self-signed serving cert

    def ready() -> None:
        _check_alive(procs, work)
        # not serving yet, or /readyz not 200 (HTTPError is an OSError)
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
            done_or_not_yet(resp.status == 200, f"/readyz: {resp.status}")

    deadline = time.monotonic() + timeout
    poll("kube-apiserver /readyz", ready, deadline, interval=0.2, retry=(OSError,),
         timeout_error=_template_error)  # fmt: skip


def _template_error(message: str) -> VClusterError:
    return VClusterError(f"etcd template: {message}")
