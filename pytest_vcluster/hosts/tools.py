"""Command-line tools for one host: the paths it has, else the plugin's resolver (an explicit
path, the cache, PATH, a download, a Go build) for the host's Kubernetes version."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from ..naming import default_cache_dir
from ..versions import K8sVersion
from .base import Progress, quiet


class Tools:
    def __init__(
        self,
        known: Mapping[str, Path],
        k8s: K8sVersion,
        cache_dir: Path | None = None,
        progress: Progress = quiet,
    ) -> None:
        self._paths = dict(known)
        self.k8s = k8s  # kubectl spans ±1 minor: the host's version serves every vcluster
        self.cache_dir = cache_dir or default_cache_dir()
        self.progress = progress
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        with self._lock:
            if name not in self._paths:
                from ..binaries import BinaryResolver

                resolver = BinaryResolver(self.k8s, self.cache_dir, progress=self.progress)
                self._paths[name] = resolver.resolve(name).path
            return self._paths[name]

    def with_paths(self, extra: Mapping[str, Path]) -> Tools:
        return Tools({**self._paths, **extra}, self.k8s, self.cache_dir, self.progress)
