"""Find or obtain the binaries a host needs, for one Kubernetes version.

Order: explicit path (argument or ``PYTEST_VCLUSTER_<TOOL>`` env var) -> cache
(``<cache>/bin/<tool>-<version>/``, verified against its manifest) -> PATH (version-checked) ->
official download verified by sha256 -> build from the Go module. Filling a cache entry holds a
file lock and ends with an atomic rename, so parallel runs and xdist workers never see half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from . import versions
from .errors import BinaryNotFoundError, ChecksumMismatchError, VClusterError
from .gobuild import K8S_COMPONENTS, GoBuilder, Progress, recipe_for
from .naming import default_cache_dir as default_cache_dir  # re-exported
from .versions import LOCAL_HOST_TOOLS as LOCAL_HOST_TOOLS  # re-exported
from .versions import K8sVersion, parse_loose

TOOLS = (*K8S_COMPONENTS, "etcd", "coredns", "kwok", "helm", "kind")

#: Official download locations; the part before the path is replaced by a configured mirror.
OFFICIAL_BASES = {
    "k8s": "https://dl.k8s.io",
    "helm": "https://get.helm.sh",
    "kind": "https://kind.sigs.k8s.io",
    "github": "https://github.com",
}
GITHUB_API = "https://api.github.com"
DOWNLOAD_OFF = "off"
_VERSION_ARGS = {
    "kubectl": ["version", "--client"],
    "helm": ["version", "--short"],
    "kind": ["version"],
}


def arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


@dataclass(frozen=True)
class Download:
    """Where one tool's official artifact lives, relative to a base URL."""

    path: str
    checksum_path: str
    member: str | None = None  # file inside a .tar.gz
    #: The checksum is the asset's ``digest`` in this GitHub releases-API answer (kwok).
    release_api: bool = False
    #: Official base of the checksum when it is not the artifact's (a mirror serves both).
    checksum_base: str | None = None

    def urls(self, base: str, mirrored: bool) -> tuple[str, str]:
        base = base.rstrip("/")
        sums = base if mirrored or self.checksum_base is None else self.checksum_base
        return base + self.path, sums + self.checksum_path


def download_spec(tool: str, version: str) -> tuple[str, Download] | None:
    """(official base key, Download) for ``tool``, or None when there is no checksummed artifact."""
    a = arch()
    if tool in K8S_COMPONENTS:
        p = f"/release/v{version}/bin/linux/{a}/{tool}"
        return "k8s", Download(p, p + ".sha256")
    if tool == "etcd":
        d = f"/etcd-io/etcd/releases/download/v{version}"
        name = f"etcd-v{version}-linux-{a}"
        return "github", Download(f"{d}/{name}.tar.gz", f"{d}/SHA256SUMS", f"{name}/etcd")
    if tool == "coredns":
        p = f"/coredns/coredns/releases/download/v{version}/coredns_{version}_linux_{a}.tgz"
        return "github", Download(p, p + ".sha256", "coredns")
    if tool == "helm":
        p = f"/helm-v{version}-linux-{a}.tar.gz"
        return "helm", Download(p, p + ".sha256sum", f"linux-{a}/helm")
    if tool == "kind":
        p = f"/dl/v{version}/kind-linux-{a}"
        return "kind", Download(p, p + ".sha256sum")
    if tool == "kwok":  # no checksum file: GitHub's releases API gives each asset's digest
        tag = f"v{version}"
        return "github", Download(
            f"/kubernetes-sigs/kwok/releases/download/{tag}/kwok-linux-{a}",
            f"/repos/kubernetes-sigs/kwok/releases/tags/{tag}",
            release_api=True,
            checksum_base=GITHUB_API,
        )
    return None


def parse_checksum(text: str, filename: str) -> str:
    """The sha256 for ``filename`` from a bare-digest or ``sha256sum``-style file."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1 and len(lines[0]) == 1:
        digest = lines[0][0]
    else:
        found = [p[0] for p in lines if len(p) >= 2 and p[-1].lstrip("*") == filename]
        if not found:
            raise ChecksumMismatchError(
                f"no checksum for {filename} in the published checksum file"
            )
        digest = found[0]
    digest = digest.lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ChecksumMismatchError(
            f"published checksum for {filename} is not a sha256: {digest!r}"
        )
    return digest


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Resolved:
    tool: str
    version: str
    path: Path
    source: str  # explicit | cache | path | download | build


def _env_key(tool: str) -> str:
    return "PYTEST_VCLUSTER_" + tool.upper().replace("-", "_")


class BinaryResolver:
    """Resolve every tool for one Kubernetes version; see the module docstring for the order."""

    def __init__(
        self,
        k8s: K8sVersion,
        cache_dir: Path | None = None,
        *,
        explicit: Mapping[str, str | Path] | None = None,
        download_base: str | None = None,
        use_path: bool = True,
        allow_build: bool = True,
        progress: Progress | None = None,
        go: str | None = None,
    ) -> None:
        self.k8s = k8s
        self.cache_dir = (cache_dir or default_cache_dir()).expanduser()
        self.explicit = {k: Path(v) for k, v in (explicit or {}).items()}
        self.download_base = download_base or os.environ.get("PYTEST_VCLUSTER_DOWNLOAD_URL")
        self.use_path = use_path
        self.allow_build = allow_build
        self.progress: Progress = progress or (lambda msg: print(msg, file=sys.stderr))
        self.builder = GoBuilder(self.cache_dir / "go", self.progress, go=go)
        self._memo: dict[str, Resolved] = {}

    # -- public
    def version_of(self, tool: str) -> str:
        if tool in K8S_COMPONENTS:
            return str(self.k8s)
        pinned = {
            "etcd": versions.ETCD,
            "coredns": versions.COREDNS,
            "kwok": versions.KWOK,
            "helm": versions.HELM,
            "kind": versions.KIND,
        }
        if tool not in pinned:
            raise VClusterError(f"unknown tool {tool!r}; known: {', '.join(TOOLS)}")
        return pinned[tool]

    def lookup(self, tool: str, tried: list[str] | None = None) -> Resolved | None:
        """What resolves without downloading or building: explicit path, cache, PATH."""
        version = self.version_of(tool)
        tried = [] if tried is None else tried
        return (
            self._explicit(tool)
            or self._cached(tool, version, tried)
            or self._on_path(tool, version, tried)
        )

    def resolve(self, tool: str, *, force_build: bool = False) -> Resolved:
        """Resolve ``tool``, downloading or building it into the cache when needed."""
        if tool in self._memo and not force_build:
            return self._memo[tool]
        tried: list[str] = []
        found = None if force_build else self.lookup(tool, tried)
        if found is None:
            found = self._fill_cache(tool, self.version_of(tool), tried, force_build)
        self._memo[tool] = found
        return found

    def resolve_all(self, tools: Iterable[str] = LOCAL_HOST_TOOLS) -> dict[str, Resolved]:
        return {t: self.resolve(t) for t in tools}

    def cache_entry(self, tool: str, version: str) -> Path:
        return self.cache_dir / "bin" / f"{tool}-{version}" / tool

    # -- the steps
    def _explicit(self, tool: str) -> Resolved | None:
        raw = self.explicit.get(tool) or os.environ.get(_env_key(tool))
        if not raw:
            return None
        path = Path(raw).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BinaryNotFoundError(
                f"{tool}: the explicit path {str(path)!r} (argument or {_env_key(tool)}) "
                "is not an executable file"
            )
        return Resolved(tool, self.version_of(tool), path, "explicit")

    def _cached(self, tool: str, version: str, tried: list[str]) -> Resolved | None:
        path = self.cache_entry(tool, version)
        if self._cache_valid(path):
            return Resolved(tool, version, path, "cache")
        tried.append(f"cache: no valid entry at {path}")
        return None

    def _cache_valid(self, path: Path) -> bool:
        manifest = path.with_name("manifest.json")
        try:
            meta = json.loads(manifest.read_text())
            if path.stat().st_size != meta["size"]:
                return False
            return bool(sha256_file(path) == meta["sha256"])
        except (OSError, ValueError, KeyError):
            return False

    def _on_path(self, tool: str, version: str, tried: list[str]) -> Resolved | None:
        if not self.use_path:
            return None
        exe = shutil.which(tool)
        if exe is None:
            tried.append(f"PATH: no {tool}")
            return None
        have = self.probe_version(exe, tool)
        if self._version_ok(tool, have):
            return Resolved(tool, ".".join(map(str, have or ())), Path(exe), "path")
        tried.append(f"PATH: {exe} reports {have or 'no version'}, not acceptable")
        return None

    def probe_version(self, exe: str | Path, tool: str) -> tuple[int, ...] | None:
        try:
            out = subprocess.run(
                [str(exe), *_VERSION_ARGS.get(tool, ["--version"])],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return parse_loose(out.stdout + out.stderr)

    def _version_ok(self, tool: str, have: tuple[int, ...] | None) -> bool:
        if have is None:
            return False
        if tool in K8S_COMPONENTS:
            want = (self.k8s.major, self.k8s.minor, self.k8s.patch)
            return have[:3] == want if self.k8s.exact else have[:2] == want[:2]
        return have >= versions.MIN_ON_PATH[tool]

    def _fill_cache(self, tool: str, version: str, tried: list[str], force: bool) -> Resolved:
        dest = self.cache_entry(tool, version)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(dest.parent) + ".lock"):
            if not force and self._cache_valid(dest):  # another worker filled it meanwhile
                return Resolved(tool, version, dest, "cache")
            tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=dest.parent)) / tool
            try:
                source = self._obtain(tool, version, tmp, tried, force)
                tmp.chmod(0o755)
                meta = {"sha256": sha256_file(tmp), "size": tmp.stat().st_size, "source": source}
                os.replace(tmp, dest)
                dest.with_name("manifest.json").write_text(json.dumps(meta))
            finally:
                shutil.rmtree(tmp.parent, ignore_errors=True)
        return Resolved(tool, version, dest, source)

    def _obtain(self, tool: str, version: str, out: Path, tried: list[str], force: bool) -> str:
        if not force and self._download(tool, version, out, tried):
            return "download"
        if self.allow_build and self.builder.available:
            with FileLock(str(self.cache_dir / "go-build.lock")):
                try:
                    self.builder.build(recipe_for(tool, version, self.k8s), out)
                except BinaryNotFoundError as exc:
                    tried.append(f"Go build: {exc}")
                else:
                    return "build"
        elif self.allow_build:
            tried.append("Go build: go is not on PATH")
        raise BinaryNotFoundError(
            f"cannot obtain {tool} {version}. Tried:\n  - "
            + "\n  - ".join(tried)
            + f"\nFix: put {tool} on PATH, set {_env_key(tool)}=/path/to/{tool}, set "
            "PYTEST_VCLUSTER_DOWNLOAD_URL to a reachable mirror, or install Go and run "
            "`pytest-vcluster binaries --build`."
        )

    def _download(self, tool: str, version: str, out: Path, tried: list[str]) -> bool:
        spec = download_spec(tool, version)
        if spec is None:
            tried.append(f"download: {tool} publishes no checksummed artifact")
            return False
        if self.download_base == DOWNLOAD_OFF:
            tried.append("download: disabled (PYTEST_VCLUSTER_DOWNLOAD_URL=off)")
            return False
        key, dl = spec
        url, sum_url = dl.urls(self.download_base or OFFICIAL_BASES[key], bool(self.download_base))
        name = url.rsplit("/", 1)[-1]
        try:
            self.progress(f"pytest-vcluster: downloading {tool} {version} from {url}")
            if dl.release_api:
                want = release_digest(_fetch_release(sum_url), name, sum_url)
            else:
                want = parse_checksum(_fetch_text(sum_url), name)
            artifact = out.with_name("artifact")
            got = _fetch_to(url, artifact)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            tried.append(f"download: {url}: {exc}")
            return False
        if got != want:
            artifact.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{tool} {version} from {url} has sha256 {got}, but {sum_url} says {want}; "
                "the download was discarded"
            )
        if dl.member is None:
            artifact.rename(out)
        else:
            _extract_member(artifact, dl.member, out)
        return True


def release_digest(release: Mapping[str, object], asset: str, url: str) -> str:
    """The sha256 GitHub gives ``asset`` in a releases-API answer (``"digest": "sha256:…"``);
    ValueError when the asset or its digest is missing (older releases have none)."""
    assets = release.get("assets")
    found = [a for a in assets if a.get("name") == asset] if isinstance(assets, list) else []
    if not found:
        raise ValueError(f"release {url} has no asset {asset}")
    digest = str(found[0].get("digest") or "")
    algo, _, value = digest.partition(":")
    if algo != "sha256" or not value:
        raise ValueError(
            f"release {url} gives no sha256 digest for {asset} (got {digest or 'none'}), so it "
            "is not downloaded unverified"
        )
    return parse_checksum(value, asset)


def _fetch_release(url: str) -> Mapping[str, object]:
    """A GitHub releases-API answer (with ``GITHUB_TOKEN``, when set, for its rate limit)."""
    headers = {"Accept": "application/vnd.github+json"}
    token = os.environ.get("GITHUB_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=15) as r:
            data: object = json.loads(r.read(4 << 20))
    except urllib.error.HTTPError as exc:
        if exc.code in (403, 429) and exc.headers.get("X-RateLimit-Remaining") == "0":
            hint = "a token with a higher limit" if token else "GITHUB_TOKEN to a token to raise it"
            raise ValueError(f"GitHub API rate limit reached ({url}); set {hint}") from None
        raise
    if not isinstance(data, dict):
        raise ValueError(f"{url} is not a release")
    return data


def _fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=15) as resp:
        data: bytes = resp.read(1 << 20)
    return data.decode("utf-8", errors="replace")


def _fetch_to(url: str, dest: Path) -> str:
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=30) as resp, dest.open("wb") as fh:
        for chunk in iter(lambda: resp.read(1 << 20), b""):
            h.update(chunk)
            fh.write(chunk)
    return h.hexdigest()


def _extract_member(archive: Path, member: str, out: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        try:
            info = tar.getmember(member)
        except KeyError:
            raise BinaryNotFoundError(f"{archive.name} has no {member}") from None
        src = tar.extractfile(info)
        if src is None:
            raise BinaryNotFoundError(f"{member} in {archive.name} is not a file")
        with src, out.open("wb") as fh:
            shutil.copyfileobj(src, fh)
