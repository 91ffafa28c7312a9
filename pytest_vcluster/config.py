"""Frozen settings built from pytest options; every option has an ini twin and the CLI wins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .errors import VClusterError
from .hosts.kubeconfig import default_kubeconfig
from .hosts.registry import NAMES as HOSTS
from .naming import default_cache_dir
from .settings import IDLE, Settings
from .versions import parse_k8s_versions

KEEP = ("never", "on-failure", "always")
ARTIFACTS_WHEN = ("failed", "always")
MISSING_VERSION = ("error", "skip")
ACCESS = ("auto", "port-forward")


@dataclass(frozen=True)
class Option:
    name: str  # CLI flag without leading dashes; the ini key is the same with "_"
    help: str
    default: str | None
    const: str | None = None  # value of the bare flag (``--vcluster-reuse-host``)

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def ini(self) -> str:
        return self.name.replace("-", "_")

    @property
    def dest(self) -> str:
        return self.ini


OPTIONS = (
    Option("vcluster-host", f"where clusters run: {'|'.join(HOSTS)} (default local)", "local"),
    Option(
        "vcluster-k8s-version",
        "Kubernetes version of hosts and vclusters, MAJOR.MINOR[.PATCH] (default: newest); "
        "several, comma-separated (1.35,1.37): every vcluster test runs once per version, "
        "on a host of the newest",
        None,
    ),
    Option(
        "vcluster-missing-version",
        "a test cell whose Kubernetes version cannot be obtained: error|skip (default error)",
        "error",
    ),
    Option("vcluster-cache-dir", "binary and build cache (default ~/.cache/pytest-vcluster)", None),
    Option("vcluster-timeout", "seconds a host or vcluster may take to become ready", "120"),
    Option(
        "vcluster-keep",
        f"keep vclusters after their test: {'|'.join(KEEP)} (default never)",
        "never",
    ),
    Option(
        "vcluster-kind-cluster",
        "name of the kind host cluster (created or reused)",
        "pytest-vcluster",
    ),
    Option(
        "vcluster-kind-image",
        "kind node image (default: newest local pytest-vcluster/kind-node of the version, "
        "else kindest/node)",
        None,
    ),
    Option("vcluster-kind-workers", "worker nodes of a new kind host (default 0)", "0"),
    Option(
        "vcluster-prewarm",
        "vclusters kept ready in the background for the next tests (0 disables; default 1 on "
        "the local host, 0 on kind and kubeconfig hosts)",
        None,
    ),
    Option(
        "vcluster-prewarm-cpu",
        "CPU budget of a vcluster starting in the pool on kind and kubeconfig hosts, lifted "
        "when a test takes it: idle (the least CPU weight: only what the node leaves idle; "
        "the default) or a CPU limit (250m, 1)",
        "idle",
    ),
    Option(
        "vcluster-kubeconfig",
        "kubeconfig of the host cluster for --vcluster-host=kubeconfig "
        "(default $KUBECONFIG, else ~/.kube/config)",
        None,
    ),
    Option(
        "vcluster-context",
        "context of that kubeconfig (default its current-context)",
        None,
    ),
    Option("vcluster-values", "YAML file of chart values applied to every vcluster", None),
    Option(
        "vcluster-ttl",
        "seconds after which `pytest-vcluster reap` and the in-cluster janitor may delete a "
        "vcluster's host namespace (a run killed before its teardown; default 21600)",
        "21600",
    ),
    Option(
        "vcluster-artifacts",
        "directory for each failed test's vcluster objects, logs, events and syncer log "
        "(one folder per test; default: none written)",
        None,
    ),
    Option(
        "vcluster-artifacts-when", "write artifacts for: failed|always (default failed)", "failed"
    ),
    Option(
        "vcluster-access",
        "how this process reaches a kind or kubeconfig host's vclusters: auto (a node port of "
        "a kind node this machine routes to, else a port-forward) | port-forward "
        "(default auto)",
        "auto",
    ),
    Option(
        "vcluster-reuse-host",
        "keep the host running after the run and reuse it next time: true|false",
        "false",
        const="true",
    ),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("vcluster", "virtual Kubernetes clusters (pytest-vcluster)")
    for opt in OPTIONS:
        if opt.const is not None:
            group.addoption(
                opt.flag, dest=opt.dest, default=None, nargs="?", const=opt.const, help=opt.help
            )
        else:
            group.addoption(opt.flag, dest=opt.dest, default=None, help=opt.help)
        parser.addini(opt.ini, help=opt.help, default=None)


def raw_value(config: pytest.Config, opt: Option) -> tuple[str | None, str]:
    """(value, where it came from) for ``opt``: CLI, then ini, then the default."""
    cli = config.getoption(opt.dest)
    if cli is not None:
        return str(cli), opt.flag
    ini = config.getini(opt.ini)
    if ini not in (None, "", []):
        return str(ini), f"ini {opt.ini}"
    return opt.default, f"default of {opt.flag}"


def _parse(
    config: pytest.Config, name: str, parse: Callable[[str | None], Any], accepted: str
) -> Any:
    opt = next(o for o in OPTIONS if o.name == name)
    value, origin = raw_value(config, opt)
    try:
        return parse(value)
    except (ValueError, VClusterError) as exc:
        raise pytest.UsageError(
            f"{origin}: invalid value {value!r}: {exc}; accepted: {accepted}"
        ) from None


def _host(value: str | None) -> str:
    if value not in HOSTS:
        raise ValueError("unknown host")
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[str | None], str]:
    def parse(value: str | None) -> str:
        if value not in choices:
            raise ValueError("unknown value")
        return value

    return parse


def _bool(value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("not a boolean")


def _values_file(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(value).expanduser().read_text())
    except OSError as exc:
        raise ValueError(f"cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"holds a {type(data).__name__}, not a mapping")
    from .values import schema_errors

    errors = schema_errors(data)
    if errors:
        raise ValueError(f"fails the chart's values.schema.json: {'; '.join(errors[:5])}")
    return data


def _kind_name(value: str | None) -> str:
    import re

    if not value or not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?", value):
        raise ValueError("not a valid cluster name")
    return value


def _count(value: str | None) -> int:
    n = int(value or "")
    if not 0 <= n <= 8:
        raise ValueError("out of range")
    return n


def _cpu(value: str | None) -> str:
    import re

    text = (value or "").strip()
    if text == IDLE:
        return text
    match = re.fullmatch(r"([0-9]+)m|([0-9]+(\.[0-9]{1,3})?)", text)
    if not match or (float(match[1]) / 1000 if match[1] else float(match[2])) < 0.01:
        raise ValueError("not a CPU quantity of at least 10m")
    return text


def _timeout(value: str | None) -> float:
    seconds = float(value or "")
    if not seconds > 0:
        raise ValueError("must be positive")
    return seconds


def settings_from(config: pytest.Config) -> Settings:
    from .versions import supported_kubernetes

    cache = _parse(
        config,
        "vcluster-cache-dir",
        lambda v: Path(v).expanduser() if v else default_cache_dir(),
        "a directory path",
    )
    versions = _parse(
        config,
        "vcluster-k8s-version",
        parse_k8s_versions,
        f"one or more (comma-separated) of {supported_kubernetes()}",
    )
    settings = Settings(
        host=_parse(config, "vcluster-host", _host, " | ".join(HOSTS)),
        k8s=max(versions),
        k8s_matrix=versions if len(versions) > 1 else (),
        missing_version=_parse(
            config,
            "vcluster-missing-version",
            _choice(MISSING_VERSION),
            " | ".join(MISSING_VERSION),
        ),
        cache_dir=cache,
        timeout=_parse(config, "vcluster-timeout", _timeout, "a positive number of seconds"),
        keep=_parse(config, "vcluster-keep", _choice(KEEP), " | ".join(KEEP)),
        values=_parse(
            config,
            "vcluster-values",
            _values_file,
            "a YAML file holding a mapping of chart values (see chart/values.yaml)",
        ),
        reuse_host=_parse(config, "vcluster-reuse-host", _bool, "true | false"),
        prewarm=_parse(
            config,
            "vcluster-prewarm",
            lambda v: None if v is None else _count(v),
            "a whole number from 0 to 8",
        ),
        prewarm_cpu=_parse(
            config, "vcluster-prewarm-cpu", _cpu, "idle, or a CPU quantity: 250m, 0.5, 1"
        ),
        kind_cluster=_parse(config, "vcluster-kind-cluster", _kind_name, "a DNS label"),
        kind_image=_parse(config, "vcluster-kind-image", lambda v: v or None, "an image"),
        kind_workers=_parse(config, "vcluster-kind-workers", _count, "a whole number 0 to 8"),
        kubeconfig=_parse(
            config, "vcluster-kubeconfig", lambda v: v or default_kubeconfig(), "a file path"
        ),
        context=_parse(config, "vcluster-context", lambda v: v or None, "a context name"),
        ttl=_parse(config, "vcluster-ttl", _timeout, "a positive number of seconds"),
        artifacts=_parse(
            config,
            "vcluster-artifacts",
            lambda v: Path(v).expanduser().resolve() if v else None,
            "a directory path",
        ),
        artifacts_when=_parse(
            config, "vcluster-artifacts-when", _choice(ARTIFACTS_WHEN), " | ".join(ARTIFACTS_WHEN)
        ),
        access=_parse(config, "vcluster-access", _choice(ACCESS), " | ".join(ACCESS)),
    )
    _check_host(config, settings)
    _check_values_apply(config, settings)
    return settings


def _check_host(config: pytest.Config, s: Settings) -> None:
    """What the host type says of the settings (a missing kubeconfig file or context); the
    host itself (reachable, permissions) is checked when a test first needs it."""
    from .hosts.registry import host_type

    ht = host_type(s.host)
    try:
        ht.check_settings(s)
    except VClusterError as exc:
        opts = [next(o for o in OPTIONS if o.name == name) for name in ht.options]
        origins = [raw_value(config, opts[0])[1]] + [
            o.flag for o in opts[1:] if config.getoption(o.dest) or config.getini(o.ini)
        ]
        raise pytest.UsageError(f"--vcluster-host={s.host}: {' / '.join(origins)}: {exc}") from None


def _check_values_apply(config: pytest.Config, s: Settings) -> None:
    """Chart values on a host that runs no chart would be ignored: a usage error instead."""
    from .hosts.registry import host_type

    if s.values and not host_type(s.host).provides.chart_values:
        opt = next(o for o in OPTIONS if o.name == "vcluster-values")
        _, origin = raw_value(config, opt)
        raise pytest.UsageError(
            f"{origin}: chart values do not apply on --vcluster-host={s.host}: its vclusters "
            "run as processes, not as the Helm chart; use a kind or kubeconfig host for them "
            "(the marker's sync= switches resources on any host)"
        )
