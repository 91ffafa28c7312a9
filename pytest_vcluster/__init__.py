"""pytest-vcluster: a virtual Kubernetes cluster for every test, suite or CI job."""

from .errors import VClusterError

__all__ = ["VClusterError"]
__version__ = "0.1.0"
