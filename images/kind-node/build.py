#!/usr/bin/env python3
"""Build a kind node image for one Kubernetes version, entirely offline.

    nice -n 19 python images/kind-node/build.py [--k8s-version 1.37] [--cache-dir DIR]
        [--force] [--print-tag] [--json]

Everything comes from Debian packages and Go modules; no container registry is needed:

1. Docker: reach dockerd (start it when root), register the runc wrapper where the host lacks
   CAP_SYS_RESOURCE (``pytest_vcluster.docker``).
2. Binaries, each built once into ``<cache>/kind-node/bin/<tool>-<version>/`` from its Go module:
   kubelet, kubeadm, kube-proxy (``k8s.io/kubernetes``), the control plane and kubectl
   (``BinaryResolver``), etcd, CoreDNS, crictl, local-path-provisioner, our cni-agent and
   iptables-wrapper (``go/``), and pause (``gcc -static`` of the pause.c shipped in the
   Kubernetes module).
3. Base image ``pytest-vcluster/kind-base:bookworm-<hash>``: ``debootstrap --variant=minbase``
   bookworm with systemd, containerd, runc and the CNI plugins (cached as a directory), imported
   into Docker, then kind's ``images/base/files`` (from the kind Go module) and ``files/`` here.
4. Component images as docker-archive tarballs written by this script (``FROM scratch`` layouts:
   static binaries, plus iptables and its libraries for kube-proxy), under the tags
   ``kubeadm config images list`` expects, plus cni-agent, local-path-provisioner and a busybox
   helper.
5. Node image ``pytest-vcluster/kind-node:v<k8s>-<recipe hash>``: a throw-away container of the
   base image gets the node binaries, ``/kind/version``, the manifests and the component images
   (``ctr images import`` into its containerd), then ``docker commit``.

Every step is skipped when its result exists (image tag present, binary in the cache), so a
second run costs a few seconds. The recipe hash covers every file of this directory, so changing
the recipe makes a new tag.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from pytest_vcluster import versions
from pytest_vcluster.binaries import BinaryResolver, default_cache_dir, sha256_file
from pytest_vcluster.docker import Docker, containerd_ref, ensure_docker
from pytest_vcluster.errors import BinaryNotFoundError, VClusterError
from pytest_vcluster.gobuild import GoBuilder, GoRecipe, k8s_recipe, recipe_for
from pytest_vcluster.recipes import archive
from pytest_vcluster.recipes.archive import PATH_ENV, ImageSpec, layer_tar  # noqa: F401 (re-exported)
from pytest_vcluster.rootfs import SLIM_PATHS, debootstrap_rootfs
from pytest_vcluster.versions import K8sVersion, parse_k8s_version

HERE = Path(__file__).resolve().parent
Progress = Callable[[str], None]

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: kind's base image package list (images/base/Dockerfile) minus nfs/iscsi/fuse-overlayfs, plus
#: Debian's container runtime and CNI plugins, and busybox for the small images.
BASE_PACKAGES = (
    "systemd",
    "dbus",
    "conntrack",
    "iptables",
    "nftables",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "libseccomp2",
    "pigz",
    "e2fsprogs",
    "bash",
    "ca-certificates",
    "curl",
    "jq",
    "procps",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "busybox-static",
)
KIND_MODULE = "sigs.k8s.io/kind"
MANIFEST_FILES = ("default-cni.yaml", "default-storage.yaml")
LOCAL_PATH_VERSION = "v0.0.30"
#: NetworkPolicy enforcement (kindnet's engine). Its nftables rules need the kernel's nft
#: ``queue``; where that is missing, the node's iptables NFQUEUE rules feed the same queue
#: (files/kind/bin/pytest-vcluster-guard.sh) and its rule sync only logs a failure.
NETPOL_VERSION = "v0.8.0"
CRICTL_VERSION = "v1.37.0"


def _quiet(msg: str) -> None:
    pass


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- naming and hashing -------------------------------------------------------------------------
def recipe_files(root: Path = HERE) -> list[Path]:
    """The files whose content defines the node image recipe (sorted; docs excluded)."""
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".md":
            out.append(p)
    return out


def recipe_hash(root: Path = HERE, extra: Iterable[str] = ()) -> str:
    h = hashlib.sha256()
    for p in recipe_files(root):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    for e in extra:
        h.update(e.encode() + b"\0")
    return h.hexdigest()[:10]


LOCAL_REPO = "pytest-vcluster/kind-node"


def node_image_tag(k8s: K8sVersion, root: Path = HERE) -> str:
    """``pytest-vcluster/kind-node:v1.37.2-<recipe hash>``."""
    # The archive writer lives in the package: its source is part of the recipe too.
    writer = Path(archive.__file__).read_text()
    return f"{LOCAL_REPO}:{k8s.tag}-{recipe_hash(root, extra=[writer])}"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]


# -- Go recipes (our own; the upstream code comes from the Go module proxy) ---------------------
_PAUSE_SRC = "build/pause/linux/pause.c"


def node_k8s_recipe(tool: str, k8s: K8sVersion) -> GoRecipe:
    """kubelet/kubeadm/kube-proxy from ``k8s.io/kubernetes`` (their own module directory)."""
    base = k8s_recipe(tool, k8s)
    return dataclasses.replace(
        base,
        siblings=tuple(f"k8s.io/kubernetes/cmd/{c}" for c in ("kubelet", "kubeadm", "kube-proxy")),
    )


def netpol_recipe(version: str) -> GoRecipe:
    return GoRecipe(
        "kube-network-policies",
        "sigs.k8s.io/kube-network-policies",
        version,
        "sigs.k8s.io/kube-network-policies/cmd",
    )


def crictl_recipe(version: str) -> GoRecipe:
    return GoRecipe(
        "crictl",
        "sigs.k8s.io/cri-tools",
        version,
        "sigs.k8s.io/cri-tools/cmd/crictl",
        ldflags=(f"-X sigs.k8s.io/cri-tools/pkg/version.Version={version}",),
    )


def local_path_recipe(version: str) -> GoRecipe:
    return GoRecipe(
        "local-path-provisioner",
        "github.com/rancher/local-path-provisioner",
        version,
        "github.com/rancher/local-path-provisioner",
        ldflags=(f"-X main.VERSION={version}",),
    )


# -- docker-archive tarballs (pytest_vcluster.recipes.archive: the control-plane image's too) -----
def write_docker_archive(specs: Iterable[ImageSpec], out: Path) -> None:
    """A ``docker save``-format tarball holding every image of ``specs`` (one layer each)."""
    archive.write_docker_archive(specs, out, created_by="pytest-vcluster images/kind-node/build.py")


# -- the Debian package closure (for the kube-proxy image) ----------------------------------------
def parse_dpkg_status(text: str) -> dict[str, list[str]]:
    """Installed package -> names it depends on (first alternative of each dependency)."""
    deps: dict[str, list[str]] = {}
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        name = fields.get("Package")
        if not name or "installed" not in fields.get("Status", ""):
            continue
        names = []
        for dep in (fields.get("Pre-Depends", ""), fields.get("Depends", "")):
            for item in filter(None, (d.strip() for d in dep.split(","))):
                first = item.split("|")[0].strip()
                names.append(re.split(r"[\s(:]", first, maxsplit=1)[0])
        deps[name] = names
    return deps


def package_closure(roots: Iterable[str], deps: Mapping[str, list[str]]) -> list[str]:
    seen: list[str] = []
    todo = list(roots)
    while todo:
        pkg = todo.pop()
        if pkg in seen or pkg not in deps:
            continue
        seen.append(pkg)
        todo.extend(deps[pkg])
    return sorted(seen)


def package_files(rootfs: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Regular files and symlinks owned by ``packages`` in ``rootfs`` (image path -> source)."""
    info = rootfs / "var/lib/dpkg/info"
    real_root = rootfs.resolve()
    out: dict[str, Path] = {}
    for pkg in packages:
        lists = [info / f"{pkg}.list", info / f"{pkg}:amd64.list"]
        for lst in (p for p in lists if p.exists()):
            for line in lst.read_text().splitlines():
                src = rootfs / line.lstrip("/")
                if line.startswith(("/usr/share/doc", "/usr/share/man", "/usr/share/locale")):
                    continue
                if src.is_symlink() or src.is_file():
                    # merged /usr: /lib64/x is really /usr/lib64/x (the image gets /lib64 -> ...)
                    parent = src.parent.resolve().relative_to(real_root)
                    out["/" + (parent / src.name).as_posix()] = src
    return out


# -- the builder ----------------------------------------------------------------------------------
@dataclass
class BuildResult:
    tag: str
    built: bool
    seconds: float
    steps: dict[str, float]


class NodeImageBuilder:
    """Builds (or finds) the node image for one Kubernetes version; see the module docstring."""

    def __init__(
        self,
        k8s: K8sVersion,
        cache_dir: Path | None = None,
        *,
        progress: Progress = _stderr,
        mirror: str | None = None,
        docker: Docker | None = None,
    ) -> None:
        self.k8s = k8s
        self.cache_dir = (cache_dir or default_cache_dir()).expanduser()
        self.work = self.cache_dir / "kind-node"
        self.progress = progress
        self.mirror = mirror or os.environ.get("PYTEST_VCLUSTER_DEBIAN_MIRROR") or DEFAULT_MIRROR
        self._docker = docker
        self.steps: dict[str, float] = {}
        self.expected_images: list[str] = []
        self.go = GoBuilder(self.work / "go", progress)
        self.resolver = BinaryResolver(k8s, self.cache_dir, progress=progress)

    @property
    def tag(self) -> str:
        return node_image_tag(self.k8s)

    @property
    def docker(self) -> Docker:
        if self._docker is None:
            self._docker = ensure_docker(
                start=True, cache_dir=self.cache_dir, progress=self.progress
            )
        return self._docker

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        self.progress(f"kind-node: {name} ...")
        yield
        self.steps[name] = round(time.monotonic() - t0, 1)
        self.progress(f"kind-node: {name}: {self.steps[name]}s")

    def build(self, *, force: bool = False) -> BuildResult:
        t0 = time.monotonic()
        tag = self.tag
        if not force and self.docker.image_exists(tag):
            return BuildResult(tag, False, round(time.monotonic() - t0, 1), {})
        self.work.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.work / "build.lock")):
            if not force and self.docker.image_exists(tag):
                return BuildResult(tag, False, round(time.monotonic() - t0, 1), {})
            with self.step("binaries"):
                bins = self.binaries()
            with self.step("debootstrap rootfs"):
                rootfs = self.rootfs()
            with self.step("base image"):
                base = self.base_image(rootfs)
            with self.step("component images"):
                archive, images = self.component_images(bins, rootfs)
            with self.step("node image"):
                self.node_image(base, bins, archive, images, tag)
        return BuildResult(tag, True, round(time.monotonic() - t0, 1), dict(self.steps))

    # -- binaries -------------------------------------------------------------------------------
    def kubeadm_images(self, kubeadm: Path) -> list[str]:
        out = subprocess.run(
            [str(kubeadm), "config", "images", "list", "--kubernetes-version", self.k8s.tag],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [ln.strip() for ln in out.splitlines() if ln.strip()]

    def go_binary(self, recipe: GoRecipe) -> Path:
        """Build ``recipe`` once into ``<cache>/kind-node/bin/<tool>-<version>/<tool>``."""
        dest = self.work / "bin" / f"{recipe.tool}-{recipe.version}" / recipe.tool
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.cache_dir / "go-build.lock")):
            if dest.is_file():
                return dest
            tmp = dest.with_name(f".{recipe.tool}.tmp")
            self.go.build(recipe, tmp)
            tmp.chmod(0o755)
            os.replace(tmp, dest)
        return dest

    def pause_binary(self, version: str) -> Path:
        dest = self.work / "bin" / f"pause-{version}" / "pause"
        if dest.is_file():
            return dest
        src = self.k8s_module_dir() / _PAUSE_SRC
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise BinaryNotFoundError("building pause needs a C compiler (apt-get install gcc)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(".pause.tmp")
        subprocess.run(
            [
                cc,
                "-Os",
                "-static",
                "-Wall",
                f"-DVERSION=v{version}-pytest-vcluster",
                "-o",
                str(tmp),
                str(src),
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(["strip", str(tmp)], check=False, capture_output=True)
        os.replace(tmp, dest)
        return dest

    def own_go_binaries(self) -> dict[str, Path]:
        """cni-agent and iptables-wrapper from ``go/`` (standard library only: seconds)."""
        src = HERE / "go"
        digest = recipe_hash(src)
        out = self.work / "bin" / f"own-{digest}"
        names = ("cni-agent", "iptables-wrapper")
        if not all((out / n).is_file() for n in names):
            tmp = Path(tempfile.mkdtemp(prefix=".own-", dir=self.work))
            env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
            go = shutil.which("go") or "go"
            subprocess.run(
                [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp) + "/", "./..."],
                cwd=src,
                env=env,
                check=True,
            )
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
        return {n: out / n for n in names}

    _k8s_dir: Path | None = None

    def k8s_module_dir(self) -> Path:
        if self._k8s_dir is None:
            self._k8s_dir = self.module_dir("k8s.io/kubernetes", self.k8s.tag)
        return self._k8s_dir

    def module_dir(self, module: str, version: str) -> Path:
        go = shutil.which("go")
        if go is None:
            raise BinaryNotFoundError("go is not on PATH")
        proc = subprocess.run(
            [go, "mod", "download", "-json", f"{module}@{version}"],
            capture_output=True,
            text=True,
            check=False,
            cwd=tempfile.gettempdir(),
        )
        try:
            return Path(json.loads(proc.stdout)["Dir"])
        except (ValueError, KeyError):
            raise BinaryNotFoundError(
                f"go mod download {module}@{version} failed: {proc.stdout}{proc.stderr}"
            ) from None

    def binaries(self) -> dict[str, Path]:
        bins: dict[str, Path] = {}
        for tool in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
            bins[tool] = self.resolver.resolve(tool).path
        for tool in ("kubeadm", "kubelet", "kube-proxy"):
            bins[tool] = self.go_binary(node_k8s_recipe(tool, self.k8s))
        images = self.kubeadm_images(bins["kubeadm"])
        self.expected_images = images
        etcd_tag = _image_version(images, "etcd")  # 3.7.0-0
        bins["etcd"] = self.go_binary(recipe_for("etcd", etcd_tag.split("-")[0], self.k8s))
        coredns = _image_version(images, "coredns").lstrip("v")
        bins["coredns"] = self.go_binary(recipe_for("coredns", coredns, self.k8s))
        bins["pause"] = self.pause_binary(_image_version(images, "pause"))
        bins["crictl"] = self.go_binary(crictl_recipe(CRICTL_VERSION))
        bins["local-path-provisioner"] = self.go_binary(local_path_recipe(LOCAL_PATH_VERSION))
        bins["kube-network-policies"] = self.go_binary(netpol_recipe(NETPOL_VERSION))
        bins.update(self.own_go_binaries())
        return bins

    # -- rootfs ----------------------------------------------------------------------------------
    def rootfs(self) -> Path:
        """The debootstrap tree (cached by suite + package list)."""
        key = _digest(SUITE, *BASE_PACKAGES, *SLIM_PATHS)
        return debootstrap_rootfs(
            self.work / f"rootfs-{SUITE}-{key}",
            suite=SUITE,
            packages=BASE_PACKAGES,
            mirror=self.mirror,
            slim_paths=SLIM_PATHS,
            log=self.work / "debootstrap.log",
            purpose="building the node image",
        )

    # -- base image ------------------------------------------------------------------------------
    def base_image(self, rootfs: Path) -> str:
        kind_files = self.module_dir(KIND_MODULE, "v" + versions.KIND) / "images/base/files"
        ours = HERE / "files"
        key = _digest(rootfs.name, versions.KIND, _BASE_DOCKERFILE, recipe_hash(ours))
        raw = f"pytest-vcluster/debootstrap:{rootfs.name.removeprefix('rootfs-')}"
        tag = f"pytest-vcluster/kind-base:{SUITE}-{key}"
        if self.docker.image_exists(tag):
            return tag
        if not self.docker.image_exists(raw):
            tar = subprocess.Popen(
                [
                    "tar",
                    "--numeric-owner",
                    "--exclude=./.pytest-vcluster-complete",
                    "-C",
                    str(rootfs),
                    "-c",
                    ".",
                ],
                stdout=subprocess.PIPE,
            )
            imp = subprocess.run(
                [self.docker.cli, "import", "-", raw],
                stdin=tar.stdout,
                capture_output=True,
                check=False,
            )
            tar.wait()
            if imp.returncode != 0 or tar.returncode != 0:
                raise VClusterError(
                    f"docker import of the rootfs failed: {imp.stderr.decode()[-2000:]}"
                )
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            ctx = Path(tmp)
            shutil.copytree(kind_files, ctx / "kind-files", symlinks=True)
            shutil.copytree(ours, ctx / "ours", symlinks=True)
            for p in (ctx / "kind-files").rglob("*"):  # module cache files are read-only
                p.chmod(0o755 if p.is_dir() else 0o644)
            (ctx / "Dockerfile").write_text(_BASE_DOCKERFILE.format(raw=raw))
            self.docker.run(
                ["build", "-q", "-t", tag, str(ctx)],
                env=dict(os.environ, DOCKER_BUILDKIT="0"),
            )
        return tag

    # -- component images ------------------------------------------------------------------------
    def component_specs(self, bins: Mapping[str, Path], rootfs: Path) -> list[ImageSpec]:
        images = self.expected_images
        by_name = {_image_name(i): i for i in images}
        specs = []
        for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            specs.append(ImageSpec(by_name[comp], {f"/usr/local/bin/{comp}": bins[comp]}))
        specs.append(
            ImageSpec(
                by_name["etcd"], {"/usr/local/bin/etcd": bins["etcd"]}, dirs=("var/lib/etcd", "tmp")
            )
        )
        specs.append(
            ImageSpec(by_name["coredns"], {"/coredns": bins["coredns"]}, entrypoint=("/coredns",))
        )
        specs.append(ImageSpec(by_name["pause"], {"/pause": bins["pause"]}, entrypoint=("/pause",)))
        # kube-proxy: iptables (both backends) and conntrack with their libraries
        deps = parse_dpkg_status((rootfs / "var/lib/dpkg/status").read_text())
        owned = package_files(rootfs, package_closure(["iptables", "conntrack", "netbase"], deps))
        files = {k: v for k, v in owned.items() if not v.is_symlink()}
        links = {k: os.readlink(v) for k, v in owned.items() if v.is_symlink()}
        for name in (
            "iptables",
            "iptables-save",
            "iptables-restore",
            "ip6tables",
            "ip6tables-save",
            "ip6tables-restore",
        ):
            links[f"/usr/sbin/{name}"] = "iptables-wrapper"
        files["/usr/sbin/iptables-wrapper"] = bins["iptables-wrapper"]
        files["/usr/local/bin/kube-proxy"] = bins["kube-proxy"]
        # merged-/usr layout: /lib64/ld-linux-x86-64.so.2 must resolve
        for top in ("bin", "sbin", "lib", "lib64"):
            if (rootfs / top).is_symlink():
                links[f"/{top}"] = os.readlink(rootfs / top)
        specs.append(ImageSpec(by_name["kube-proxy"], files, links, dirs=("run", "tmp", "var/lib")))
        # extras: cni-agent, local-path-provisioner and its helper, the NetworkPolicy agent
        busybox = rootfs / "bin/busybox"
        specs.append(
            ImageSpec(
                self.extra_tag("cni-agent", bins["cni-agent"]),
                {"/bin/cni-agent": bins["cni-agent"], "/bin/busybox": busybox},
                {"/bin/ip": "busybox", "/bin/sh": "busybox"},
                entrypoint=("/bin/cni-agent",),
            )
        )
        specs.append(
            ImageSpec(
                self.extra_tag("local-path-provisioner", bins["local-path-provisioner"]),
                {"/usr/bin/local-path-provisioner": bins["local-path-provisioner"]},
                entrypoint=("/usr/bin/local-path-provisioner",),
                dirs=("tmp",),
            )
        )
        netpol = bins["kube-network-policies"]
        specs.append(
            ImageSpec(
                self.extra_tag("kube-network-policies", netpol),
                {"/bin/netpol": netpol},
                entrypoint=("/bin/netpol",),
                dirs=("tmp",),
            )
        )
        specs.append(busybox_spec(self.helper_tag(busybox), busybox))
        return specs

    def extra_tag(self, name: str, binary: Path) -> str:
        return f"pytest-vcluster/{name}:{sha256_file(binary)[:12]}"

    def helper_tag(self, busybox: Path) -> str:
        return f"pytest-vcluster/busybox:{sha256_file(busybox)[:12]}"

    def component_images(self, bins: Mapping[str, Path], rootfs: Path) -> tuple[Path, list[str]]:
        specs = self.component_specs(bins, rootfs)
        key = _digest(*(s.tag for s in specs), *(str(sha256_file(bins[b])) for b in sorted(bins)))
        out = self.work / f"images-{self.k8s.tag}-{key}.tar"
        if not out.exists():
            tmp = out.with_name(out.name + ".tmp")
            write_docker_archive(specs, tmp)
            os.replace(tmp, out)
        return out, [s.tag for s in specs]

    def render_manifests(self, images: list[str]) -> dict[str, str]:
        def find(prefix: str) -> str:
            return next(i for i in images if i.startswith(prefix))

        values = {
            "@CNI_AGENT_IMAGE@": find("pytest-vcluster/cni-agent:"),
            "@LOCAL_PATH_IMAGE@": find("pytest-vcluster/local-path-provisioner:"),
            "@HELPER_IMAGE@": find("pytest-vcluster/busybox:"),
            "@NETPOL_IMAGE@": find("pytest-vcluster/kube-network-policies:"),
        }
        out = {}
        for name in MANIFEST_FILES:
            text = (HERE / "manifests" / name).read_text()
            for k, v in values.items():
                text = text.replace(k, v)
            out[name] = text
        return out

    # -- node image ------------------------------------------------------------------------------
    def node_image(
        self, base: str, bins: Mapping[str, Path], archive: Path, images: list[str], tag: str
    ) -> None:
        d = self.docker
        name = f"pytest-vcluster-node-build-{uuid.uuid4().hex[:8]}"
        d.run(
            [
                "run",
                "-d",
                "--name",
                name,
                "--entrypoint",
                "sleep",
                "--security-opt",
                "seccomp=unconfined",
                base,
                "infinity",
            ]
        )
        try:
            for tool, dest in (
                ("kubelet", "/usr/bin/kubelet"),
                ("kubeadm", "/usr/bin/kubeadm"),
                ("kubectl", "/usr/bin/kubectl"),
                ("crictl", "/usr/local/bin/crictl"),
            ):
                d.run(["cp", str(bins[tool]), f"{name}:{dest}"])
            pause = next(i for i in images if _image_name(i) == "pause")
            script = _NODE_SCRIPT.format(version=self.k8s.tag, pause=pause)
            d.run(["exec", "-i", name, "bash", "-c", script])
            for fname, text in self.render_manifests(images).items():
                d.run(
                    ["exec", "-i", name, "bash", "-c", f"cat > /kind/manifests/{fname}"],
                    input=text.encode(),
                )
            d.run(["exec", name, "bash", "-c", _CONTAINERD_START])
            with archive.open("rb") as fh:
                proc = subprocess.run(
                    [
                        d.cli,
                        "exec",
                        "-i",
                        name,
                        "ctr",
                        "--namespace=k8s.io",
                        "images",
                        "import",
                        "--label=io.cri-containerd.pinned=pinned",
                        "--all-platforms",
                        "--no-unpack",
                        "--digests",
                        "-",
                    ],
                    stdin=fh,
                    capture_output=True,
                    check=False,
                )
            if proc.returncode != 0:
                raise VClusterError(
                    f"importing images into the node failed: {proc.stderr.decode()[-2000:]}"
                )
            listed = d.out(["exec", name, "ctr", "--namespace=k8s.io", "images", "list", "-q"])
            missing = [i for i in images if containerd_ref(i) not in listed.split()]
            if missing:
                raise VClusterError(f"images missing in the node after import: {missing}\n{listed}")
            d.run(["exec", name, "bash", "-c", _CONTAINERD_STOP])
            previous = d.run(["image", "inspect", "-f", "{{.Id}}", tag], check=False)
            d.run(
                [
                    "commit",
                    "--change",
                    'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]',
                    "--change",
                    'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""',
                    "--change",
                    f"LABEL io.pytest-vcluster.kubernetes={self.k8s.tag}",
                    name,
                    tag,
                ]
            )
            if previous.returncode == 0:  # a --force rebuild: drop the image it replaced
                d.run(["rmi", previous.stdout.decode().strip()], check=False)
        finally:
            d.run(["rm", "-f", "-v", name], check=False)

    def prune(self, keep: str) -> list[str]:
        """Remove other ``pytest-vcluster/kind-node`` images of this Kubernetes version."""
        out = self.docker.out(["images", "--format", "{{.Repository}}:{{.Tag}}", LOCAL_REPO])
        old = [
            ref
            for ref in out.split()
            if ref != keep and ref.split(":", 1)[1].startswith(self.k8s.tag + "-")
        ]
        for ref in old:
            self.docker.run(["rmi", ref], check=False)
        return old


def busybox_spec(tag: str, busybox: Path) -> ImageSpec:
    """A busybox image (``/bin/sh`` and the usual applets) from Debian's static busybox."""
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    links = {f"/bin/{a}": "busybox" for a in applets if a != "busybox"}
    return ImageSpec(tag, {"/bin/busybox": busybox}, links, env=("PATH=/bin",), dirs=("tmp", "etc"))


def _image_name(ref: str) -> str:
    """``registry.k8s.io/coredns/coredns:v1.14.6`` -> ``coredns``."""
    return ref.rsplit(":", 1)[0].rsplit("/", 1)[-1]


def _image_version(images: Iterable[str], name: str) -> str:
    for ref in images:
        if _image_name(ref) == name:
            return ref.rsplit(":", 1)[1]
    raise VClusterError(f"kubeadm expects no {name} image: {list(images)}")


_BASE_DOCKERFILE = """\
FROM {raw}
COPY kind-files/ /
COPY ours/ /
RUN set -e; \\
    chmod 0755 /usr/local/bin/* /kind/bin/*; \\
    ln -sf /usr/bin/containerd /usr/local/bin/containerd; \\
    mkdir -p /opt/cni /etc/cni/net.d /etc/kubernetes/manifests /kind/manifests; \\
    rm -rf /opt/cni/bin; ln -s /usr/lib/cni /opt/cni/bin; \\
    find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete; \\
    cd /lib/systemd/system; \\
    rm -f multi-user.target.wants/* local-fs.target.wants/* basic.target.wants/* \\
      sockets.target.wants/*udev* sockets.target.wants/*initctl* /etc/systemd/system/*.wants/*; \\
    cd /; \\
    echo "ReadKMsg=no" >> /etc/systemd/journald.conf; \\
    ln -sf /usr/lib/systemd/systemd /sbin/init; \\
    systemctl enable kubelet.service containerd.service undo-mount-hacks.service; \\
    systemctl mask systemd-binfmt.service; \\
    ctr oci spec \\
      | jq --arg p /kind/bin/mount-product-files.sh \\
        '.hooks.createContainer[.hooks.createContainer|length] |= . + {{"path": $p}}' \\
      | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json; \\
    : > /etc/machine-id
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
"""

_NODE_SCRIPT = """\
set -e
chmod 0755 /usr/bin/kubelet /usr/bin/kubeadm /usr/bin/kubectl /usr/local/bin/crictl
chown root:root /usr/bin/kubelet /usr/bin/kubeadm /usr/bin/kubectl /usr/local/bin/crictl
echo -n {version} > /kind/version
sed -i 's|@PAUSE_IMAGE@|{pause}|' /etc/containerd/config.toml
mkdir -p /kind/manifests
"""

_CONTAINERD_START = """\
set -e
nohup containerd > /tmp/containerd-build.log 2>&1 &
for i in $(seq 1 50); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.2; done
ctr version > /dev/null
"""

_CONTAINERD_STOP = """\
pkill containerd || true
for i in $(seq 1 50); do pgrep -x containerd > /dev/null || break; sleep 0.2; done
rm -f /tmp/containerd-build.log
rm -rf /run/containerd
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--k8s-version", default=None, help="Kubernetes version (default: newest)")
    p.add_argument("--cache-dir", default=None, help=f"cache (default {default_cache_dir()})")
    p.add_argument("--force", action="store_true", help="rebuild even when the image exists")
    p.add_argument("--print-tag", action="store_true", help="print the image tag and exit")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--prune",
        action="store_true",
        help="afterwards remove older pytest-vcluster/kind-node images of this version",
    )
    args = p.parse_args(argv)
    k8s = parse_k8s_version(args.k8s_version)
    if args.print_tag:
        print(node_image_tag(k8s))
        return 0
    cache = Path(args.cache_dir) if args.cache_dir else None
    try:
        builder = NodeImageBuilder(k8s, cache)
        result = builder.build(force=args.force)
        if args.prune:
            for ref in builder.prune(keep=result.tag):
                print(f"removed {ref}", file=sys.stderr)
    except (VClusterError, subprocess.CalledProcessError) as exc:
        print(f"kind-node: build failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(dataclasses.asdict(result)))
    else:
        state = "built" if result.built else "exists"
        print(f"{result.tag} ({state}, {result.seconds}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
