"""Jobs on the local host: kwok completes Job pods, the host's own and a vcluster's (whose host
copies are owned by the vcluster and carry the Job's label under the syncer's prefix), so a Job
created in a local vcluster ends Complete as it does on the host."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client, config

from pytest_vcluster.hosts.local import LocalHost
from pytest_vcluster.hosts.local_vcluster import LocalVCluster


def _job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
                }
            },
        },
    }


def _complete(batch: client.BatchV1Api, name: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = batch.read_namespaced_job(name, "default").to_dict()
        conditions = {c["type"]: c["status"] for c in job["status"].get("conditions") or []}
        if conditions.get("Complete") == "True":
            return dict(job["status"])
        assert time.monotonic() < deadline, job["status"]
        time.sleep(0.2)


def test_a_job_completes_on_the_host_and_in_a_vcluster(host: LocalHost, vc: LocalVCluster) -> None:
    host_batch = client.BatchV1Api(host.api_client())
    host_batch.create_namespaced_job("default", _job("on-host"))
    assert _complete(host_batch, "on-host")["succeeded"] == 2
    virtual = client.BatchV1Api(config.new_client_from_config(str(vc.kubeconfig_path)))
    deadline = time.monotonic() + 30  # pods are refused until `default` has its ServiceAccount
    while True:
        try:
            virtual.create_namespaced_job("default", _job("in-vcluster"))
            break
        except client.ApiException as exc:
            if exc.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert _complete(virtual, "in-vcluster")["succeeded"] == 2
