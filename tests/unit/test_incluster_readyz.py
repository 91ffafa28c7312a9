"""Reading a failed /readyz: ready but for the checks a seeded API server may leave out."""

from __future__ import annotations

from pytest_vcluster.hosts.etcd import BOOTSTRAP_HOOKS
from pytest_vcluster.hosts.incluster.readiness import ready_but_for

# The shape kube-apiserver answers a failed /readyz with (1.37, abridged).
HOOKS_PENDING = """[+]ping ok
[+]log ok
[+]etcd ok
[+]informer-sync ok
[+]poststarthook/start-service-ip-repair-controllers ok
[-]poststarthook/rbac/bootstrap-roles failed: reason withheld
[-]poststarthook/scheduling/bootstrap-system-priority-classes failed: reason withheld
[+]shutdown ok
readyz check failed
"""


def test_ready_but_for_the_seeded_hooks() -> None:
    assert ready_but_for(500, HOOKS_PENDING, BOOTSTRAP_HOOKS)
    assert not ready_but_for(500, HOOKS_PENDING, ())  # without a seed: not ready
    assert ready_but_for(200, "ok", ())


def test_any_other_failing_check_is_not_ready() -> None:
    informers = HOOKS_PENDING.replace("[+]informer-sync ok", "[-]informer-sync failed: x")
    assert not ready_but_for(500, informers, BOOTSTRAP_HOOKS)
    # A refused port (the pod proxy's 503) or a body that lists nothing is never ready.
    assert not ready_but_for(503, "connection refused", BOOTSTRAP_HOOKS)
    assert not ready_but_for(500, "Internal error", BOOTSTRAP_HOOKS)
    only_rbac = HOOKS_PENDING.replace(
        "[-]poststarthook/scheduling/bootstrap-system-priority-classes failed",
        "[+]poststarthook/scheduling/bootstrap-system-priority-classes ok",
    )
    assert ready_but_for(500, only_rbac, BOOTSTRAP_HOOKS)
