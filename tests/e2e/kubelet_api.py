"""The vcluster of test_kubelet_api*_e2e.py: its name, its pods' scripts; waiting."""

from __future__ import annotations

import time
from typing import Any

NAME = "kapi"

WEB = (
    "mkdir -p /a /b && echo port-a > /a/index.html && echo port-b > /b/index.html && "
    "httpd -p 8080 -h /a && exec httpd -f -p 8081 -h /b"
)
SHELL = "echo started; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo after-open; exec sleep 3600"


def ready(port: int) -> dict[str, Any]:
    return {"tcpSocket": {"port": port}, "periodSeconds": 1}


def wait(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s")
