"""``pytest-vcluster doctor``: what this machine has for each host, and the fix for what it lacks.

Every check is one :class:`Finding` (ok, warn or fail, with a fix). ``fail`` means the default
(local) host cannot start here; what only the kind host needs (Docker, images) is a warning when
absent, so a machine without Docker still passes for the local host. Nothing is built, pulled or
started: the checks read (cache manifests, ``docker info``, ``/proc``) and bind one loopback port.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .binaries import LOCAL_HOST_TOOLS, BinaryResolver
from .docker import DockerError, find_cli, is_cgroup_v1, needs_cap_shim
from .versions import K8sVersion

Level = Literal["ok", "warn", "fail"]
KIND_TOOLS = ("kind", "kubectl", "helm")
MIN_MEMORY = 2 << 30  # a local host with a few vclusters; a kind host wants more


@dataclass(frozen=True)
class Finding:
    level: Level
    what: str
    detail: str
    fix: str = ""


def python_version(version: tuple[int, int] = sys.version_info[:2]) -> Finding:
    shown = f"{version[0]}.{version[1]}"
    if version < (3, 10):
        return Finding("fail", "python", shown, "use Python 3.10 or newer")
    return Finding("ok", "python", shown)


def binaries(resolver: BinaryResolver, tools: Iterable[str], blocking: bool) -> list[Finding]:
    """Each tool as it resolves now; a missing one is obtainable (download or Go) or not."""
    out = []
    downloads = resolver.download_base != "off"
    go = resolver.allow_build and resolver.builder.available
    for tool in tools:
        found = resolver.lookup(tool)
        version = resolver.version_of(tool)
        if found is not None:
            out.append(Finding("ok", tool, f"{found.version} ({found.source}) {found.path}"))
            continue
        how = [w for w, can in (("downloaded", downloads), ("built with Go", go)) if can]
        if how:
            detail = f"{version} not cached: {' or '.join(how)} on first use"
            out.append(Finding("ok", tool, detail))
            continue
        out.append(
            Finding(
                "fail" if blocking else "warn",
                tool,
                f"{version} missing, and neither downloaded (PYTEST_VCLUSTER_DOWNLOAD_URL=off) "
                "nor built (no Go on PATH)",
                f"set PYTEST_VCLUSTER_{tool.upper().replace('-', '_')}=/path/to/{tool}, unset "
                "PYTEST_VCLUSTER_DOWNLOAD_URL, or install Go",
            )
        )
    return out


def go_toolchain(which: Callable[[str], str | None] = shutil.which) -> Finding:
    go = which("go")
    if go:
        return Finding("ok", "go", go)
    return Finding("warn", "go", "not on PATH: binaries come from downloads only")


def docker_daemon() -> list[Finding]:
    """The kind host's Docker: CLI, daemon, the missing-capability remedy, cgroups."""
    try:
        docker = find_cli()
    except DockerError as exc:
        return [Finding("warn", "docker", str(exc), "install Docker for --vcluster-host=kind")]
    info = docker.info()
    if info is None:
        running = Finding(
            "warn",
            "docker",
            f"{docker.cli}: no daemon answers",
            "start it (run as root, the kind host starts dockerd itself)",
        )
    else:
        running = Finding("ok", "docker", f"{docker.cli}, server {info.get('ServerVersion')}")
    out = [running]
    if needs_cap_shim():
        out.append(
            Finding(
                "ok",
                "capabilities",
                "CAP_SYS_RESOURCE is not in this machine's bounding set: the kind host installs "
                "its runc shim in Docker (automatic)",
            )
        )
    out.append(Finding("ok", "cgroups", "v1" if is_cgroup_v1() else "v2"))
    return out


def memory(meminfo: str | None = None) -> Finding:
    text = meminfo if meminfo is not None else Path("/proc/meminfo").read_text()
    fields = {ln.split(":")[0]: ln.split()[1] for ln in text.splitlines() if ":" in ln}
    available = int(fields.get("MemAvailable", "0")) * 1024
    shown = f"{available / (1 << 30):.1f} GiB available"
    if available < MIN_MEMORY:
        return Finding("warn", "memory", shown, "close other programs, or use fewer xdist workers")
    return Finding("ok", "memory", shown)


def loopback_port() -> Finding:
    """Every host listens on 127.0.0.1 ports the kernel picks."""
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    except OSError as exc:
        return Finding("fail", "ports", f"cannot bind 127.0.0.1: {exc}", "check the loopback")
    return Finding("ok", "ports", f"127.0.0.1 binds (got {port})")


def images(k8s: K8sVersion, cache_dir: Path) -> list[Finding]:
    """The kind host's images for the current sources: built already, or on first use."""
    from . import images as recipes
    from .errors import VClusterError

    try:
        found = recipes.look(str(k8s), cache_dir, find_cli())
    except (VClusterError, DockerError, OSError) as exc:
        return [Finding("warn", "images", str(exc))]
    return [
        Finding("ok", f"image {key}", ref + ("" if present else " (built on first use, minutes)"))
        for key, (ref, present) in found.items()
    ]


def image_recipes(
    which: Callable[[str], str | None] = shutil.which, env: Mapping[str, str] = os.environ
) -> Finding:
    """How the kind host would build its images here: offline, or from public base images."""
    from .recipes.control_plane import go_image
    from .recipes.syncer_image import chosen_base

    base, go = chosen_base(which, env), go_image(which, env)
    syncer = f"docker build FROM {base}" if base else "debootstrap (offline)"
    entrypoint = f"Go in {go}" if go else "Go here"
    pulls = [image for image in (base, go) if image]
    return Finding(
        "ok",
        "image recipes",
        f"syncer: {syncer}; control-plane entrypoint: {entrypoint}"
        + (f" (Docker pulls {', '.join(pulls)} where it lacks them)" if pulls else ""),
    )


def diagnose(resolver: BinaryResolver, *, docker: bool = True) -> list[Finding]:
    out = [python_version(), go_toolchain(), memory(), loopback_port()]
    out += binaries(resolver, LOCAL_HOST_TOOLS, blocking=True)
    out += binaries(resolver, KIND_TOOLS, blocking=False)
    if docker:
        findings = docker_daemon()
        out += findings
        if findings[0].level == "ok":
            out += [image_recipes(), *images(resolver.k8s, resolver.cache_dir)]
    return out


def report(findings: Iterable[Finding], write: Callable[[str], None] = print) -> int:
    """Print one line per finding (and its fix); 1 when something blocks the local host."""
    worst = 0
    for f in findings:
        write(f"{f.level.upper():<5} {f.what:<24} {f.detail}")
        if f.fix and f.level != "ok":
            write(f"{'':<5} {'':<24} fix: {f.fix}")
        worst = max(worst, {"ok": 0, "warn": 0, "fail": 1}[f.level])
    return worst


def environment_note() -> str:
    base = os.environ.get("PYTEST_VCLUSTER_DOWNLOAD_URL") or "official sites"
    return f"downloads: {base}"
