"""The local host as its vclusters see it: plain data that crosses processes.

The local host runs in a supervisor process shared by all xdist workers (``shared.py``); each
worker reads a ``LocalHostInfo`` from the supervisor's state file and starts its own
vclusters with it: their own kube-apiserver and controller-manager on the host's etcd
(``local_vcluster.py``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..naming import default_cache_dir
from ..spec import SpecError, VClusterSpec, check_supported
from ..versions import LOCAL_HOST_TOOLS, parse_k8s_version
from .base import HostContext, Provides, RuntimeOptions

if TYPE_CHECKING:
    from ..kept import KeptRecord
    from ..pki import CertificateAuthority
    from ..rest import RestClient
    from ..settings import Settings
    from .local_vcluster import LocalVCluster
    from .tools import Tools

PROVIDES = Provides(
    tools=LOCAL_HOST_TOOLS,
    chart_values=False,  # a vcluster is processes here, not the chart
    default_prewarm=1,  # ~2.5 s of CPU each: worth starting the next one while a test runs
    deferred_namespace_wait=False,  # delete() drops the etcd prefix: nothing terminates
)
# A vcluster of another Kubernetes version runs that version's control plane.
VERSIONED = ("kube-apiserver", "kube-controller-manager")


@dataclass(frozen=True)
class LocalHostInfo:
    k8s_version: str
    server: str
    kubeconfig: str
    etcd_url: str
    pki_dir: str  # ca.crt, ca.key, admin.crt, admin.key of the host's control plane
    workdir: str  # vclusters keep their files under <workdir>/vclusters/<name>
    binaries: dict[str, str] = field(default_factory=dict)
    supervisor_pid: int = 0
    cache_dir: str = ""  # binaries of other versions, tools ("": the default)

    @property
    def kind(self) -> str:
        return "local"

    @property
    def provides(self) -> Provides:
        return PROVIDES

    def rest(self) -> RestClient:
        from ..rest import Credentials, RestClient  # ssl and http.client: not at plugin load

        d = Path(self.pki_dir)
        return RestClient(Credentials(self.server, d / "ca.crt", d / "admin.crt", d / "admin.key"))

    def ca(self) -> CertificateAuthority:
        from ..pki import CertificateAuthority  # cryptography is slow to import

        d = Path(self.pki_dir)
        return CertificateAuthority.load((d / "ca.crt").read_bytes(), (d / "ca.key").read_bytes())

    def binary_paths(self) -> dict[str, Path]:
        return {k: Path(v) for k, v in self.binaries.items()}

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()

    def tools(self) -> Tools:
        from .tools import Tools

        return Tools(self.binary_paths(), parse_k8s_version(self.k8s_version), self.cache_path)

    def new_vcluster(self, spec: VClusterSpec, options: RuntimeOptions) -> LocalVCluster:
        from .local_vcluster import LocalVCluster

        assert spec.name is not None
        where = f"vcluster {spec.name}"
        check_supported(spec, self.kind, PROVIDES, where)
        if options.images:
            raise SpecError(f"{where}: images= are the Helm chart's; the local host runs none")
        binaries = {**self._versioned_binaries(spec, options), **options.binaries}
        return LocalVCluster(
            self,
            spec.name,
            labels=dict(options.labels),
            syncer_args=spec.syncer_args(),
            binaries=binaries,
            progress=options.progress,
            timeout=options.timeout,
            detachable=options.detachable,
        )

    def _versioned_binaries(self, spec: VClusterSpec, options: RuntimeOptions) -> dict[str, Path]:
        if spec.k8s_version is None or str(spec.k8s_version) == self.k8s_version:
            return {}
        from ..binaries import BinaryResolver

        resolver = BinaryResolver(spec.k8s_version, self.cache_path, progress=options.progress)
        return {t: resolver.resolve(t).path for t in VERSIONED}

    def needed_after_run(self, kept: list[KeptRecord]) -> bool:
        return any(r.host_supervisor_pid == self.supervisor_pid for r in kept)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LocalHostInfo:
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class LocalHostType:
    name = "local"
    provides = PROVIDES
    unusable = "did not start"
    options: tuple[str, ...] = ()

    def check_settings(self, settings: Settings) -> None:
        pass  # binaries are resolved (or built) when the host starts

    def describe(self, settings: Settings) -> str:
        return self.name

    @contextmanager
    def open(self, ctx: HostContext) -> Iterator[LocalHostInfo]:
        """One host per run, shared by xdist workers; kept vclusters keep it up."""
        from .. import kept
        from .shared import SharedHost

        s = ctx.settings
        shared = SharedHost(
            ctx.state_dir,
            k8s_version=str(s.k8s),
            cache_dir=s.cache_dir,
            timeout=s.timeout,
            reuse=s.reuse_host,
        )
        ctx.progress(f"pytest-vcluster: acquiring the local host ({s.k8s})")
        info = shared.acquire()
        try:
            yield info
        finally:
            if info.needed_after_run([r for _, r in kept.load_all(s.cache_dir)]):
                shared.reuse = True
            shared.release()


HOST_TYPE = LocalHostType()
