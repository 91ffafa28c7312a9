"""Fixtures of the Helm chart tests: the helm binary and the plugin's PKI for ``helm template``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_vcluster.binaries import BinaryResolver
from pytest_vcluster.errors import VClusterError
from pytest_vcluster.hosts.incluster import PKI_VALUES
from pytest_vcluster.hosts.incluster.chart import write_pki
from pytest_vcluster.naming import default_cache_dir
from pytest_vcluster.versions import parse_k8s_version


@pytest.fixture(scope="module")
def helm() -> Path:
    resolver = BinaryResolver(
        parse_k8s_version(None),
        default_cache_dir(),
        download_base=os.environ.get("PYTEST_VCLUSTER_DOWNLOAD_URL", "off"),
        progress=lambda msg: None,
    )
    try:
        return resolver.resolve("helm").path
    except VClusterError as exc:  # pragma: no cover - CI fills the cache first
        pytest.skip(f"no helm binary: {exc}")


@pytest.fixture(scope="module")
def pki_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    tmp = tmp_path_factory.mktemp("chart")
    write_pki(tmp / "pki", "vc1", "vc1", "vcluster-vc1", "10.96.0.0/12")
    return [f"--set-file=pki.{k}={tmp / 'pki' / f}" for k, f in PKI_VALUES.items()]
