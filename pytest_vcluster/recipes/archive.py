"""``docker save``-format tarballs written directly: FROM-scratch images of a few files, one
reproducible layer each, loaded with ``docker load`` — no Dockerfile, base image or registry."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageSpec:
    """One image: its tag and a root filesystem of (path in image -> source)."""

    tag: str
    files: Mapping[str, Path]
    symlinks: Mapping[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    env: tuple[str, ...] = (PATH_ENV,)
    dirs: tuple[str, ...] = ()


def tar_info(
    name: str, *, mode: int, size: int = 0, kind: bytes = tarfile.REGTYPE
) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode, ti.size, ti.type = mode, size, kind
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = 0
    return ti


def layer_tar(spec: ImageSpec) -> bytes:
    """A reproducible layer tar of ``spec``'s files, symlinks and directories."""
    buf = io.BytesIO()
    dirs: set[str] = set()

    def parents(path: str) -> Iterator[str]:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            yield "/".join(parts[:i])

    entries = sorted({*spec.files, *spec.symlinks, *(d + "/" for d in spec.dirs)})
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in entries:
            for d in parents(path):
                if d not in dirs:
                    dirs.add(d)
                    tar.addfile(tar_info(d, mode=0o755, kind=tarfile.DIRTYPE))
            name = path.strip("/")
            if path.endswith("/"):
                if name not in dirs:
                    dirs.add(name)
                    tar.addfile(tar_info(name, mode=0o755, kind=tarfile.DIRTYPE))
            elif path in spec.symlinks:
                ti = tar_info(name, mode=0o777, kind=tarfile.SYMTYPE)
                ti.linkname = spec.symlinks[path]
                tar.addfile(ti)
            else:
                src = spec.files[path]
                data = src.read_bytes()
                mode = src.stat().st_mode & 0o7777
                tar.addfile(tar_info(name, mode=mode, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def write_docker_archive(
    specs: Iterable[ImageSpec], out: Path, *, created_by: str, created: str | None = None
) -> None:
    """A ``docker save``-format tarball holding every image of ``specs`` (one layer each);
    ``created`` (RFC 3339) where the newest image of a repository is looked for by it."""
    manifest = []
    with tarfile.open(out, "w") as tar:

        def add(name: str, data: bytes) -> None:
            tar.addfile(tar_info(name, mode=0o644, size=len(data)), io.BytesIO(data))

        for spec in specs:
            layer = layer_tar(spec)
            diff_id = hashlib.sha256(layer).hexdigest()
            config: dict[str, object] = {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Env": list(spec.env), "Entrypoint": list(spec.entrypoint) or None},
                "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
                "history": [{"created_by": created_by}],
            }
            if created is not None:
                config["created"] = created
            cfg = json.dumps(config, sort_keys=True).encode()
            cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
            add(f"{diff_id}/layer.tar", layer)
            add(cfg_name, cfg)
            manifest.append(
                {"Config": cfg_name, "RepoTags": [spec.tag], "Layers": [f"{diff_id}/layer.tar"]}
            )
        add("manifest.json", json.dumps(manifest).encode())
