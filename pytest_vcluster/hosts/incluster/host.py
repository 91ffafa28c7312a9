"""What a host whose vclusters are Helm releases gives them: kind and kubeconfig hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..base import Progress, Provides
from ..tools import Tools


class ClusterHost(Protocol):
    """What a host whose vclusters are Helm releases gives them (kind, kubeconfig)."""

    @property
    def kind(self) -> str: ...

    @property
    def provides(self) -> Provides: ...

    @property
    def kubeconfig(self) -> str: ...

    @property
    def k8s_version(self) -> str:
        """The Kubernetes version of its vclusters by default."""

    @property
    def workdir(self) -> Path:
        """Vclusters keep their files (certificates, kubeconfig) under ``<workdir>/vclusters``."""

    def tools(self) -> Tools: ...

    def node_address(self) -> str:
        """An address of a host node this machine routes to (its vclusters' API servers are
        reached at a node port there), "" when there is none (a port-forward then)."""

    def images(self, k8s_version: str, progress: Progress) -> dict[str, str]:
        """The control-plane and syncer image refs (chart keys) its vclusters run."""

    def load_images(self, images: list[str], progress: Progress) -> float:
        """Make ``images`` available to the host's nodes; seconds it took (0: nothing to do)."""

    def container_rss(self, namespace: str, pod: str) -> dict[str, int]: ...
