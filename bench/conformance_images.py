"""The images the conformance specs run, built offline under the names e2e.test asks for.

No registry is reachable here, so each image is made locally and tagged with the reference in
``k8s.io/kubernetes/test/utils/image/manifest.go`` (then ``kind load``-ed into the host):

- agnhost (2.66.1, and 2.55 as the "previous" one): the real binary built from
  ``k8s.io/kubernetes/test/images/agnhost`` on a Debian root with the tools its specs exec
  (sh, curl, dig, nc, ip), as upstream's image has on Alpine;
- busybox: the node image's busybox;
- nginx 1.27/1.28: Debian's nginx-light serving its default page on port 80;
- pause: already in the node image.

Images the specs need that are not made here (sample-apiserver, etcd, nonroot, …) make those
specs fail on the host and on the vcluster alike; bench/conformance.py compares the two.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from pathlib import Path

from pytest_vcluster.docker import Docker
from pytest_vcluster.errors import VClusterError
from pytest_vcluster.rootfs import SLIM_PATHS, debootstrap_rootfs

E2E = "registry.k8s.io/e2e-test-images"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
TOOLS = ("ca-certificates", "curl", "dnsutils", "netcat-openbsd", "iproute2", "procps")
NGINX = ("nginx-light",)


def _import(docker: Docker, roots: list[tuple[Path, str]], tag: str, changes: list[str]) -> None:
    """``docker import`` of one or more directory trees (later ones add files)."""
    cmd = ["tar", "--numeric-owner", "--exclude=./.pytest-vcluster-complete", "-c"]
    for root, member in roots:
        cmd += ["-C", str(root), member]
    tar = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    args = [arg for c in changes for arg in ("--change", c)]
    imp = subprocess.Popen(
        [docker.cli, "import", *args, "-", tag],
        stdin=tar.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None
    tar.stdout.close()
    _, err = imp.communicate()
    tar.wait()
    if imp.returncode or tar.returncode:
        raise VClusterError(f"docker import {tag} failed: {err.decode()[-2000:]}")


def _rootfs(work: Path, packages: tuple[str, ...]) -> Path:
    key = hashlib.sha256(" ".join((SUITE, *packages)).encode()).hexdigest()[:10]
    return debootstrap_rootfs(
        work / f"rootfs-{key}",
        suite=SUITE,
        packages=packages,
        mirror=MIRROR,
        slim_paths=SLIM_PATHS,
        log=work / "debootstrap.log",
        purpose="the conformance images",
        prefix=("nice", "-n", "19"),
    )


def build_images(docker: Docker, cache_dir: Path, agnhost: Path, busybox: Path) -> list[str]:
    """Make every image (skipping those Docker has) and return their references."""
    work = cache_dir / "conformance" / "images"
    work.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    agnhost_tags = [f"{E2E}/agnhost:2.66.1", f"{E2E}/agnhost:2.55"]
    if not all(docker.image_exists(t) for t in agnhost_tags):
        root = _rootfs(work, TOOLS)
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            stage = Path(tmp)
            (stage / "agnhost").write_bytes(agnhost.read_bytes())
            (stage / "agnhost").chmod(0o755)
            _import(docker, [(root, "."), (stage, "./agnhost")], agnhost_tags[0],
                    ['ENTRYPOINT ["/agnhost"]'])  # fmt: skip
        docker.run(["tag", agnhost_tags[0], agnhost_tags[1]])
    made += agnhost_tags
    bb = f"{E2E}/busybox:1.37.0-2"
    if not docker.image_exists(bb):
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            stage = Path(tmp)
            (stage / "bin").mkdir()
            (stage / "bin" / "busybox").write_bytes(busybox.read_bytes())
            (stage / "bin" / "busybox").chmod(0o755)
            links = subprocess.run(
                [str(busybox), "--list"], capture_output=True, text=True, check=True
            ).stdout.split()
            for applet in links:
                if applet != "busybox":
                    (stage / "bin" / applet).symlink_to("busybox")
            for d in ("tmp", "etc", "var/www"):
                (stage / d).mkdir(parents=True, exist_ok=True)
            (stage / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
            _import(docker, [(stage, ".")], bb, ['CMD ["sh"]', "ENV PATH=/bin"])
    made.append(bb)
    nginx_tags = [f"{E2E}/nginx:1.27.0-2", f"{E2E}/nginx:1.28.0-2"]
    if not all(docker.image_exists(t) for t in nginx_tags):
        root = _rootfs(work, (*TOOLS, *NGINX))
        _import(docker, [(root, ".")], nginx_tags[0],
                ['CMD ["nginx", "-g", "daemon off;"]', "EXPOSE 80"])  # fmt: skip
        docker.run(["tag", nginx_tags[0], nginx_tags[1]])
    made += nginx_tags
    return made
