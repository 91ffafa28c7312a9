"""Build the upstream conformance suite offline: ``e2e.test``, the ``ginkgo`` runner and
``agnhost``, from the Go module proxy, cached by Kubernetes version.

``go test -c k8s.io/kubernetes/test/e2e`` from a module that requires k8s.io/kubernetes (its
staging modules pinned as for the other binaries, ``pytest_vcluster.gobuild``) and imports what
``test/e2e/e2e_test.go`` imports, so ``go mod tidy`` brings the test's own dependencies.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from kindsetup import log

from pytest_vcluster.gobuild import GoBuilder, render_tools_go, staging_replaces
from pytest_vcluster.versions import K8sVersion


def _imports(go_file: str) -> list[str]:
    block = re.search(r"^import \((.*?)^\)", go_file, re.S | re.M)
    assert block, "no import block"
    return re.findall(r'^\s*(?:\w+\s+|_\s+)?"([^"]+)"', block.group(1), re.M)


class ConformanceBuild:
    """``e2e.test``, ``ginkgo`` and ``agnhost`` of one Kubernetes version, in the cache."""

    def __init__(self, k8s: K8sVersion, cache_dir: Path) -> None:
        self.k8s = k8s
        self.dir = cache_dir / "conformance" / k8s.tag
        self.work = cache_dir / "go" / f"conformance-{k8s.tag}"
        self.go = GoBuilder(cache_dir / "go", log)

    def paths(self) -> dict[str, Path]:
        return {t: self.dir / t for t in ("e2e.test", "ginkgo", "agnhost")}

    def build(self) -> dict[str, Path]:
        paths = self.paths()
        if all(p.exists() for p in paths.values()):
            return paths
        self.dir.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self._prepare()
        flags = f"-s -w -X k8s.io/component-base/version.gitVersion={self.k8s.tag}"
        for name, cmd in (
            ("agnhost", ["build", "-o", "{out}", "k8s.io/kubernetes/test/images/agnhost"]),
            ("ginkgo", ["build", "-o", "{out}", "github.com/onsi/ginkgo/v2/ginkgo"]),
            ("e2e.test", ["test", "-c", "-o", "{out}", "k8s.io/kubernetes/test/e2e"]),
        ):
            if paths[name].exists():
                continue
            tmp = paths[name].with_suffix(".incoming")
            argv = [a.replace("{out}", str(tmp)) for a in cmd]
            self.go._run(
                [self.go._go(), argv[0], "-trimpath", f"-ldflags={flags}", *argv[1:]],
                self.work,
                f"building {name} {self.k8s.tag}",
            )
            tmp.rename(paths[name])
        return paths

    def _prepare(self) -> None:
        stamp = self.work / ".prepared"
        if stamp.exists():
            return
        info = self.go._mod_download(f"k8s.io/kubernetes@{self.k8s.tag}", self.work)
        root = Path(info["Dir"])
        replaces = staging_replaces(Path(info["GoMod"]).read_text(), self.k8s)
        ginkgo = re.search(r"github.com/onsi/ginkgo/v2 (v\S+)", (root / "go.mod").read_text())
        assert ginkgo, "k8s.io/kubernetes requires no ginkgo"
        packages = sorted(
            {
                p
                for p in _imports((root / "test/e2e/e2e_test.go").read_text())
                if "." in p.split("/")[0]  # not the standard library
            }
            | {"k8s.io/kubernetes/test/e2e", "k8s.io/kubernetes/test/images/agnhost"}
            | {"github.com/onsi/ginkgo/v2/ginkgo"}
        )
        (self.work / "go.mod").write_text(
            "module pytest-vcluster.local/conformance\n\ngo 1.24\n\n"
            f"require (\n\tk8s.io/kubernetes {self.k8s.tag}\n"
            f"\tgithub.com/onsi/ginkgo/v2 {ginkgo.group(1)}\n)\n\n"
            "replace (\n" + "\n".join(replaces) + "\n)\n"
        )
        (self.work / "tools.go").write_text(render_tools_go(tuple(packages)))
        self.go._run([self.go._go(), "mod", "tidy"], self.work, "resolving the e2e modules")
        stamp.write_text("ok")

    def clean(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
