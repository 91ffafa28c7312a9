"""e2e fixtures: the offline kind node image (built or reused) and a kind host made from it.

These tests need Docker (the fixture starts dockerd when run as root) and build the node image
the first time (~20 min on 2 cores with a warm Go cache). They run only when selected:
``pytest -m e2e tests/e2e`` (or ``PYTEST_VCLUSTER_E2E=1``); otherwise they are skipped.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from kubernetes import client

from pytest_vcluster.binaries import BinaryResolver, default_cache_dir
from pytest_vcluster.docker import Docker, ensure_docker
from pytest_vcluster.hosts.kind import KindHost
from pytest_vcluster.recipes.syncer_image import SyncerImage
from pytest_vcluster.scripts import load_script
from pytest_vcluster.vcluster import VCluster
from pytest_vcluster.versions import K8sVersion, parse_k8s_version

from .kubelet_api import NAME, SHELL, WEB
from .kubelet_api import ready as _ready
from .manifests import pod as _pod

ROOT = Path(__file__).resolve().parents[2]
E2E_CLUSTER = "pytest-vcluster-e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = "e2e" in (config.getoption("markexpr") or "") or os.environ.get(
        "PYTEST_VCLUSTER_E2E"
    )
    if selected:
        return
    skip = pytest.mark.skip(reason="e2e: select with `pytest -m e2e tests/e2e` (needs Docker)")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


def load_builder() -> ModuleType:
    """``images/kind-node/build.py`` as a module (it is a script, not a package)."""
    return load_script(
        ROOT / "images" / "kind-node" / "build.py", "pytest_vcluster_kind_node_build"
    )


@pytest.fixture(scope="session")
def k8s() -> K8sVersion:
    return parse_k8s_version(os.environ.get("PYTEST_VCLUSTER_K8S_VERSION"))


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return default_cache_dir()


@pytest.fixture(scope="session")
def docker(cache_dir: Path) -> Docker:
    return ensure_docker(start=True, cache_dir=cache_dir, progress=print)


@pytest.fixture(scope="session")
def node_image(k8s: K8sVersion, cache_dir: Path, docker: Docker) -> str:
    """The offline node image (``PYTEST_VCLUSTER_KIND_IMAGE`` overrides: e.g. kindest/node)."""
    given = os.environ.get("PYTEST_VCLUSTER_KIND_IMAGE")
    if given:
        return given
    builder = load_builder().NodeImageBuilder(k8s, cache_dir, docker=docker)
    result = builder.build()
    return str(result.tag)


@pytest.fixture(scope="session")
def tools(k8s: K8sVersion, cache_dir: Path) -> dict[str, Path]:
    resolver = BinaryResolver(
        k8s, cache_dir, download_base=os.environ.get("PYTEST_VCLUSTER_DOWNLOAD_URL", "off")
    )
    return {t: resolver.resolve(t).path for t in ("kind", "kubectl", "helm")}


@pytest.fixture(scope="session")
def kind_host(
    k8s: K8sVersion, cache_dir: Path, node_image: str, tools: dict[str, Path], docker: Docker
) -> Iterator[KindHost]:
    host = KindHost(
        k8s,
        kind=tools["kind"],
        kubectl=tools["kubectl"],
        cache_dir=cache_dir,
        name=E2E_CLUSTER,
        image=node_image,
        # PYTEST_VCLUSTER_E2E_REUSE=1 keeps the cluster for the next run (development)
        reuse=bool(os.environ.get("PYTEST_VCLUSTER_E2E_REUSE")),
        progress=print,
    )
    host.start()
    try:
        yield host
    finally:
        host.stop()
        if not host.reuse and host.exists():
            host.delete()


def _load(path: Path, name: str) -> ModuleType:
    return load_script(path, name)


@pytest.fixture(scope="session")
def vcluster_images(k8s: K8sVersion, cache_dir: Path, docker: Docker) -> dict[str, str]:
    """The control-plane and syncer images, built (or found) once per session."""
    from pytest_vcluster import images

    return images.build(str(k8s), cache_dir, print, docker=docker)


@pytest.fixture
def images_env(vcluster_images: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The images named in the environment, for pytest runs in subprocesses (``pytester``)."""
    from pytest_vcluster import images

    for key, env in images.ENV.items():
        monkeypatch.setenv(env, vcluster_images[key])


@pytest.fixture(scope="session")
def control_plane_image_136(cache_dir: Path, docker: Docker) -> str:
    """The control-plane image of another minor version than the kind host's."""
    cp = _load(ROOT / "images/control-plane/build.py", "pytest_vcluster_cp_image_build")
    tag, _ = cp.ControlPlaneImage(parse_k8s_version("1.36"), cache_dir, docker=docker).build()
    return str(tag)


@pytest.fixture(scope="session")
def app_image(docker: Docker, cache_dir: Path) -> Iterator[str]:
    """A locally built image (busybox from the node rootfs), never pushed anywhere."""
    build = load_builder()
    roots = sorted((cache_dir / "kind-node").glob("rootfs-*/bin/busybox"))
    busybox = roots[-1] if roots else Path("/bin/busybox")
    tag = f"pytest-vcluster/e2e-app:{uuid.uuid4().hex[:8]}"
    archive = cache_dir / "kind-node" / "e2e-app.tar"
    build.write_docker_archive([build.busybox_spec(tag, busybox)], archive)
    docker.run(["load", "-i", str(archive)])
    archive.unlink()
    yield tag
    docker.run(["rmi", "-f", tag], check=False)


# -- the kubelet API tests (test_kubelet_api*_e2e.py): a vcluster with three pods ---------------
# Module-scoped: each module gets its own; modules with a `vc` or `core` of their own use that.
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


@pytest.fixture(scope="module")
def core(vc: VCluster) -> client.CoreV1Api:
    return client.CoreV1Api(vc.api_client)


# -- stand-ins of the public base images (python:3.11-slim, golang) a user with internet pulls:
# made locally from what this machine has (the syncer's Debian root with its python3, this
# machine's Go), since nothing is pulled here; the recipes run unchanged on them.
GO_ROOT = Path("/usr/local/go")


def _import(docker: Docker, tag: str, rootfs: Path, env: str, go: Path | None = None) -> None:
    """``docker import`` of a root filesystem (and a Go tree at /usr/local/go) as one image."""
    args = ["tar", "--numeric-owner", "-c", "-C", str(rootfs), "."]
    if go is not None:  # its members "go/...": renamed, the root's "./..." stay as they are
        args[3:3] = ["--transform", "s,^go,usr/local/go,"]
        args += ["-C", str(go.parent), go.name]
    tar = subprocess.Popen(args, stdout=subprocess.PIPE)
    assert tar.stdout is not None
    imp = subprocess.Popen(
        [docker.cli, "import", "--change", f"ENV {env}", "-", tag],
        stdin=tar.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    tar.stdout.close()  # only docker reads it: tar gets SIGPIPE if docker stops
    _, err = imp.communicate()
    tar.wait()
    assert imp.returncode == 0, err.decode()[-2000:]


@pytest.fixture(scope="session")
def debian_rootfs(vcluster_images: dict[str, str], cache_dir: Path, docker: Docker) -> Path:
    # vcluster_images built the syncer image the offline way: its Debian root is cached.
    return SyncerImage(cache_dir, docker=docker, base=None).rootfs()


@pytest.fixture(scope="session")
def python_base(debian_rootfs: Path, docker: Docker) -> Iterator[str]:
    tag = "pytest-vcluster-test/python:3.11-standin"
    _import(docker, tag, debian_rootfs, "PATH=/usr/local/bin:/usr/bin:/bin")
    yield tag
    docker.run(["rmi", "-f", tag], check=False)


@pytest.fixture(scope="session")
def go_base(debian_rootfs: Path, docker: Docker) -> Iterator[str]:
    if not (GO_ROOT / "bin" / "go").is_file():
        pytest.fail(f"no Go at {GO_ROOT} to make the Go image stand-in from")
    tag = "pytest-vcluster-test/golang:standin"
    _import(docker, tag, debian_rootfs, "PATH=/usr/local/go/bin:/usr/bin:/bin", go=GO_ROOT)
    yield tag
    docker.run(["rmi", "-f", tag], check=False)
