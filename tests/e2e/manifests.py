"""Manifests the e2e suites share."""

from __future__ import annotations

from typing import Any


def pod(name: str, image: str, script: str = "exec sleep 3600", **spec: Any) -> dict[str, Any]:
    """A one-container pod running ``sh -c script`` from a locally loaded image; ``container=``
    adds container fields, other keywords pod spec fields."""
    container = {
        "name": "c",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
        **spec.pop("container", {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [container], **spec},
    }
