"""Host metadata and the bookkeeping that maps host objects back (syncer.translate.metadata)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from syncer.constants import (
    LABEL_PREFIX,
    MANAGED_BY_LABEL,
    NAMESPACE_LABEL,
    OBJECT_KIND,
    OBJECT_NAME,
    OBJECT_NAMESPACE,
    OBJECT_UID,
)
from syncer.translate.metadata import (
    LAST_APPLIED,
    host_metadata,
    is_managed_by,
    is_orphan,
    needs_update,
    virtual_ref,
)
from syncer.translate.names import host_name


def virtual(uid: str = "uid-1", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "team-a", "uid": uid, **meta},
        "data": {"k": "v"},
    }


FULL = virtual(
    labels={"app": "web", NAMESPACE_LABEL: "spoofed"},
    annotations={
        "note": "kept",
        LAST_APPLIED: "{}",
        OBJECT_UID: "spoofed",
        f"{LABEL_PREFIX}/other": "spoofed",
    },
    resourceVersion="42",
    creationTimestamp="2024-01-01T00:00:00Z",
    generation=3,
    finalizers=["x/y"],
    managedFields=[{"manager": "kubectl"}],
    ownerReferences=[{"kind": "Deployment", "name": "d", "uid": "o"}],
)


def test_host_metadata_is_fresh_and_translated() -> None:
    before = copy.deepcopy(FULL)
    meta = host_metadata(FULL, "ConfigMap", "host-ns", "vc")
    assert before == FULL
    assert meta == {
        "name": host_name("cfg", "team-a", "vc"),
        "namespace": "host-ns",
        "labels": {
            f"{LABEL_PREFIX}/app": "web",
            NAMESPACE_LABEL: "team-a",
            MANAGED_BY_LABEL: "vc",
        },
        "annotations": {
            "note": "kept",
            OBJECT_NAME: "cfg",
            OBJECT_NAMESPACE: "team-a",
            OBJECT_UID: "uid-1",
            OBJECT_KIND: "ConfigMap",
        },
    }


@pytest.mark.parametrize("meta", [{"name": "cfg"}, {"namespace": "ns"}, {}])
def test_host_metadata_needs_name_and_namespace(meta: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"metadata\.name and metadata\.namespace"):
        host_metadata({"metadata": meta}, "ConfigMap", "host-ns", "vc")


def host(meta: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": meta}


@pytest.mark.parametrize(
    ("host_obj", "expected"),
    [
        ({"metadata": host_metadata(FULL, "ConfigMap", "h", "vc")}, ("team-a", "cfg", "uid-1")),
        (host({"annotations": {OBJECT_NAME: "cfg", OBJECT_NAMESPACE: "a"}}), None),
        (host({"annotations": {OBJECT_NAME: "cfg", OBJECT_UID: "u"}}), None),
        (host({"annotations": {"other": "x"}}), None),
        (host({}), None),
        ({}, None),
    ],
)
def test_virtual_ref(host_obj: dict[str, Any], expected: tuple[str, str, str] | None) -> None:
    assert virtual_ref(host_obj) == expected


@pytest.mark.parametrize(
    ("labels", "managed"),
    [
        ({MANAGED_BY_LABEL: "vc"}, True),
        ({MANAGED_BY_LABEL: "other-vc"}, False),
        ({f"{LABEL_PREFIX}/managed_by": "vc"}, False),
        ({}, False),
        (None, False),
    ],
)
def test_is_managed_by(labels: dict[str, str] | None, managed: bool) -> None:
    assert is_managed_by(host({"labels": labels}), "vc") is managed


SYNCED = {"metadata": host_metadata(virtual("uid-1"), "ConfigMap", "h", "vc")}


@pytest.mark.parametrize(
    ("host_obj", "virtual_obj", "orphan"),
    [
        (SYNCED, virtual("uid-1"), False),
        (SYNCED, None, True),  # virtual twin deleted
        (SYNCED, virtual("uid-2"), True),  # deleted and recreated under the same name
        (host({"annotations": {}}), virtual("uid-1"), True),
        (host({"annotations": {OBJECT_UID: ""}}), virtual(""), False),
    ],
)
def test_is_orphan(
    host_obj: dict[str, Any], virtual_obj: dict[str, Any] | None, orphan: bool
) -> None:
    assert is_orphan(host_obj, virtual_obj) is orphan


def obj(data: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"metadata": {"name": "n", **meta}}
    if data is not None:
        out["data"] = data
    return out


OWNED = {f"{LABEL_PREFIX}/app": "web", MANAGED_BY_LABEL: "vc"}


@pytest.mark.parametrize(
    ("desired", "actual", "fields", "update"),
    [
        (obj({"a": "1"}, labels=OWNED), obj({"a": "1"}, labels=OWNED), ["data"], False),
        (obj({"a": "1"}), obj({"a": "2"}), ["data"], True),
        (obj({"a": "1"}), obj({"a": "1", "b": "2"}), ["data"], True),  # removed key
        (obj({"a": "1"}), obj(), ["data"], True),
        (obj({"a": "1"}), obj({"a": "2"}), ["spec"], False),  # field not compared
        # Host-side labels outside the prefix do not count, owned ones do.
        (obj(labels=OWNED), obj(labels=OWNED | {"team": "x"}), [], False),
        (obj(labels=OWNED), obj(labels=OWNED | {f"{LABEL_PREFIX}/old": "1"}), [], True),
        (obj(labels=OWNED), obj(labels={MANAGED_BY_LABEL: "vc"}), [], True),
        (obj(annotations={"a": "1"}), obj(annotations={"a": "1"}), [], False),
        (obj(annotations={"a": "1"}), obj(annotations={"a": "2"}), [], True),
        (obj(annotations={"a": "1"}), obj(annotations={}), [], True),
        (obj(annotations={}), obj(), [], False),
    ],
)
def test_needs_update(
    desired: dict[str, Any], actual: dict[str, Any], fields: list[str], update: bool
) -> None:
    assert needs_update(desired, actual, fields) is update
