"""The artifacts' pure parts (pytest_vcluster.artifacts); the folder itself is tested on a real
local host in tests/integration/test_plugin.py."""

from __future__ import annotations

from pytest_vcluster.artifacts import event_lines, folder_for, name_map


def test_folder_names_are_readable_unique_and_safe() -> None:
    a = folder_for("tests/test_x.py::test_a[k8s-1.36/x y]")
    b = folder_for("tests/test_x.py::test_a[k8s-1.36/x_y]")
    assert a.startswith("tests_test_x.py__test_a_k8s-1.36_x_y-")
    assert a != b  # same slug, different ids
    assert "/" not in a
    assert " " not in a
    assert len(folder_for("t::" + "x" * 500)) <= 130


def test_events_of_both_sides_merge_oldest_first() -> None:
    virtual = [
        {"lastTimestamp": "2026-12-04T10:00:02Z", "type": "Normal", "reason": "Started",
         "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web"},
         "message": "Started\\ncontainer"},
    ]  # fmt: skip
    host = [
        {"eventTime": "2026-12-04T10:00:01.000000Z", "type": "Normal", "reason": "Scheduled",
         "regarding": {"kind": "Pod", "namespace": "vcluster-a", "name": "web-x-default-x-a"},
         "note": "assigned"},
    ]  # fmt: skip
    lines = event_lines(virtual, host)
    assert [ln.split()[1] for ln in lines] == ["host", "virtual"]
    assert lines[1].endswith("Pod/default/web Started: Started\\ncontainer")


def test_name_map_lists_only_what_the_syncer_made() -> None:
    made = {
        "kind": "Pod",
        "metadata": {
            "name": "web-x-default-x-a",
            "annotations": {
                "vc.pytest-vcluster.io/object-namespace": "default",
                "vc.pytest-vcluster.io/object-name": "web",
            },
        },
    }
    own = {"kind": "Pod", "metadata": {"name": "a-0"}}
    assert name_map([own, made]) == ["Pod web-x-default-x-a <- default/web"]
