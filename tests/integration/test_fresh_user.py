"""A user with internet and no Go: an empty cache, no ``go`` on PATH, the official download sites
served by a real HTTP server on 127.0.0.1 (their layouts: dl.k8s.io, etcd's GitHub release with
SHA256SUMS, kwok's release asset with its digest in GitHub's releases API). The README's set-up
and the example suite run as they would for that user, and every binary comes from a verified
download (the bytes served are this machine's real binaries)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vcluster.binaries import LOCAL_HOST_TOOLS, BinaryResolver, arch
from pytest_vcluster.gobuild import K8S_COMPONENTS
from pytest_vcluster.versions import ETCD, KWOK, parse_k8s_version

ROOT = Path(__file__).resolve().parents[2]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The download sites' paths, with this machine's real binaries in them."""
    k8s = parse_k8s_version(None)
    have = BinaryResolver(k8s, allow_build=False, download_base="off").resolve_all(LOCAL_HOST_TOOLS)
    root = tmp_path_factory.mktemp("mirror")
    a = arch()
    files: dict[str, bytes] = {}
    for tool in LOCAL_HOST_TOOLS:
        data = have[tool].path.read_bytes()
        if tool in K8S_COMPONENTS:
            path = f"/release/v{k8s}/bin/linux/{a}/{tool}"
            files[path], files[path + ".sha256"] = data, _sha(data).encode()
        elif tool == "etcd":
            name = f"etcd-v{ETCD}-linux-{a}"
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
                info = tarfile.TarInfo(f"{name}/etcd")
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
            d = f"/etcd-io/etcd/releases/download/v{ETCD}"
            files[f"{d}/{name}.tar.gz"] = buf.getvalue()
            files[f"{d}/SHA256SUMS"] = f"{_sha(buf.getvalue())}  {name}.tar.gz\n".encode()
        else:  # kwok: the asset, and its digest in the releases API's answer
            asset = f"kwok-linux-{a}"
            files[f"/kubernetes-sigs/kwok/releases/download/v{KWOK}/{asset}"] = data
            release = {"assets": [{"name": asset, "digest": f"sha256:{_sha(data)}"}]}
            files[f"/repos/kubernetes-sigs/kwok/releases/tags/v{KWOK}"] = json.dumps(
                release
            ).encode()
    for path, data in files.items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

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


def test_a_user_without_go_gets_a_local_vcluster(mirror: str, tmp_path: Path) -> None:
    no_go = [p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "go").exists()]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_VCLUSTER_")},
        "PATH": os.pathsep.join(no_go),
        "PYTEST_VCLUSTER_DOWNLOAD_URL": mirror,
        "PYTEST_VCLUSTER_CACHE_DIR": str(tmp_path / "cache"),
    }
    cli = [sys.executable, "-m", "pytest_vcluster"]
    setup = subprocess.run(
        [*cli, "binaries", "--build", "--tools", ",".join(LOCAL_HOST_TOOLS)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert setup.returncode == 0, setup.stdout + setup.stderr
    for tool in LOCAL_HOST_TOOLS:
        assert f"{tool} " in setup.stdout
    assert setup.stdout.count(" download ") == len(LOCAL_HOST_TOOLS), setup.stdout
    doctor = subprocess.run(
        [*cli, "doctor", "--no-docker"], env=env, capture_output=True, text=True, timeout=120
    )
    assert doctor.returncode == 0, doctor.stdout
    assert "WARN  go" in doctor.stdout
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/basics", "-q", "-p", "no:cacheprovider"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert suite.returncode == 0, suite.stdout[-3000:] + suite.stderr[-2000:]
    assert " passed" in suite.stdout
