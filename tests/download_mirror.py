"""The official download sites' layouts (dl.k8s.io, get.helm.sh, kind.sigs.k8s.io, etcd's GitHub
release with SHA256SUMS, CoreDNS's with a .sha256 per asset, kwok's release asset with its
digest in GitHub's releases API), served by a real HTTP server on 127.0.0.1 with this machine's
real binaries in them: a user with internet, without leaving the machine. The layouts are
written out here, not taken from the plugin, so a plugin that asks for the wrong path fails."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pytest_vcluster import versions
from pytest_vcluster.binaries import BinaryResolver, arch
from pytest_vcluster.gobuild import K8S_COMPONENTS
from pytest_vcluster.versions import K8sVersion


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tgz(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo(member)
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def layout(tool: str, k8s: K8sVersion, data: bytes) -> dict[str, bytes]:
    """The files the official site of ``tool`` publishes for its binary ``data``."""
    a = arch()
    if tool in K8S_COMPONENTS:  # dl.k8s.io: the binary and a bare digest next to it
        path = f"/release/v{k8s}/bin/linux/{a}/{tool}"
        return {path: data, path + ".sha256": _sha(data).encode()}
    if tool == "etcd":  # GitHub release: a tarball and SHA256SUMS for all assets
        name = f"etcd-v{versions.ETCD}-linux-{a}"
        tgz = _tgz(f"{name}/etcd", data)
        d = f"/etcd-io/etcd/releases/download/v{versions.ETCD}"
        return {
            f"{d}/{name}.tar.gz": tgz,
            f"{d}/SHA256SUMS": f"{_sha(tgz)}  {name}.tar.gz\n".encode(),
        }
    if tool == "coredns":  # GitHub release: a tarball of the binary and a .sha256 beside it
        name = f"coredns_{versions.COREDNS}_linux_{a}.tgz"
        tgz = _tgz("coredns", data)
        d = f"/coredns/coredns/releases/download/v{versions.COREDNS}"
        return {f"{d}/{name}": tgz, f"{d}/{name}.sha256": f"{_sha(tgz)}  {name}\n".encode()}
    if tool == "helm":  # get.helm.sh: a tarball and a sha256sum-style file
        name = f"helm-v{versions.HELM}-linux-{a}.tar.gz"
        tgz = _tgz(f"linux-{a}/helm", data)
        return {f"/{name}": tgz, f"/{name}.sha256sum": f"{_sha(tgz)}  {name}\n".encode()}
    if tool == "kind":  # kind.sigs.k8s.io: the binary and a sha256sum-style file
        name = f"kind-linux-{a}"
        path = f"/dl/v{versions.KIND}/{name}"
        return {path: data, path + ".sha256sum": f"{_sha(data)}  {name}\n".encode()}
    if tool == "kwok":  # no checksum file: the asset's digest in the releases API's answer
        asset = f"kwok-linux-{a}"
        tag = f"v{versions.KWOK}"
        release = {"assets": [{"name": asset, "digest": f"sha256:{_sha(data)}"}]}
        return {
            f"/kubernetes-sigs/kwok/releases/download/{tag}/{asset}": data,
            f"/repos/kubernetes-sigs/kwok/releases/tags/{tag}": json.dumps(release).encode(),
        }
    raise ValueError(f"no download layout for {tool!r}")


def fill(root: Path, tools: Sequence[str], k8s: K8sVersion) -> None:
    """Write ``tools`` (this machine's cached binaries) under ``root`` in their sites' layouts."""
    have = BinaryResolver(k8s, allow_build=False, download_base="off").resolve_all(tools)
    for tool in tools:
        for path, data in layout(tool, k8s, have[tool].path.read_bytes()).items():
            p = root / path.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """A base URL on 127.0.0.1 serving ``root``."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve_mirror(tools: Sequence[str], k8s: K8sVersion, root: Path) -> Iterator[str]:
    """A base URL serving ``tools`` (this machine's cached binaries) in their sites' layouts."""
    fill(root, tools, k8s)
    with serve(root) as url:
        yield url


def path_without(*commands: str, bin_dir: Path, path: str) -> str:
    """A PATH with every command of ``path`` except ``commands`` (as a user who never
    installed them): one directory of links, so tools next to them stay found."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for d in path.split(":"):
        if not d or not Path(d).is_dir():
            continue
        for entry in Path(d).iterdir():
            link = bin_dir / entry.name
            if entry.name in commands or link.exists() or link.is_symlink():
                continue  # the first on PATH wins, as in a shell
            if entry.is_file() and entry.stat().st_mode & 0o111:
                link.symlink_to(entry)
    return str(bin_dir)
