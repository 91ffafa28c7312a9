"""A cached Debian root filesystem made by debootstrap, shared by the offline image recipes."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import VClusterError

COMPLETE = ".pytest-vcluster-complete"
#: Paths emptied in a debootstrap tree before it becomes an image (docs, locales, apt caches).
SLIM_PATHS = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/cache/debconf",
    "var/log",
)


def debootstrap_rootfs(
    root: Path,
    *,
    suite: str,
    packages: Sequence[str],
    mirror: str,
    slim_paths: Sequence[str],
    log: Path,
    purpose: str,
    prefix: Sequence[str] = (),
) -> Path:
    """Build ``root`` (unless already complete): minbase + ``packages``, ``slim_paths`` emptied.

    Built beside ``root`` and renamed into place, so an interrupted build is never reused.
    """
    if (root / COMPLETE).exists():
        return root
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise VClusterError(f"{purpose} needs debootstrap (apt-get install debootstrap)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(root.name + ".incoming")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        *prefix,
        debootstrap,
        "--variant=minbase",
        "--include=" + ",".join(packages),
        suite,
        str(tmp),
        mirror,
    ]
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        raise VClusterError(f"debootstrap failed ({rc}); log {log}:\n{log.read_text()[-3000:]}")
    for rel in slim_paths:
        p = tmp / rel
        if p.is_dir():
            for child in p.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    (root / COMPLETE).write_text(" ".join(cmd))
    return root
