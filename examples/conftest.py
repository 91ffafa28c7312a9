"""Shared by the examples: the image their containers run.

On the default local host pods are simulated (kwok), so any image name works. On a kind or
kubeconfig host they are real containers: busybox from Docker Hub by default; an offline
machine points ``PYTEST_VCLUSTER_EXAMPLE_IMAGE`` at a busybox it already has (CI uses the one
preloaded in pytest-vcluster's offline kind node image).
"""

import os

import pytest


@pytest.fixture(scope="session")
def image() -> str:
    return os.environ.get("PYTEST_VCLUSTER_EXAMPLE_IMAGE", "busybox:1.36")
