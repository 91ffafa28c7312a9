"""Pure parts of the node image recipe (images/kind-node/build.py): tags, archives, packages."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from pytest_vcluster.versions import parse_k8s_version

BUILD = Path(__file__).resolve().parents[2] / "images" / "kind-node" / "build.py"


@pytest.fixture(scope="module")
def build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kind_node_build_under_test", BUILD)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_tag_is_versioned_and_keyed_by_the_recipe(build: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "a.go").write_text("package a\n")
    k8s = parse_k8s_version("1.37")
    tag = build.node_image_tag(k8s, tmp_path)
    assert tag.startswith("pytest-vcluster/kind-node:v1.37.2-")
    assert tag == build.node_image_tag(k8s, tmp_path)  # stable
    (tmp_path / "a.go").write_text("package a // changed\n")
    assert build.node_image_tag(k8s, tmp_path) != tag
    before = build.recipe_hash(tmp_path)
    (tmp_path / "NOTES.md").write_text("notes do not change the recipe")
    assert build.recipe_hash(tmp_path) == before


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("registry.k8s.io/kube-apiserver:v1.37.2", "kube-apiserver"),
        ("registry.k8s.io/coredns/coredns:v1.14.6", "coredns"),
        ("registry.k8s.io/etcd:3.7.0-0", "etcd"),
    ],
)
def test_image_name(build: ModuleType, ref: str, name: str) -> None:
    assert build._image_name(ref) == name


def test_image_version_reads_kubeadms_list(build: ModuleType) -> None:
    images = ["registry.k8s.io/etcd:3.7.0-0", "registry.k8s.io/pause:3.10.2"]
    assert build._image_version(images, "etcd") == "3.7.0-0"
    with pytest.raises(Exception, match="no coredns image"):
        build._image_version(images, "coredns")


@pytest.mark.parametrize(
    ("ref", "normalized"),
    [
        ("busybox:1", "docker.io/library/busybox:1"),
        ("pytest-vcluster/cni-agent:abc", "docker.io/pytest-vcluster/cni-agent:abc"),
        ("registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause:3.10.2"),
        ("localhost/x:1", "localhost/x:1"),
    ],
)
def test_refs_as_containerd_lists_them(ref: str, normalized: str) -> None:
    from pytest_vcluster.docker import containerd_ref

    assert containerd_ref(ref) == normalized


STATUS = """\
Package: iptables
Status: install ok installed
Depends: libip4tc2 (= 1.8.9-2), libxtables12 (>= 1.8.4) | libfoo, netbase
 , libc6 (>= 2.34)

Package: libip4tc2
Status: install ok installed
Depends: libc6 (>= 2.34)

Package: libxtables12
Status: install ok installed
Pre-Depends: libc6:amd64
Depends: libgone

Package: libc6
Status: install ok installed
Depends: libgcc-s1

Package: libgcc-s1
Status: install ok installed

Package: netbase
Status: install ok installed

Package: removed
Status: deinstall ok config-files
"""


def test_package_closure_follows_depends_and_pre_depends(build: ModuleType) -> None:
    deps = build.parse_dpkg_status(STATUS)
    assert "removed" not in deps
    assert deps["iptables"] == ["libip4tc2", "libxtables12", "netbase", "libc6"]
    closure = build.package_closure(["iptables"], deps)
    assert closure == [
        "iptables", "libc6", "libgcc-s1", "libip4tc2", "libxtables12", "netbase"
    ]  # fmt: skip


def test_docker_archive_is_loadable_layout(build: ModuleType, tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF fake")
    binary.chmod(0o755)
    spec = build.ImageSpec(
        "example/tool:1",
        {"/usr/local/bin/tool": binary},
        {"/bin/t": "/usr/local/bin/tool"},
        entrypoint=("/usr/local/bin/tool",),
        dirs=("tmp",),
    )
    out = tmp_path / "images.tar"
    build.write_docker_archive([spec], out)
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        (entry,) = manifest
        assert entry["RepoTags"] == ["example/tool:1"]
        config = json.load(tar.extractfile(entry["Config"]))  # type: ignore[arg-type]
        assert config["config"]["Entrypoint"] == ["/usr/local/bin/tool"]
        layer_bytes = tar.extractfile(entry["Layers"][0]).read()  # type: ignore[union-attr]
    import hashlib

    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(layer_bytes)) as layer:
        members = {m.name: m for m in layer.getmembers()}
    assert members["usr/local/bin/tool"].mode == 0o755
    assert members["usr/local/bin"].isdir()
    assert members["bin/t"].issym()
    assert members["tmp"].isdir()
    # reproducible: the same inputs give the same layer
    assert build.layer_tar(spec) == layer_bytes
