"""Binary resolution: cache, PATH, download from a real local HTTP server, errors."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pytest_vcluster import binaries
from pytest_vcluster.binaries import BinaryResolver, parse_checksum
from pytest_vcluster.errors import BinaryNotFoundError, ChecksumMismatchError
from pytest_vcluster.versions import COREDNS, ETCD, HELM, KIND, parse_k8s_version

K8S = parse_k8s_version("1.37")
A = binaries.arch()


def _script(text: str) -> bytes:
    return f"#!/bin/sh\necho '{text}'\n".encode()


def _tgz(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Mirror:
    """A real HTTP server on 127.0.0.1 laid out like the official download sites."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits: list[str] = []
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: object, **kw: object) -> None:
                super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

            def log_message(self, *args: object) -> None:
                mirror.hits.append(self.path)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def put(self, path: str, data: bytes) -> None:
        p = self.root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    m = Mirror(tmp_path / "mirror")
    # kind: a raw binary + "<sha>  <name>" file
    kind = _script(f"kind v{KIND} go1.26 linux/{A}")
    m.put(f"/dl/v{KIND}/kind-linux-{A}", kind)
    m.put(f"/dl/v{KIND}/kind-linux-{A}.sha256sum", f"{_sha(kind)}  kind-linux-{A}\n".encode())
    # helm: a tarball + sha256sum
    helm = _tgz(f"linux-{A}/helm", _script(f"v{HELM}+gdeadbeef"))
    m.put(f"/helm-v{HELM}-linux-{A}.tar.gz", helm)
    m.put(
        f"/helm-v{HELM}-linux-{A}.tar.gz.sha256sum",
        f"{_sha(helm)}  helm-v{HELM}-linux-{A}.tar.gz\n".encode(),
    )
    # etcd: tarball + a SHA256SUMS listing several files
    name = f"etcd-v{ETCD}-linux-{A}"
    etcd = _tgz(f"{name}/etcd", _script(f"etcd Version: {ETCD}"))
    d = f"/etcd-io/etcd/releases/download/v{ETCD}"
    m.put(f"{d}/{name}.tar.gz", etcd)
    m.put(f"{d}/SHA256SUMS", f"{'0' * 64}  other.zip\n{_sha(etcd)}  {name}.tar.gz\n".encode())
    # coredns: a tarball with the binary at its top + "<sha>  <name>" beside it
    tgz = f"coredns_{COREDNS}_linux_{A}.tgz"
    coredns = _tgz("coredns", _script(f"CoreDNS-{COREDNS}"))
    d = f"/coredns/coredns/releases/download/v{COREDNS}"
    m.put(f"{d}/{tgz}", coredns)
    m.put(f"{d}/{tgz}.sha256", f"{_sha(coredns)}  {tgz}\n".encode())
    # kube-apiserver: raw binary + bare digest; the checksum is WRONG on purpose
    api = _script("Kubernetes v1.37.2")
    p = f"/release/v{K8S}/bin/linux/{A}/kube-apiserver"
    m.put(p, api)
    m.put(p + ".sha256", _sha(b"something else").encode())
    yield m
    m.close()


def resolver(tmp_path: Path, mirror_url: str, **kw: object) -> BinaryResolver:
    return BinaryResolver(
        K8S,
        tmp_path / "cache",
        download_base=mirror_url,
        use_path=False,
        allow_build=False,
        progress=lambda msg: None,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("tool", ["kind", "helm", "etcd", "coredns"])
def test_download_verifies_and_caches(tmp_path: Path, mirror: Mirror, tool: str) -> None:
    r = resolver(tmp_path, mirror.url).resolve(tool)
    assert r.source == "download"
    assert r.path == tmp_path / "cache" / "bin" / f"{tool}-{r.version}" / tool
    assert os.access(r.path, os.X_OK)
    assert r.version.split(".")[0] in os.popen(f"{r.path}").read()
    manifest = json.loads(r.path.with_name("manifest.json").read_text())
    assert manifest["sha256"] == _sha(r.path.read_bytes())
    # A second resolver finds it in the cache without touching the network.
    mirror.hits.clear()
    again = resolver(tmp_path, mirror.url).resolve(tool)
    assert (again.source, again.path, mirror.hits) == ("cache", r.path, [])


def test_wrong_checksum_is_refused_and_nothing_is_cached(tmp_path: Path, mirror: Mirror) -> None:
    with pytest.raises(ChecksumMismatchError, match=r"kube-apiserver 1\.37\.2 .* has sha256"):
        resolver(tmp_path, mirror.url).resolve("kube-apiserver")
    entry = tmp_path / "cache" / "bin" / "kube-apiserver-1.37.2"
    assert not (entry / "kube-apiserver").exists()
    assert [p.name for p in entry.iterdir()] == []  # no half-written leftovers


def test_corrupt_cache_entry_is_replaced(tmp_path: Path, mirror: Mirror) -> None:
    first = resolver(tmp_path, mirror.url).resolve("kind")
    first.path.write_bytes(b"#!/bin/sh\necho truncated\n")  # same path, different content
    second = resolver(tmp_path, mirror.url).resolve("kind")
    assert second.source == "download"
    assert b"kind v" in second.path.read_bytes()


def test_parallel_resolvers_download_once(tmp_path: Path, mirror: Mirror) -> None:
    def one(_: int) -> Path:
        return resolver(tmp_path, mirror.url).resolve("helm").path

    with ThreadPoolExecutor(4) as pool:
        paths = set(pool.map(one, range(4)))
    assert len(paths) == 1
    downloads = [h for h in mirror.hits if h.endswith(".tar.gz")]
    assert len(downloads) == 1


def test_nothing_obtainable_says_what_was_tried(tmp_path: Path) -> None:
    r = BinaryResolver(
        K8S,
        tmp_path / "cache",
        download_base="http://127.0.0.1:9",  # discard port: connection refused
        use_path=True,
        allow_build=True,
        progress=lambda msg: None,
    )
    r.builder.go = None  # as on a machine without a Go toolchain
    with pytest.raises(BinaryNotFoundError) as info:
        r.resolve("kind")
    msg = str(info.value)
    assert "cannot obtain kind 0.33.0" in msg
    assert "cache: no valid entry" in msg
    assert "download: http://127.0.0.1:9/dl/v0.33.0" in msg
    assert "Go build: go is not on PATH" in msg
    assert "PYTEST_VCLUSTER_KIND" in msg


def test_path_binary_must_have_the_requested_minor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "kube-scheduler"
    exe.write_bytes(_script("Kubernetes v1.36.3"))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bindir))
    r = BinaryResolver(K8S, tmp_path / "cache", download_base="off", allow_build=False)
    tried: list[str] = []
    assert r.lookup("kube-scheduler", tried) is None
    assert any("reports (1, 36, 3), not acceptable" in t for t in tried)
    exe.write_bytes(_script("Kubernetes v1.37.0"))
    found = r.lookup("kube-scheduler")
    assert found is not None
    assert found.source == "path"
    assert found.version == "1.37.0"
    exact = BinaryResolver(parse_k8s_version("1.37.2"), tmp_path / "cache", download_base="off")
    assert exact.lookup("kube-scheduler") is None  # 1.37.0 != requested patch


def test_explicit_path_wins_and_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "my-etcd"
    exe.write_bytes(_script("etcd Version: 3.5.0"))
    exe.chmod(0o755)
    monkeypatch.setenv("PYTEST_VCLUSTER_ETCD", str(exe))
    r = BinaryResolver(K8S, tmp_path / "cache", download_base="off")
    assert r.resolve("etcd").source == "explicit"
    monkeypatch.setenv("PYTEST_VCLUSTER_ETCD", str(tmp_path / "nope"))
    with pytest.raises(BinaryNotFoundError, match="PYTEST_VCLUSTER_ETCD"):
        BinaryResolver(K8S, tmp_path / "cache", download_base="off").resolve("etcd")


@pytest.mark.parametrize(
    ("text", "name", "ok"),
    [
        ("a" * 64 + "\n", "x", True),
        (f"{'b' * 64}  x\n{'c' * 64}  y\n", "y", True),
        (f"{'b' * 64} *y\n", "y", True),
        (f"{'b' * 64}  x\n", "y", False),
        ("nothex\n", "x", False),
    ],
)
def test_parse_checksum(text: str, name: str, ok: bool) -> None:
    if ok:
        assert len(parse_checksum(text, name)) == 64
    else:
        with pytest.raises(ChecksumMismatchError):
            parse_checksum(text, name)


# -- kwok: the digest from GitHub's releases API (a real HTTP server answering like GitHub) --
KWOK_ASSET = f"kwok-linux-{A}"


class ReleaseApi(Mirror):
    """The mirror, plus ``/repos/.../releases/tags/<tag>`` answered as GitHub does, or with
    its rate-limit refusal; records the Authorization header it was sent."""

    def __init__(self, root: Path, release: dict[str, object] | None, limited: bool) -> None:
        super().__init__(root)
        api = self
        self.auth: list[str | None] = []
        handler = self.server.RequestHandlerClass

        class Api(handler):  # type: ignore[misc,valid-type]
            def do_GET(self) -> None:
                if not self.path.startswith("/repos/"):
                    return super().do_GET()  # type: ignore[no-any-return]
                api.auth.append(self.headers.get("Authorization"))
                if limited:
                    self.send_response(403)
                    self.send_header("X-RateLimit-Remaining", "0")
                    self.end_headers()
                    return None
                body = json.dumps(release).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None

        self.server.RequestHandlerClass = Api


def _kwok_api(
    tmp_path: Path, digest: str | None, limited: bool = False
) -> tuple[ReleaseApi, bytes]:
    from pytest_vcluster.versions import KWOK

    data = _script(f"kwok version v{KWOK}")  # the asset's bytes (a runnable stand-in)
    asset: dict[str, object] = {"name": KWOK_ASSET, "size": len(data)}
    if digest is not None:
        asset["digest"] = digest.replace("<sha>", _sha(data))
    api = ReleaseApi(tmp_path / "gh", {"tag_name": f"v{KWOK}", "assets": [asset]}, limited)
    api.put(f"/kubernetes-sigs/kwok/releases/download/v{KWOK}/{KWOK_ASSET}", data)
    return api, data


def test_kwok_is_downloaded_with_the_releases_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "t0k3n")
    api, data = _kwok_api(tmp_path, "sha256:<sha>")
    try:
        r = resolver(tmp_path, api.url).resolve("kwok")
    finally:
        api.close()
    assert r.source == "download"
    assert r.path.read_bytes() == data
    assert api.auth == ["Bearer t0k3n"]


def test_kwok_with_a_wrong_digest_is_refused(tmp_path: Path) -> None:
    api, _ = _kwok_api(tmp_path, "sha256:" + "0" * 64)
    try:
        with pytest.raises(ChecksumMismatchError, match=r"kwok .* has sha256"):
            resolver(tmp_path, api.url).resolve("kwok")
    finally:
        api.close()
    assert not (tmp_path / "cache" / "bin" / f"kwok-{binaries.versions.KWOK}" / "kwok").exists()


@pytest.mark.parametrize(
    ("digest", "limited", "said"),
    [
        (None, False, "gives no sha256 digest for " + KWOK_ASSET),
        ("md5:abc", False, "gives no sha256 digest"),
        ("sha256:<sha>", True, "rate limit reached .* set GITHUB_TOKEN"),
    ],
)
def test_kwok_without_a_usable_digest_is_not_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digest: str | None, limited: bool, said: str
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    api, _ = _kwok_api(tmp_path, digest, limited)
    try:
        with pytest.raises(BinaryNotFoundError, match=said) as info:
            resolver(tmp_path, api.url).resolve("kwok")
    finally:
        api.close()
    assert "PYTEST_VCLUSTER_KWOK" in str(info.value)  # and the fixes
    assert [h for h in api.hits if "releases/download" in h] == []  # never fetched
