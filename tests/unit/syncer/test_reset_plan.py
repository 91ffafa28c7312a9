"""The reset's plan, as a table: (snapshot, keys now) → deletes and puts."""

from __future__ import annotations

from syncer.reset.plan import SNAPSHOT_DIR, Entry, decode, encode, plan, stored_under, touched


def e(rev: int, value: bytes = b"v") -> Entry:
    return Entry(value, rev)


SNAP = {
    "namespaces/default": e(1, b"ns"),
    "serviceaccounts/default/default": e(2, b"sa"),
    "ranges/serviceips": e(3, b"bitmap-at-snapshot"),
    "leases/kube-system/kube-controller-manager": e(4),
    "pods/kube-system/coredns-1": e(5),
    "validatingwebhookconfigurations/pytest-vcluster-reset": e(6),
}


def test_nothing_changed_nothing_written() -> None:
    assert not plan(SNAP, dict(SNAP))


def test_new_keys_go_changed_and_deleted_ones_come_back() -> None:
    now = dict(SNAP)
    now["namespaces/t0"] = e(10)
    now["configmaps/t0/a"] = e(11)
    now["serviceaccounts/default/default"] = e(12, b"sa-labelled")  # the test changed it
    now["ranges/serviceips"] = e(13, b"bitmap-with-new-ip")  # a Service IP was allocated
    del now["namespaces/default"]  # (a reset must bring back even what the API forbids)
    step = plan(SNAP, now)
    assert step.deletes == ["configmaps/t0/a", "namespaces/t0"]
    assert step.puts == [
        ("namespaces/default", b"ns"),
        ("ranges/serviceips", b"bitmap-at-snapshot"),
        ("serviceaccounts/default/default", b"sa"),
    ]


def test_live_state_is_never_wound_back_but_new_live_keys_go() -> None:
    now = dict(SNAP)
    now["leases/kube-system/kube-controller-manager"] = e(20)  # renewed
    now["pods/kube-system/coredns-1"] = e(21)  # its status moved on
    now["pods/default/web"] = e(22)  # the test's pod
    now["events/default/web.1"] = e(23)
    del now["leases/kube-system/kube-controller-manager"]
    step = plan(SNAP, now)
    assert step.deletes == ["events/default/web.1", "pods/default/web"]
    assert step.puts == []


def test_the_request_object_is_left_alone() -> None:
    now = dict(SNAP)
    now["validatingwebhookconfigurations/pytest-vcluster-reset"] = e(30)  # the answer
    assert not plan(SNAP, now)
    assert not plan({}, {"validatingwebhookconfigurations/pytest-vcluster-reset": e(1)})


def test_where_resources_are_stored() -> None:
    assert stored_under("/api/v1/pods") == "pods/"
    assert stored_under("/api/v1/services") == "services/specs/"
    assert stored_under("/api/v1/endpoints") == "services/endpoints/"
    assert stored_under("/api/v1/nodes") == "minions/"
    assert stored_under("/apis/networking.k8s.io/v1/ingresses") == "ingress/"
    assert stored_under("/apis/discovery.k8s.io/v1/endpointslices") == "endpointslices/"


def test_touched_informers() -> None:
    prefixes = {"services": "services/specs/", "endpoints": "services/endpoints/", "pods": "pods/"}
    assert touched(prefixes, ["services/specs/default/web", "configmaps/x/y"]) == {"services"}
    assert touched(prefixes, []) == set()


def test_the_stored_snapshot_is_not_the_vclusters() -> None:
    now = dict(SNAP)
    now[SNAPSHOT_DIR + "namespaces/default"] = e(40)
    assert not plan(SNAP, now)


def test_entries_round_trip() -> None:
    entry = Entry(b"\x00k8s\x00proto", 123456789)
    assert decode(encode(entry)) == entry
