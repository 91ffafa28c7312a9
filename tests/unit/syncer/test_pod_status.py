"""The status a virtual pod gets from its host copy, and the terminal one it ends with."""

from __future__ import annotations

from typing import Any

from syncer.translate.pod_status import UNKNOWN_TERMINATION, terminal_status, virtual_status

NOW = "2026-12-04T23:00:00Z"


def cond(kind: str, status: str = "True") -> dict[str, Any]:
    return {"type": kind, "status": status, "lastTransitionTime": "2026-12-04T22:00:00Z"}


def running(name: str = "c") -> dict[str, Any]:
    state = {"running": {"startedAt": "2026-12-04T22:00:00Z"}}
    return {"name": name, "ready": True, "started": True, "state": state}


def exited(code: int, name: str = "c") -> dict[str, Any]:
    return {"name": name, "ready": False, "state": {"terminated": {"exitCode": code}}}


def test_host_status_keeps_the_vclusters_own_conditions() -> None:
    # An eviction in the vcluster set DisruptionTarget; a controller set a readiness gate.
    virtual = {
        "phase": "Running",
        "conditions": [cond("Ready"), cond("DisruptionTarget"), cond("example.com/gate")],
    }
    host = {"phase": "Running", "conditions": [cond("Ready", "False"), cond("PodScheduled")]}
    got = virtual_status(host, virtual)
    assert [(c["type"], c["status"]) for c in got["conditions"]] == [
        ("Ready", "False"),  # the kubelet's own: the host's value wins
        ("PodScheduled", "True"),
        ("DisruptionTarget", "True"),
        ("example.com/gate", "True"),
    ]
    assert got["phase"] == "Running"


def test_host_status_drops_kubelet_conditions_the_host_no_longer_has() -> None:
    virtual = {"conditions": [cond("PodResizeInProgress"), cond("Ready")]}
    host = {"conditions": [cond("Ready")]}
    assert virtual_status(host, virtual) == host  # the resize finished on the host


def test_host_status_without_own_conditions_is_the_hosts() -> None:
    host = {"phase": "Pending"}
    assert virtual_status(host, None) == host
    assert virtual_status(host, {"conditions": [cond("Ready")]}) == host


def test_a_running_pod_ends_failed_with_unknown_containers() -> None:
    virtual = {
        "phase": "Running",
        "conditions": [cond("Ready"), cond("ContainersReady"), cond("DisruptionTarget")],
        "containerStatuses": [running("a"), exited(0, "b")],
    }
    got = terminal_status(virtual, NOW)
    assert got is not None
    assert got["phase"] == "Failed"
    a, b = got["containerStatuses"]
    assert a["state"] == {"terminated": UNKNOWN_TERMINATION}
    assert a["lastState"] == running()["state"]
    assert (a["ready"], a["started"]) == (False, False)
    assert b == exited(0, "b")  # an ended container keeps its own record
    by_type = {c["type"]: c for c in got["conditions"]}
    assert by_type["Ready"] == {
        "type": "Ready",
        "status": "False",
        "reason": "PodCompleted",
        "lastTransitionTime": NOW,
    }
    assert (by_type["ContainersReady"]["status"], by_type["ContainersReady"]["reason"]) == (
        "False",
        "ContainersNotReady",
    )
    assert by_type["DisruptionTarget"] == cond("DisruptionTarget")  # what a Job's policy reads
    assert virtual["phase"] == "Running"  # the input is not changed


def test_a_pod_whose_containers_all_exited_zero_succeeds() -> None:
    got = terminal_status({"phase": "Running", "containerStatuses": [exited(0)]}, NOW)
    assert got is not None
    assert got["phase"] == "Succeeded"


def test_a_pod_that_never_ran_ends_failed() -> None:
    got = terminal_status({"phase": "Pending"}, NOW)
    assert got == {"phase": "Failed", "conditions": []}
    assert terminal_status(None, NOW) == {"phase": "Failed", "conditions": []}


def test_running_init_containers_end_too() -> None:
    got = terminal_status({"phase": "Running", "initContainerStatuses": [running("sidecar")]}, NOW)
    assert got is not None
    assert got["initContainerStatuses"][0]["state"] == {"terminated": UNKNOWN_TERMINATION}


def test_an_ended_pod_keeps_its_status() -> None:
    assert terminal_status({"phase": "Succeeded"}, NOW) is None
    assert terminal_status({"phase": "Failed"}, NOW) is None
