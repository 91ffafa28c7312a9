"""The control-plane image's etcd template, made from the real etcd and kube-apiserver: a new API
server started on a copy finds its bootstrap RBAC in place and leaves it as it is (the point of
the template), and the entrypoint's ``--seed`` copies it into an empty data directory only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_vcluster.binaries import default_cache_dir
from pytest_vcluster.recipes import etcd_template
from pytest_vcluster.recipes.control_plane import ControlPlaneImage
from pytest_vcluster.versions import parse_k8s_version
from syncer.etcd import Etcd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    recipe = ControlPlaneImage(parse_k8s_version(None), default_cache_dir())
    bins = recipe.binaries()
    dest = tmp_path_factory.mktemp("template") / "etcd"
    count = etcd_template.make(dest, bins, print)
    assert count > 100  # ~140 roles and bindings, 2 PriorityClasses
    return dest, bins


def test_an_api_server_on_the_template_keeps_its_bootstrap_objects(
    made: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    template, bins = made
    data = tmp_path / "etcd"
    shutil.copytree(template, data)
    data.chmod(0o700)
    # The same start as make()'s (chart flags), on the copy: its keys and their revisions...
    from pytest_vcluster.procs import free_port

    client, peer, secure = free_port(), free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    procs = [
        etcd_template._spawn(
            etcd_template._etcd_args(bins["etcd"], data, client, peer), tmp_path / "etcd.log"
        )
    ]
    try:
        etcd_template._wait_etcd(url, procs, 60, tmp_path)
        before, _ = Etcd(url).get_prefix("/registry/")
        assert before
        assert all(etcd_template.kept(kv.key, kv.value) for kv in before)
        apiserver = etcd_template._apiserver_args(bins["kube-apiserver"], url, secure, tmp_path)
        procs.append(etcd_template._spawn(apiserver, tmp_path / "kube-apiserver.log"))
        etcd_template._wait_ready(f"https://127.0.0.1:{secure}/readyz", procs, 120, tmp_path)
        after = {kv.key: kv.mod_revision for kv in Etcd(url).get_prefix("/registry/")[0]}
        # ...are all there, none rewritten by the bootstrap hook (it only compared them).
        rewritten = [kv.key for kv in before if after.get(kv.key) != kv.mod_revision]
        assert rewritten == []
    finally:
        for p in procs:
            etcd_template._stop(p)


def test_the_entrypoint_seeds_an_empty_data_directory_only(
    made: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    template, _ = made
    entrypoint = ControlPlaneImage(parse_k8s_version(None), default_cache_dir()).entrypoint()
    dest = tmp_path / "data" / "etcd"
    dest.parent.mkdir()
    run = [str(entrypoint), f"--seed={template}:{dest}", "--step=done", "true"]
    first = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert f"seed: {dest} copied from {template}" in first.stderr, first.stderr
    copied = sorted(p.relative_to(dest) for p in dest.rglob("*"))
    assert copied == sorted(p.relative_to(template) for p in template.rglob("*"))
    assert dest.stat().st_mode & 0o777 == 0o700
    db = dest / "member" / "snap" / "db"
    assert db.stat().st_mode & 0o777 == 0o600
    assert db.read_bytes() == (template / "member" / "snap" / "db").read_bytes()
    db.write_bytes(b"written by etcd since")  # a restarted container: its data stays
    again = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert f"seed: {dest} exists: kept" in again.stderr, again.stderr
    assert db.read_bytes() == b"written by etcd since"
    missing = subprocess.run(
        [str(entrypoint), f"--seed={tmp_path / 'none'}:{tmp_path / 'new'}", "--step=done", "true"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "starts empty" in missing.stderr
    assert not (tmp_path / "new").exists()
    bad = subprocess.run(
        [str(entrypoint), "--seed=nocolon", "true"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert "--seed: want SRC:DST" in bad.stderr
