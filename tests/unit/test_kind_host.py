"""The kind host provider: command construction, config, version and readiness logic."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pytest_vcluster.hosts.kind import (
    KindHost,
    KindImageMissingError,
    cluster_config,
    create_args,
    delete_args,
    load_args,
    node_condition,
    pod_problem,
    version_matches,
)
from pytest_vcluster.versions import parse_k8s_version


def test_create_writes_only_the_given_kubeconfig(tmp_path: Path) -> None:
    args = create_args("/bin/kind", "c1", "img:1", tmp_path / "c.yaml", tmp_path / "kc")
    assert args[:5] == ["/bin/kind", "create", "cluster", "--name", "c1"]
    assert args[args.index("--image") + 1] == "img:1"
    assert args[args.index("--config") + 1] == str(tmp_path / "c.yaml")
    assert args[args.index("--kubeconfig") + 1] == str(tmp_path / "kc")
    assert "--wait" in args  # readiness is ours (staged, with reasons)


def test_delete_and_load_name_the_cluster(tmp_path: Path) -> None:
    assert delete_args("kind", "c1", tmp_path / "kc") == [
        "kind", "delete", "cluster", "--name", "c1", "--kubeconfig", str(tmp_path / "kc")
    ]  # fmt: skip
    assert load_args("kind", "c1", ["a:1", "b:2"]) == [
        "kind", "load", "docker-image", "--name", "c1", "a:1", "b:2"
    ]  # fmt: skip


def test_cluster_config_binds_the_api_to_loopback() -> None:
    cfg = cluster_config(workers=2)
    assert cfg["networking"]["apiServerAddress"] == "127.0.0.1"
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane", "worker", "worker"]
    assert "kubeadmConfigPatches" not in cfg  # ordinary (cgroup v2) hosts: untouched


def test_cluster_config_lets_kubelet_run_on_cgroup_v1() -> None:
    cfg = cluster_config(cgroup_v1=True)
    (patch,) = cfg["kubeadmConfigPatches"]
    doc = yaml.safe_load(patch)
    assert doc["kind"] == "KubeletConfiguration"
    assert doc["failCgroupV1"] is False


@pytest.mark.parametrize(
    ("found", "want", "ok"),
    [
        ("v1.37.2", "1.37", True),
        ("v1.37.0", "1.37", True),
        ("v1.37.2", "1.37.2", True),
        ("v1.37.1", "1.37.2", False),
        ("v1.36.3", "1.37", False),
        ("v1.37.2-rc.0+abc", "1.37", True),
        ("garbage", "1.37", False),
    ],
)
def test_version_matches(found: str, want: str, ok: bool) -> None:
    assert version_matches(found, parse_k8s_version(want)) is ok


def test_node_condition_reports_the_reason() -> None:
    node = {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "cni"}
            ]
        }
    }
    assert node_condition(node) == (False, "KubeletNotReady: cni")
    assert node_condition({})[0] is False


@pytest.mark.parametrize(
    ("waiting", "expect"),
    [
        ({"reason": "ImagePullBackOff", "message": "no registry"}, "ImagePullBackOff"),
        ({"reason": "CrashLoopBackOff"}, "CrashLoopBackOff"),
        ({"reason": "ContainerCreating"}, None),
    ],
)
def test_pod_problem_flags_only_what_will_not_fix_itself(
    waiting: dict[str, str], expect: str | None
) -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {"containerStatuses": [{"name": "c", "state": {"waiting": waiting}}]},
    }
    problem = pod_problem(pod)
    assert (problem is None) if expect is None else (expect in (problem or ""))


def test_pod_problem_flags_unschedulable() -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "conditions": [
                {"type": "PodScheduled", "reason": "Unschedulable", "message": "0/1 nodes"}
            ]
        },
    }
    assert "Unschedulable: 0/1 nodes" in (pod_problem(pod) or "")


def test_paths_live_in_the_cache(tmp_path: Path) -> None:
    host = KindHost(parse_k8s_version("1.37"), Path("kind"), Path("kubectl"), tmp_path, name="x")
    assert host.kubeconfig_path == tmp_path / "kind" / "x.kubeconfig"
    assert host.control_plane_container == "x-control-plane"
    assert Path.home() / ".kube" not in host.kubeconfig_path.parents


def test_missing_image_error_says_how_to_build(tmp_path: Path) -> None:
    host = KindHost(parse_k8s_version("1.37"), Path("kind"), Path("kubectl"), tmp_path)
    err = host._image_missing("pytest-vcluster/kind-node:v1.37.2-x", "is not in Docker")
    assert isinstance(err, KindImageMissingError)
    assert "images/kind-node/build.py --k8s-version 1.37" in str(err)


def test_leases_count_only_live_users(tmp_path: Path) -> None:
    """xdist workers and parallel runs share a cluster; a dead user's lease is ignored."""
    import subprocess

    host = KindHost(parse_k8s_version("1.37"), Path("kind"), Path("kubectl"), tmp_path, name="x")
    host.state_dir.mkdir(parents=True)
    host._take_lease()
    other = KindHost(parse_k8s_version("1.37"), Path("kind"), Path("kubectl"), tmp_path, name="x")
    other._take_lease()  # a second handle in the same process holds its own lease
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = host._leases / f"{gone.pid}-12345"
    stale.write_text("")
    assert host._lease is not None
    assert other._lease is not None
    assert sorted(host._live_leases()) == sorted([host._lease, other._lease])
    assert not stale.exists()  # reaped
    other._lease.unlink()
    assert host._live_leases() == [host._lease]


def test_stop_without_start_is_a_no_op(tmp_path: Path) -> None:
    host = KindHost(parse_k8s_version("1.37"), Path("kind"), Path("kubectl"), tmp_path)
    host.stop()  # nothing started, nothing to delete, no docker needed
