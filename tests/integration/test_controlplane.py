"""The control plane's recovery paths, with real processes."""

from __future__ import annotations

import time
from pathlib import Path

from pytest_vcluster.hosts.controlplane import ControlPlane, Etcd
from pytest_vcluster.procs import ProcessGroup


def test_controller_manager_that_gave_up_on_a_slow_apiserver_is_started_again(
    local_binaries: dict[str, Path], tmp_path: Path
) -> None:
    # What kube-controller-manager prints when the apiserver is not healthy within its fixed
    # wait (a loaded machine); the second start runs the real binary.
    marker = tmp_path / "gave-up-once"
    fake = tmp_path / "kube-controller-manager"
    fake.write_text(
        "#!/bin/sh\n"
        f"if [ ! -e {marker} ]; then touch {marker}\n"
        '  echo \'E1126 run.go:72] "command failed" err="failed to wait for apiserver being '
        "healthy: timed out waiting for the condition\"' >&2; exit 1\nfi\n"
        f'exec {local_binaries["kube-controller-manager"]} "$@"\n'
    )
    fake.chmod(0o755)
    group = ProcessGroup()
    try:
        (tmp_path / "etcd").mkdir()
        etcd = Etcd(local_binaries["etcd"], tmp_path / "etcd", group, tmp_path / "etcd-data")
        etcd.start()
        etcd.wait_ready(time.monotonic() + 30)
        (tmp_path / "cp").mkdir()
        cp = ControlPlane(
            "revive",
            tmp_path / "cp",
            {**local_binaries, "kube-controller-manager": fake},
            etcd.url,
            "/revive",
            group,
            scheduler=False,
        )
        cp.start()
        deadline = time.monotonic() + 90
        cp.wait_apiserver(deadline)
        # Only kube-controller-manager's ServiceAccount controller creates this one.
        cp.wait_default_service_account(deadline)
        assert marker.exists()
        assert cp._cm_restarts == 1
        assert cp.children["kube-controller-manager"].alive()
    finally:
        group.stop(timeout=0)
