"""Typed errors: every failure the user can act on has one class and one clear message."""

from __future__ import annotations


class VClusterError(Exception):
    """Base class of every error pytest-vcluster raises on purpose."""


class UnsupportedVersionError(VClusterError):
    """A requested tool version is not one pytest-vcluster knows how to obtain."""


class BinaryNotFoundError(VClusterError):
    """No way to obtain a binary worked; the message lists every attempt."""


class ChecksumMismatchError(VClusterError):
    """A download did not match its published sha256 and was discarded."""


class HostStartError(VClusterError):
    """A host (local control plane, kind, kubeconfig) could not be brought up."""


class ReadinessTimeoutError(HostStartError):
    """A staged readiness check did not pass in time; the message names the stage."""


class CleanupError(VClusterError):
    """Something of a vcluster could not be removed (the rest was); the message says what."""


class InClusterError(VClusterError):
    """The Helm release of a vcluster could not be installed, started or removed."""
