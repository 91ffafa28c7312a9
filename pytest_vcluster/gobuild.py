"""Build recipes: every binary pytest-vcluster needs, from its Go module.

Each recipe is a throw-away Go module (``go.mod`` + one Go file) in the cache that requires the
upstream module at the wanted version and builds one of its main packages. Kubernetes itself is
special: ``k8s.io/kubernetes`` points its staging modules at ``./staging/...``, which does not
exist in the module zip, so the build module replaces each of them with ``k8s.io/<m> v0.X.Y``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BinaryNotFoundError
from .versions import K8sVersion

Progress = Callable[[str], None]

K8S_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


@dataclass(frozen=True)
class GoRecipe:
    """How to build one binary from a Go module."""

    tool: str
    module: str
    version: str  # module version with the leading "v"
    package: str  # main package to build
    ldflags: tuple[str, ...] = ()
    main_go: str | None = None  # when the upstream main is not importable as-is
    k8s: K8sVersion | None = None  # needs the staging replace lines
    siblings: tuple[str, ...] = field(default=())  # other packages of the same module dir

    @property
    def workdir_name(self) -> str:
        base = self.module.rsplit("/", 1)[-1] if self.k8s is None else "kubernetes"
        return f"{base}-{self.version}"


def k8s_recipe(tool: str, k8s: K8sVersion) -> GoRecipe:
    version_flags = (
        f"-X k8s.io/component-base/version.gitVersion={k8s.tag}",
        f"-X k8s.io/component-base/version.gitMajor={k8s.major}",
        f"-X k8s.io/component-base/version.gitMinor={k8s.minor}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
        f"-X k8s.io/client-go/pkg/version.gitVersion={k8s.tag}",
        f"-X k8s.io/client-go/pkg/version.gitMajor={k8s.major}",
        f"-X k8s.io/client-go/pkg/version.gitMinor={k8s.minor}",
    )
    return GoRecipe(
        tool=tool,
        module="k8s.io/kubernetes",
        version=k8s.tag,
        package=f"k8s.io/kubernetes/cmd/{tool}",
        ldflags=version_flags,
        k8s=k8s,
        siblings=tuple(f"k8s.io/kubernetes/cmd/{c}" for c in K8S_COMPONENTS),
    )


_ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def recipe_for(tool: str, version: str, k8s: K8sVersion) -> GoRecipe:
    """The recipe for ``tool`` at ``version`` (Kubernetes components use ``k8s``)."""
    if tool in K8S_COMPONENTS:
        return k8s_recipe(tool, k8s)
    v = f"v{version}"
    if tool == "etcd":
        return GoRecipe(tool, "go.etcd.io/etcd/server/v3", v, ".", main_go=_ETCD_MAIN)
    if tool == "coredns":
        return GoRecipe(tool, "github.com/coredns/coredns", v, "github.com/coredns/coredns")
    if tool == "kwok":
        return GoRecipe(tool, "sigs.k8s.io/kwok", v, "sigs.k8s.io/kwok/cmd/kwok")
    if tool == "helm":
        return GoRecipe(
            tool,
            "helm.sh/helm/v3",
            v,
            "helm.sh/helm/v3/cmd/helm",
            ldflags=(f"-X helm.sh/helm/v3/internal/version.version={v}",),
        )
    if tool == "kind":
        return GoRecipe(tool, "sigs.k8s.io/kind", v, "sigs.k8s.io/kind")
    raise BinaryNotFoundError(f"no Go build recipe for {tool!r}")


def staging_replaces(kubernetes_go_mod: str, k8s: K8sVersion) -> list[str]:
    """``replace`` lines pinning every ``./staging`` module of k8s.io/kubernetes' go.mod."""
    mods = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", kubernetes_go_mod, re.M)
    return [f"\t{m} => {m} {k8s.staging_tag}" for m in sorted(set(mods))]


def render_go_mod(recipe: GoRecipe, replaces: list[str]) -> str:
    lines = [
        "module pytest-vcluster.local/build",
        "",
        "go 1.22",
        "",
        f"require {recipe.module} {recipe.version}",
    ]
    if replaces:
        lines += ["", "replace (", *replaces, ")"]
    return "\n".join(lines) + "\n"


def render_tools_go(packages: tuple[str, ...]) -> str:
    imports = "\n".join(f'\t_ "{p}"' for p in packages)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


class GoBuilder:
    """Runs the ``go`` tool for a recipe, printing a heartbeat while it works."""

    def __init__(self, root: Path, progress: Progress, go: str | None = None) -> None:
        self.root = root
        self.progress = progress
        self.go = go or shutil.which("go")

    @property
    def available(self) -> bool:
        return self.go is not None

    def build(self, recipe: GoRecipe, output: Path) -> None:
        """Build ``recipe`` to ``output`` (written in place: callers pass a temp path)."""
        workdir = self.root / recipe.workdir_name
        workdir.mkdir(parents=True, exist_ok=True)
        self._prepare(recipe, workdir)
        pkg = recipe.package
        flags = " ".join(("-s", "-w", *recipe.ldflags))
        self._run(
            [self._go(), "build", "-trimpath", f"-ldflags={flags}", "-o", str(output), pkg],
            workdir,
            f"building {recipe.tool} {recipe.version} from {recipe.module}",
        )

    def _prepare(self, recipe: GoRecipe, workdir: Path) -> None:
        stamp = workdir / ".prepared"
        want = json.dumps([recipe.module, recipe.version, recipe.siblings or recipe.package])
        if stamp.exists() and stamp.read_text() == want:
            return
        replaces: list[str] = []
        if recipe.k8s is not None:
            info = self._mod_download(f"{recipe.module}@{recipe.version}", workdir)
            replaces = staging_replaces(Path(info["GoMod"]).read_text(), recipe.k8s)
        (workdir / "go.mod").write_text(render_go_mod(recipe, replaces))
        (workdir / "go.sum").unlink(missing_ok=True)
        if recipe.main_go is not None:
            (workdir / "main.go").write_text(recipe.main_go)
        else:
            (workdir / "tools.go").write_text(render_tools_go(recipe.siblings or (recipe.package,)))
        self._run([self._go(), "mod", "tidy"], workdir, f"resolving Go modules for {recipe.module}")
        stamp.write_text(want)

    def _mod_download(self, spec: str, workdir: Path) -> dict[str, str]:
        proc = subprocess.run(
            [self._go(), "mod", "download", "-json", spec],
            cwd=workdir,
            capture_output=True,
            text=True,
            env=self._env(),
            check=False,
        )
        try:
            info: dict[str, str] = json.loads(proc.stdout)
        except json.JSONDecodeError:
            info = {}
        if proc.returncode != 0 or "GoMod" not in info:
            detail = info.get("Error") or proc.stderr.strip()[-2000:]
            raise BinaryNotFoundError(f"go mod download {spec} failed: {detail}")
        return info

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("CGO_ENABLED", "0")
        env["CGO_ENABLED"] = "0"
        env.setdefault("GOFLAGS", "-buildvcs=false")
        return env

    def _go(self) -> str:
        if self.go is None:
            raise BinaryNotFoundError("go is not on PATH")
        return self.go

    def _run(self, cmd: list[str], cwd: Path, what: str) -> None:
        log = cwd / "build.log"
        self.progress(f"pytest-vcluster: {what} (this can take minutes on a cold Go cache)")
        start = time.monotonic()
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(30):
                self.progress(f"pytest-vcluster: ... still {what}, {time.monotonic() - start:.0f}s")

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        try:
            with log.open("w") as fh:
                rc = subprocess.run(
                    cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=self._env(), check=False
                ).returncode
        finally:
            done.set()
        if rc != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise BinaryNotFoundError(f"{what} failed (exit {rc}); log {log}:\n{tail}")
        self.progress(f"pytest-vcluster: {what}: done in {time.monotonic() - start:.0f}s")
