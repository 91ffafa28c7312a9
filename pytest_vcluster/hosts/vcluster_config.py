"""What a vcluster's control plane and syncer are given, as the local runtime runs them; the
chart's templates say the same (tests/unit/test_chart_render.py checks that they match)."""

from __future__ import annotations

# vcluster runs its controller-manager without the controllers that need real nodes/clouds.
VCLUSTER_CONTROLLERS = ",".join(
    [
        "*",
        "-node-lifecycle-controller",
        "-node-ipam-controller",
        "-persistentvolume-binder-controller",
        "-persistentvolume-attach-detach-controller",
        "-persistentvolume-expander-controller",
        "-ttl-controller",
    ]
)
# Start-up is CPU-bound (2 cores, several vclusters at once). Measured on this machine, CPU
# seconds until /readyz (median of 5): 3.80 as is, 2.90 with both settings below.
# - API Priority and Fairness guards a shared cluster against noisy tenants; a test vcluster has
#   one tenant, and its config producer writes a dozen objects at every start.
# - The Go collector runs less often while the start-up allocates (GOGC=400); the memory limit
#   brings it back once the heap nears 400 MiB, so idle vclusters stay small.
VCLUSTER_APISERVER_ARGS = ("--enable-priority-and-fairness=false",)
VCLUSTER_APISERVER_ENV = {"GOGC": "400", "GOMEMLIMIT": "400MiB"}
SYNCER_RULES = [
    {
        "apiGroups": [""],
        "resources": [
            "pods",
            "pods/status",
            "services",
            "endpoints",
            "configmaps",
            "secrets",
            "persistentvolumeclaims",
            "events",
        ],
        "verbs": ["*"],
    },
    {  # the fake nodes' kubelet API, forwarded to the host pods (syncer/kubelet)
        "apiGroups": [""],
        "resources": ["pods/log", "pods/exec", "pods/attach", "pods/portforward"],
        "verbs": ["get", "create"],
    },
    {  # kubectl debug: a virtual pod's ephemeral containers reach its host pod; resize
        "apiGroups": [""],
        "resources": ["pods/ephemeralcontainers", "pods/resize"],
        "verbs": ["get", "patch", "update"],
    },
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["*"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["*"]},
]
