"""Deleted vclusters' space comes back: after the API servers' compaction, a deletion that
finds enough free pages defragments the host's etcd (a real etcd here)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pytest_vcluster.hosts import etcd as host_etcd
from pytest_vcluster.hosts.controlplane import Etcd as EtcdProcess
from pytest_vcluster.procs import ProcessGroup
from syncer.etcd import Etcd


def test_defragment_only_when_worth_it(local_binaries: dict[str, Path], tmp_path: Path) -> None:
    group = ProcessGroup()
    try:
        (tmp_path / "etcd").mkdir()
        proc = EtcdProcess(local_binaries["etcd"], tmp_path / "etcd", group, tmp_path / "data")
        proc.start()
        proc.wait_ready(time.monotonic() + 30)
        db = Etcd(proc.url, timeout=30)
        value = os.urandom(64 << 10)  # incompressible: the pages are really used
        for i in range(400):  # 25 MiB, one key per request (etcd caps a request at 1.5 MiB)
            db.write(puts=[(f"/vcluster/a/{i}".encode(), value)])
        revision = db.write(puts=[(b"/vcluster/b/keep", b"x")])[b"/vcluster/b/keep"]
        assert host_etcd.delete_prefix(proc.url, "/vcluster/a/") == 400
        size, used = db.status()
        # Before a compaction the deleted keys' revisions still hold their pages.
        assert not host_etcd.defragment_if_worth(proc.url, min_free=16 << 20)
        db.post("/v3/kv/compaction", {"revision": revision + 1, "physical": True})
        _, used_after = db.status()
        assert used_after < used - (16 << 20)
        assert host_etcd.defragment_if_worth(proc.url, min_free=16 << 20)
        size_after, _ = db.status()
        assert size_after < size - (16 << 20)
        assert not host_etcd.defragment_if_worth(proc.url, min_free=16 << 20)  # nothing left
        assert [kv.key for kv in db.get_prefix("/vcluster/")[0]] == [b"/vcluster/b/keep"]
    finally:
        group.stop()
