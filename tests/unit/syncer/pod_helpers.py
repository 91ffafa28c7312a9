"""The pod translation tests' virtual pod (as admitted) and context (test_syncer_pod*.py)."""

from __future__ import annotations

import copy
from typing import Any

from syncer.translate.pods import SA_MOUNT_PATH, PodContext

NS = "team-a"
CTX = PodContext(
    vcluster="vc",
    host_namespace="host-ns",
    dns_ip="10.96.0.53",
    api_host="10.96.0.10",
    api_port=443,
    service_account_secret="sa-token-x-team-a-x-vc",
)
SA_VOLUME = {
    "name": "kube-api-access-abcde",
    "projected": {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
        ],
    },
}


def pod(name: str = "web-0", **spec: Any) -> dict[str, Any]:
    """A virtual pod as the virtual API server returns it after admission."""
    base: dict[str, Any] = {
        "containers": [
            {
                "name": "app",
                "image": "nginx:1",
                "volumeMounts": [{"name": SA_VOLUME["name"], "mountPath": SA_MOUNT_PATH}],
            }
        ],
        "volumes": [copy.deepcopy(SA_VOLUME)],
        "serviceAccountName": "default",
        "serviceAccount": "default",
        "dnsPolicy": "ClusterFirst",
        "priority": 0,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": "pod-uid", "labels": {"app": "web"}},
        "spec": base | spec,
        "status": {"phase": "Pending"},
    }


def container(**fields: Any) -> dict[str, Any]:
    return {"name": "c", "image": "busybox", **fields}
