"""A virtual cluster inside a real host cluster (kind, any kubeconfig): a Helm release of
``chart/``, one module per job:

- ``chart``: the chart, its images, the values and certificates the plugin hands helm;
- ``hostapi``: the host's API through the ``kubernetes`` client (no kubectl processes);
- ``podwatch``: the vcluster pod, kept current by a watch;
- ``forward``: the port-forward this process reaches the vcluster through;
- ``readiness``: the staged readiness, one ``poll`` per stage;
- ``host``: what such a host gives its vclusters (``ClusterHost``);
- ``runtime``: ``InClusterVCluster``, start to teardown.
"""

from __future__ import annotations

from ...errors import InClusterError
from ...values import deep_merge
from .chart import CHART_DIR, PKI_VALUES, chart_dir, split_image
from .host import ClusterHost
from .runtime import InClusterVCluster, new_release

__all__ = [
    "CHART_DIR",
    "PKI_VALUES",
    "ClusterHost",
    "InClusterError",
    "InClusterVCluster",
    "chart_dir",
    "deep_merge",
    "new_release",
    "split_image",
]
