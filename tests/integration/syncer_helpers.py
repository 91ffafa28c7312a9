"""Helpers of the syncer tests (test_syncer*.py): wait for a condition, running pods."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.rest import ApiException

T = TypeVar("T")


def wait_for(fn: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except ApiException as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def running(core: client.CoreV1Api, ns: str, selector: str, n: int) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(ns, label_selector=selector).items
    ok = len(pods) == n and all(p.status.phase == "Running" and p.status.pod_ip for p in pods)
    return pods if ok else []


def bare_pod(name: str) -> client.V1Pod:
    """A pod of one container (kwok runs it without an image)."""
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
    )
