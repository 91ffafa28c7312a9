"""The effective settings of a run (CLI over ini over defaults), as plain frozen data: the
manager and the hosts read them without pytest (``config.py`` builds them from options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .versions import K8sVersion

IDLE = "idle"  # the --vcluster-prewarm-cpu budget of the least weight


@dataclass(frozen=True)
class Settings:
    host: str
    k8s: K8sVersion  # the host's; vclusters' default
    cache_dir: Path
    timeout: float
    keep: str = "never"
    values: dict[str, Any] = field(default_factory=dict)
    reuse_host: bool = False
    prewarm: int | None = None  # None: the host's default (Provides.default_prewarm)
    # A pooled vcluster's CPU budget until handed out: IDLE waits for an idle machine to start
    # it (idle.py) and on chart hosts gives it the least CPU weight (hosts/incluster/budget.py)
    prewarm_cpu: str = "idle"
    kind_cluster: str = "pytest-vcluster"
    kind_image: str | None = None
    kind_workers: int = 0
    kubeconfig: str = ""
    context: str | None = None
    ttl: float = 6 * 3600  # seconds: then `reap` and the in-cluster janitor may remove it
    artifacts: Path | None = None  # --vcluster-artifacts: a folder per test written there
    artifacts_when: str = "failed"  # or "always"
    # --vcluster-k8s-version=1.35,1.37: every vcluster test runs once per version (the host
    # runs the newest); empty when one version was given.
    k8s_matrix: tuple[K8sVersion, ...] = ()
    missing_version: str = "error"  # or "skip": a matrix cell whose version is not obtainable
    # "auto": a kind vcluster's API at a node port where this machine routes to the node, else
    # a port-forward; "port-forward": always the port-forward
    access: str = "auto"
