"""The two interfaces every host type implements: ``Host`` makes ``Runtime``s.

plugin → manager → **host** → **runtime** → syncer. A host type (``local``, ``kind``,
``kubeconfig``; see ``registry.py``) says what it provides before it exists (``Provides``),
opens its host (``HostType.open``), and the opened ``Host`` — plain data, since the local host
is shared by xdist workers through a state file — makes vclusters: ``new_vcluster(spec)``. A
``Runtime`` is one vcluster's lifecycle (local processes, or a Helm release on a cluster).
Nothing outside a host module asks which host it has: it asks the host.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..kept import KeptRecord
    from ..settings import Settings
    from ..spec import VClusterSpec
    from .tools import Tools

Progress = Callable[[str], None]


def quiet(msg: str) -> None:
    pass


def start_or_remove(
    start: Callable[[], None], delete: Callable[[], None], progress: Progress
) -> None:
    """Run a runtime's start; when it fails, remove what it made before the error goes on (the
    start's own error is the one raised; a removal that fails too is only reported)."""
    from ..errors import CleanupError

    try:
        start()
    except BaseException:
        try:
            delete()
        except CleanupError as exc:
            progress(f"pytest-vcluster: after a failed start: {exc}")
        raise


@dataclass(frozen=True)
class Provides:
    """What vclusters on a host type get, known before the host exists (options, markers and
    the report header are checked against it)."""

    tools: tuple[str, ...]  # binaries the host runs or drives (the header says if cached)
    chart_values: bool  # vclusters are releases of chart/: values= and --vcluster-values apply
    default_prewarm: int  # vclusters started ahead of the tests when --vcluster-prewarm is unset
    deferred_namespace_wait: bool  # delete(wait=False) leaves a terminating namespace


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a vcluster (not what it is: that is the ``VClusterSpec``)."""

    labels: Mapping[str, str] = field(default_factory=dict)  # on its host namespace
    timeout: float = 60.0
    progress: Progress = quiet
    detachable: bool = False  # may outlive this process (keep policies)
    binaries: Mapping[str, Path] = field(default_factory=dict)  # tool paths over the host's
    images: Mapping[str, str] = field(default_factory=dict)  # chart hosts: {"syncer": ref, ...}
    # chart hosts: the API server at a node port where this machine routes to a host node
    # (kind on Linux); False: always through a port-forward (--vcluster-access=port-forward)
    node_port: bool = True
    # chart hosts: a CPU limit on the vcluster's containers until ``lift_cpu_budget()`` (a
    # pooled vcluster, started in the background while a test runs)
    cpu_budget: str | None = None


class Runtime(Protocol):
    """One vcluster: ``start()`` until ready, ``delete()``, or ``detach()`` to keep it."""

    name: str
    host_namespace: str
    ready_seconds: float
    teardown_seconds: float

    @property
    def kubeconfig_path(self) -> Path: ...

    def start(self) -> None: ...

    def delete(self, wait: bool = True) -> None:
        """Remove it; ``CleanupError`` names what could not be removed."""

    def wait_deleted(self, timeout: float = 120) -> bool:
        """Whether everything is gone (waits up to ``timeout`` for what ``delete(wait=False)``
        left terminating)."""

    def detach(self) -> KeptRecord:
        """Leave it running after this process ends; what ``pytest-vcluster reap`` needs."""

    def diagnostics(self, log_lines: int = 60) -> dict[str, str]:
        """Report sections for a failed test (its own logs: the last ``log_lines``; 0: all)."""

    def rss(self) -> dict[str, int]:
        """Resident memory of its processes or containers, in bytes, by name."""

    def lift_cpu_budget(self) -> None:
        """Lift the CPU limit it was started under (``RuntimeOptions.cpu_budget``), also while
        it is still starting; nothing where it has none."""


class Host(Protocol):
    """A host as its vclusters see it."""

    @property
    def kind(self) -> str:
        """The host type's name (``local``, ``kind``, ...): for messages and records."""

    @property
    def k8s_version(self) -> str: ...

    @property
    def server(self) -> str: ...

    @property
    def kubeconfig(self) -> str:
        """A cluster-admin kubeconfig for the host."""

    @property
    def provides(self) -> Provides: ...

    def tools(self) -> Tools:
        """kubectl, helm, ... for commands against this host's vclusters."""

    def new_vcluster(self, spec: VClusterSpec, options: RuntimeOptions) -> Runtime:
        """A vcluster of ``spec`` (named), not started; ``SpecError`` for what this host cannot
        honour."""

    def needed_after_run(self, kept: list[KeptRecord]) -> bool:
        """Whether kept vclusters need this host to stay up after the run."""


@dataclass(frozen=True)
class HostContext:
    """What opening a host may use: the run's settings, where a host shared by xdist workers
    keeps its state, and where progress lines go."""

    settings: Settings
    state_dir: Path
    progress: Progress = quiet


class HostType(Protocol):
    name: str
    provides: Provides
    unusable: str  # "did not start", "is not usable": how a failure to open reads
    options: tuple[str, ...]  # the options check_settings reads, the one it names first

    def check_settings(self, settings: Settings) -> None:
        """``VClusterError`` for settings this host type cannot use (before any test)."""

    def describe(self, settings: Settings) -> str:
        """The host in the report header: ``local``, ``kubeconfig (path, context x)``."""

    def open(self, ctx: HostContext) -> AbstractContextManager[Host]:
        """Start (or reuse, or check) the host; released when the context ends. Raises
        ``VClusterError`` with the reason."""


def __getattr__(name: str) -> Any:
    # HostInfo was the one host data class (all hosts in one, told apart by a ``kind`` string);
    # it is the local host's now.
    if name == "HostInfo":
        from .local_info import LocalHostInfo

        return LocalHostInfo
    raise AttributeError(name)
