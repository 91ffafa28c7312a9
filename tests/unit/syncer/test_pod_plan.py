"""The pod reconcile's plan, as a table: (virtual pod, host copy) → what happens."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.constants import OBJECT_UID
from syncer.translate.pod_plan import (
    MANAGED_ANNOTATIONS,
    managed_annotations,
    metadata_patch,
    new_ephemeral_containers,
    plan,
    resize_patch,
    spec_patch,
)

NOW = "2026-12-01T00:00:00Z"


def vpod(
    uid: str = "u1",
    *,
    deleting: bool = False,
    node: str = "",
    ran: bool = False,
    phase: str = "Pending",
    grace: int | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "default", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = NOW
        meta["deletionGracePeriodSeconds"] = grace
    status: dict[str, Any] = {"phase": phase}
    if ran:
        status |= {"startTime": NOW, "hostIP": "172.18.0.2"}
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": status}


def hpod(uid: str = "u1", *, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web-x-default-x-vc", "annotations": {OBJECT_UID: uid}}
    if deleting:
        meta["deletionTimestamp"] = NOW
    return {"metadata": meta, "spec": {"nodeName": "kind-control-plane"}}


NODES = ["kind-control-plane"]


@pytest.mark.parametrize(
    ("virtual", "host", "action", "grace"),
    [
        (None, None, "none", None),
        (None, hpod(), "delete-host", None),
        (vpod(), None, "create", None),
        (vpod(), hpod(), "update", None),
        # The host copy is going: its last (terminal) status comes back.
        (vpod(), hpod(deleting=True), "status", None),
        (vpod(deleting=True), hpod(deleting=True), "status", None),
        (vpod("u2", deleting=True), hpod("u1", deleting=True), "none", None),  # not its own
        (vpod("u2"), hpod("u1"), "replace-host", 0),  # an earlier pod of the same name
        (vpod(deleting=True, grace=5), hpod(), "delete-host", 5),  # graceful, as asked
        (vpod(deleting=True), None, "finalize-virtual", None),  # no kubelet will
        # It ran on the host (bound by the syncer, status copied) and its host copy vanished.
        (vpod(node="kind-control-plane", ran=True, phase="Running"), None, "delete-virtual", None),
        (vpod(node="kind-control-plane", ran=True, phase="Succeeded"), None, "none", None),
        # Created with spec.nodeName: runs on that node when the vcluster has it...
        (vpod(node="kind-control-plane"), None, "create", None),
        # ...and is refused when it does not.
        (vpod(node="elsewhere"), None, "deny-node", None),
    ],
)
def test_plan(
    virtual: dict[str, Any] | None,
    host: dict[str, Any] | None,
    action: str,
    grace: int | None,
) -> None:
    step = plan(virtual, host, nodes=NODES)
    assert (step.action, step.grace) == (action, grace)


def test_deny_node_names_the_nodes() -> None:
    assert plan(vpod(node="x"), None, nodes=["a", "b"]).reason == (
        "spec.nodeName 'x' is not a node of this vcluster (its nodes: a, b)"
    )
    assert "(its nodes: none yet)" in plan(vpod(node="x"), None, nodes=[]).reason


def _meta(labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {"labels": labels, "annotations": annotations}


P = "vc.pytest-vcluster.io/"


def test_metadata_patch_follows_label_and_annotation_edits() -> None:
    desired = _meta({P + "app": "web", P + "tier": "front"}, {"note": "new", OBJECT_UID: "u1"})
    desired["annotations"][MANAGED_ANNOTATIONS] = managed_annotations(desired["annotations"])
    actual = _meta(
        {P + "app": "old", P + "gone": "x", "host.example/added": "keep"},
        {"note": "old", "removed": "x", "host-added": "keep", OBJECT_UID: "u1",
         MANAGED_ANNOTATIONS: "note,removed"},
    )  # fmt: skip
    assert metadata_patch(desired, actual) == {
        "metadata": {
            "labels": {P + "app": "web", P + "tier": "front", P + "gone": None},
            "annotations": {"note": "new", "removed": None, MANAGED_ANNOTATIONS: "note"},
        }
    }


def test_metadata_patch_is_none_when_in_step() -> None:
    desired = _meta({P + "app": "web"}, {"note": "n", MANAGED_ANNOTATIONS: "note"})
    actual = _meta({P + "app": "web", "other": "x"}, {**desired["annotations"], "host": "x"})
    assert metadata_patch(desired, actual) is None


def test_spec_patch_images_deadline_tolerations() -> None:
    toleration = {"key": "k", "operator": "Exists", "effect": "NoSchedule"}
    default = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}
    desired = {
        "containers": [{"name": "a", "image": "busybox:2"}, {"name": "b", "image": "x"}],
        "initContainers": [{"name": "i", "image": "init:1"}],
        "activeDeadlineSeconds": 30,
        "tolerations": [default, toleration],
    }
    actual = {
        "containers": [{"name": "a", "image": "busybox:1"}, {"name": "b", "image": "x"}],
        "initContainers": [{"name": "i", "image": "init:1"}],
        "tolerations": [default],
    }
    assert spec_patch(desired, actual) == {
        "spec": {
            "containers": [{"name": "a", "image": "busybox:2"}],
            "activeDeadlineSeconds": 30,
            "tolerations": [default, toleration],
        }
    }
    assert spec_patch(actual, actual) is None


def test_new_ephemeral_containers() -> None:
    desired = {"ephemeralContainers": [{"name": "debugger-1"}, {"name": "debugger-2"}]}
    actual = {"ephemeralContainers": [{"name": "debugger-1"}]}
    assert new_ephemeral_containers(desired, actual) == [{"name": "debugger-2"}]
    assert new_ephemeral_containers(actual, actual) == []


def test_resize_patch_carries_changed_container_resources_only() -> None:
    small = {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m"}}
    big = {"requests": {"cpu": "300m"}, "limits": {"cpu": "400m"}}
    actual = {"containers": [{"name": "a", "resources": small}, {"name": "b"}]}
    desired = {"containers": [{"name": "a", "resources": big}, {"name": "b"}]}
    assert resize_patch(desired, actual) == {
        "spec": {"containers": [{"name": "a", "resources": big}]}
    }
    assert resize_patch(actual, actual) is None
    # A container the host copy lacks is not a resize (containers cannot be added).
    assert resize_patch({"containers": [{"name": "z", "resources": big}]}, actual) is None
