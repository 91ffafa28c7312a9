"""Names of vclusters and their host namespaces (no heavy imports: the plugin loads this)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import HostStartError

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise HostStartError(
            f"vcluster name {name!r} is invalid: use 1-32 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def host_namespace_for(name: str) -> str:
    return f"vcluster-{name}"


def default_cache_dir() -> Path:
    env = os.environ.get("PYTEST_VCLUSTER_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-vcluster"
