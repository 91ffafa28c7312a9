"""The plugin end to end: real pytest runs (pytester, subprocesses) on the real local host."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_vcluster.binaries import default_cache_dir
from pytest_vcluster.procs import pid_alive

pytestmark = pytest.mark.integration
REAL_CACHE = default_cache_dir()  # before pytester points HOME elsewhere


def _procs_under(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmd and "pytest" not in cmd.split(" ")[0]:
            found.append(int(entry.name))
    return found


def _wait_no_procs(text: str, timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    left = _procs_under(text)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _procs_under(text)
    return left


@pytest.fixture
def cache(pytester: pytest.Pytester) -> Path:
    """Share the real binary cache, but keep kept-records and host records per test."""
    real = REAL_CACHE
    mine = pytester.path / "cache"
    (mine / "bin").parent.mkdir(parents=True, exist_ok=True)
    (mine / "bin").symlink_to(real / "bin")
    return mine


RECORD = """
import json, os
from kubernetes import client

def record(vc, tag):
    core = client.CoreV1Api(vc.api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=tag)))
    seen = sorted(n.metadata.name for n in core.list_namespace().items)
    with open(os.environ["RECORD_FILE"], "a") as fh:
        fh.write(json.dumps({"tag": tag, "name": vc.name, "supervisor": vc.host.supervisor_pid,
                             "pid": os.getpid(), "seen": seen, "host_ns": vc.host_namespace,
                             "workdir": str(vc.kubeconfig_path.parent)}) + "\\n")
"""


def test_xdist_shares_one_host_and_isolates_vclusters(
    pytester: pytest.Pytester, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_file = pytester.path / "records.jsonl"
    monkeypatch.setenv("RECORD_FILE", str(record_file))
    pytester.makeconftest(RECORD)
    pytester.makepyfile(
        "\n".join(
            f"def test_{i}(vcluster):\n"
            f"    from conftest import record\n"
            f"    record(vcluster, 'ns-{i}')\n"
            for i in range(4)
        )
    )
    result = pytester.runpytest_subprocess("-n", "2", f"--vcluster-cache-dir={cache}")
    result.assert_outcomes(passed=4)
    records = [json.loads(line) for line in record_file.read_text().splitlines()]
    assert len({r["supervisor"] for r in records}) == 1  # one host for the run
    assert len({r["pid"] for r in records}) == 2  # two workers used it
    assert len({r["name"] for r in records}) == 4  # a fresh vcluster per test
    for r in records:  # each saw only its own namespace
        assert [s for s in r["seen"] if s.startswith("ns-")] == [r["tag"]]
    assert not pid_alive(records[0]["supervisor"]) or not _wait_no_procs(
        str(records[0]["supervisor"]), 10
    )
    assert _wait_no_procs(str(pytester.path)) == []
    assert _wait_no_procs(Path(records[0]["workdir"]).parent.parent.name) == []


def test_failure_report_has_diagnostics_and_keep_on_failure_keeps_it(
    pytester: pytest.Pytester, cache: Path
) -> None:
    pytester.makepyfile(
        """
        from kubernetes import client

        def test_fails(vcluster):
            core = client.CoreV1Api(vcluster.api_client)
            core.create_namespaced_pod("default", client.V1Pod(
                metadata=client.V1ObjectMeta(name="looked-at"),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")])))
            vcluster.wait_for("Pod", "looked-at", "Running")
            assert False, "on purpose"

        def test_passes(vcluster):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        f"--vcluster-cache-dir={cache}", "--vcluster-keep=on-failure", "-rA"
    )
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    for section in ("syncer log (tail)", "virtual pods", "host pods", "connect"):
        result.stdout.fnmatch_lines([f"*vcluster vc*: {section}*"])
    assert "looked-at" in out  # the pod table names the pod
    result.stdout.fnmatch_lines(["*kept vclusters*", "vc*: KUBECONFIG=* kubectl get pods -A"])
    kept = list((cache / "kept").glob("*.json"))
    assert len(kept) == 1  # only the failed test's cluster
    record = json.loads(kept[0].read_text())
    assert any(pid_alive(int(p), s) for p, s in record["pids"].items())
    kubeconfig = Path(record["kubeconfig"])
    assert kubeconfig.exists()
    # The kept cluster still answers; then reap removes it and its host.
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    assert core.read_namespaced_pod("looked-at", "default").status.phase == "Running"
    reaped = subprocess.run(
        [sys.executable, "-m", "pytest_vcluster", "reap", f"--cache-dir={cache}", "--all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"removed vcluster {record['name']}" in reaped
    assert "removed host" in reaped
    for p, s in record["pids"].items():
        deadline = time.monotonic() + 10
        while pid_alive(int(p), s) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(int(p), s)
    assert not list((cache / "kept").glob("*.json"))
    assert not list((cache / "hosts" / "running").glob("*.json"))


def test_ctrl_c_during_create_leaves_nothing(pytester: pytest.Pytester, cache: Path) -> None:
    pytester.makepyfile("def test_slow(vcluster):\n    pass\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-v",
            "-s",
            "-p",
            "no:cacheprovider",
            f"--vcluster-cache-dir={cache}",
            f"--basetemp={pytester.path / 'bt'}",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A run started in the background of a non-interactive shell ignores SIGINT, and so
        # would this child: give it the terminal's default, as a user's Ctrl-C meets it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "waiting for kube-apiserver /readyz" in line and "local-host" not in line:
            break  # the vcluster's control plane is starting
    proc.send_signal(signal.SIGINT)
    try:
        rest = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:  # never leave the run behind, even when this test fails
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, rest
    assert _wait_no_procs(str(pytester.path / "bt")) == []
    listing = subprocess.run(
        [sys.executable, "-m", "pytest_vcluster", "list", f"--cache-dir={cache}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert listing.strip() == "nothing running"


def test_session_fixture_and_conftest_factory(pytester: pytest.Pytester, cache: Path) -> None:
    pytester.makeconftest(
        """
        from pytest_vcluster.fixtures import vcluster_fixture

        shared = vcluster_fixture(scope="module", name="from-conftest")
        """
    )
    pytester.makepyfile(
        """
        def test_a(shared, vcluster_session):
            assert shared.name == "from-conftest"
            assert vcluster_session.name != shared.name

        def test_b(shared, vcluster_session):
            assert shared.name == "from-conftest"
        """
    )
    result = pytester.runpytest_subprocess(f"--vcluster-cache-dir={cache}")
    result.assert_outcomes(passed=2)


def test_factory_arguments_are_checked_like_the_markers(
    pytester: pytest.Pytester, cache: Path
) -> None:
    """Before: vcluster_factory(nonsense=1) made a vcluster, values= were dropped."""
    pytester.makepyfile(
        """
        import pytest
        from pytest_vcluster.errors import VClusterError

        def test_nonsense(vcluster_factory):
            with pytest.raises(VClusterError, match="unexpected keyword argument 'nonsense'"):
                vcluster_factory(nonsense=1)

        def test_schema(vcluster_factory):
            with pytest.raises(VClusterError, match="values.schema.json.*'nosuchkey'"):
                vcluster_factory(values={"nosuchkey": 1})

        def test_values_the_local_host_cannot_honour(vcluster_factory):
            with pytest.raises(VClusterError, match="the local host runs vclusters as processes"):
                vcluster_factory(values={"syncer": {"workers": 2}})

        def test_the_rest_as_the_marker(vcluster_factory):
            vc = vcluster_factory(name="made", sync=["-ingresses"])
            assert vc.name == "made"
            assert vc.spec.sync == ("-ingresses",)
        """
    )
    result = pytester.runpytest_subprocess(f"--vcluster-cache-dir={cache}", "--vcluster-prewarm=0")
    result.assert_outcomes(passed=4)


@pytest.mark.parametrize("prewarm", [1, 0])
def test_prewarmed_vcluster_is_handed_out_at_once(
    pytester: pytest.Pytester, cache: Path, prewarm: int
) -> None:
    durations = pytester.path / "setup.jsonl"
    pytester.makeconftest(
        f"""
        import json

        def pytest_runtest_logreport(report):
            if report.when == "setup":
                with open({str(durations)!r}, "a") as fh:
                    fh.write(json.dumps([report.nodeid, report.duration]) + "\\n")
        """
    )
    pytester.makepyfile(
        """
        import time

        def test_1(vcluster, vcluster_manager):
            # Let the next vcluster finish starting in the background (none with prewarm=0).
            deadline = time.monotonic() + 120
            while not all(p.started.done() for p in vcluster_manager._pool):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            time.sleep(2)  # without prewarm, this is all the head start test_2 gets

        def test_2(vcluster):
            assert vcluster.api_client is not None
        """
    )
    result = pytester.runpytest_subprocess(
        f"--vcluster-cache-dir={cache}", f"--vcluster-prewarm={prewarm}", "-v"
    )
    result.assert_outcomes(passed=2)
    setup = dict(json.loads(line) for line in durations.read_text().splitlines())
    second = setup["test_prewarmed_vcluster_is_handed_out_at_once.py::test_2"]
    if prewarm:
        assert second < 0.6, setup
        result.stdout.fnmatch_lines(["*prewarmed, ready*"])
    else:
        # A real start: kube-apiserver alone serves only after ~0.6 s (p50 ready 1.1 s idle).
        assert second > 0.9, setup


def test_marker_k8s_version_runs_an_older_control_plane(
    pytester: pytest.Pytester, cache: Path
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from kubernetes import client

        @pytest.mark.vcluster(k8s_version="1.36")
        def test_old(vcluster):
            assert client.VersionApi(vcluster.api_client).get_code().git_version == "v1.36.3"
            assert vcluster.k8s_version == "1.36"

        def test_default(vcluster):
            assert client.VersionApi(vcluster.api_client).get_code().git_version == "v1.37.2"
        """
    )
    result = pytester.runpytest_subprocess(f"--vcluster-cache-dir={cache}", "--vcluster-prewarm=0")
    result.assert_outcomes(passed=2)


def test_namespace_per_test_and_command_line_tools(pytester: pytest.Pytester, cache: Path) -> None:
    pytester.makepyfile(
        """
        import json
        import pytest
        from kubernetes import client
        from pytest_vcluster import VClusterError

        SEEN = []

        def test_a(vcluster_session, vcluster_namespace):
            SEEN.append(vcluster_namespace)
            out = vcluster_session.kubectl("get", "namespace", vcluster_namespace, "-o", "json")
            assert json.loads(out.stdout)["status"]["phase"] == "Active"
            vcluster_session.kubectl("create", "configmap", "c", "-n", vcluster_namespace)

        def test_b(vcluster_session, vcluster_namespace):
            SEEN.append(vcluster_namespace)
            assert SEEN[0] != SEEN[1]
            core = client.CoreV1Api(vcluster_session.api_client)
            cms = core.list_namespaced_config_map(vcluster_namespace).items
            assert "c" not in [c.metadata.name for c in cms]  # it is in test_a's namespace
            with pytest.raises(VClusterError, match=r"kubectl get pod nope .*exited 1: .*NotFound"):
                vcluster_session.kubectl("get", "pod", "nope", "-n", vcluster_namespace)
            version = vcluster_session.helm("version", "--template", "{{.Version}}").stdout
            assert version.startswith("v3.")

        def test_c(vcluster_session):
            core = client.CoreV1Api(vcluster_session.api_client)
            gone = {}
            for name in SEEN:
                try:
                    gone[name] = core.read_namespace(name).status.phase
                except client.ApiException as exc:
                    gone[name] = exc.status
            assert all(v in ("Terminating", 404) for v in gone.values()), gone
        """
    )
    result = pytester.runpytest_subprocess(
        f"--vcluster-cache-dir={cache}", "--vcluster-prewarm=0", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=3)


def test_version_matrix_runs_each_cell_on_its_version(
    pytester: pytest.Pytester, cache: Path
) -> None:
    """One marker, two Kubernetes versions: each cell's vclusters run its version, and the
    session's vcluster exists once per version."""
    pytester.makepyfile(
        """
        import pytest
        from kubernetes import client

        SESSIONS = {}

        def version(vc):
            return client.VersionApi(vc.api_client).get_code().git_version

        @pytest.mark.vcluster(k8s_version=["1.36", "1.37"])
        def test_fresh(vcluster, vcluster_k8s_version):
            assert version(vcluster) == {"1.36": "v1.36.3", "1.37": "v1.37.2"}[vcluster_k8s_version]

        @pytest.mark.vcluster(k8s_version=["1.36", "1.37"])
        def test_shared(vcluster_session, vcluster_k8s_version):
            SESSIONS.setdefault(vcluster_k8s_version, set()).add(id(vcluster_session))
            assert version(vcluster_session).startswith("v" + vcluster_k8s_version + ".")

        @pytest.mark.vcluster(k8s_version=["1.36", "1.37"])
        def test_shared_again(vcluster_session, vcluster_k8s_version):
            SESSIONS[vcluster_k8s_version].add(id(vcluster_session))
            assert len(SESSIONS[vcluster_k8s_version]) == 1  # one per version
            assert len(SESSIONS) >= 1
        """
    )
    result = pytester.runpytest_subprocess(
        f"--vcluster-cache-dir={cache}", "--vcluster-prewarm=0", "-p", "no:randomly", "-v"
    )
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*test_fresh[[]k8s-1.36[]] PASSED*"])


def test_clean_vcluster_per_test(pytester: pytest.Pytester, cache: Path) -> None:
    """vcluster_clean: one session vcluster, and each test starts from the state it was ready
    in, whatever the one before made (cluster-scoped objects too) or changed."""
    pytester.makepyfile(
        """
        from kubernetes import client

        def test_first(vcluster_clean):
            core = client.CoreV1Api(vcluster_clean.api_client)
            core.create_namespace({"metadata": {"name": "mine"}})
            core.create_namespaced_config_map("default", {"metadata": {"name": "left"}})
            core.patch_namespace("default", {"metadata": {"labels": {"dirty": "yes"}}})
            rbac = client.RbacAuthorizationV1Api(vcluster_clean.api_client)
            rbac.create_cluster_role({"metadata": {"name": "extra"}, "rules": []})

        def test_second(vcluster_clean, vcluster_session):
            assert vcluster_clean is vcluster_session
            core = client.CoreV1Api(vcluster_clean.api_client)
            assert "mine" not in [n.metadata.name for n in core.list_namespace().items]
            cms = [c.metadata.name for c in core.list_namespaced_config_map("default").items]
            assert cms == ["kube-root-ca.crt"]
            assert "dirty" not in (core.read_namespace("default").metadata.labels or {})
            rbac = client.RbacAuthorizationV1Api(vcluster_clean.api_client)
            assert "extra" not in [r.metadata.name for r in rbac.list_cluster_role().items]
            core.create_namespace({"metadata": {"name": "mine"}})  # the name is free again
        """
    )
    result = pytester.runpytest_subprocess(
        f"--vcluster-cache-dir={cache}", "--vcluster-prewarm=0", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=2)


def test_failed_test_leaves_an_artifacts_folder(pytester: pytest.Pytester, cache: Path) -> None:
    """``--vcluster-artifacts``: a folder per failed test a person can read (objects, events,
    the name map, the syncer log), its Secrets' values left out, named in the JUnit XML."""
    pytester.makepyfile(
        """
        from kubernetes import client

        def test_fails(vcluster):
            core = client.CoreV1Api(vcluster.api_client)
            core.create_namespaced_config_map("default", client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="settings"), data={"mode": "loud"}))
            core.create_namespaced_secret("default", client.V1Secret(
                metadata=client.V1ObjectMeta(name="creds"), string_data={"pw": "hunter2"}))
            core.create_namespaced_pod("default", client.V1Pod(
                metadata=client.V1ObjectMeta(name="looked-at"),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")])))
            vcluster.wait_for("Pod", "looked-at", "Running")
            assert False, "on purpose"

        def test_passes(vcluster):
            pass
        """
    )
    art, junit = pytester.path / "art", pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        f"--vcluster-cache-dir={cache}", f"--vcluster-artifacts={art}", f"--junitxml={junit}"
    )
    result.assert_outcomes(passed=1, failed=1)
    (folder,) = art.iterdir()  # the failed test's only
    assert folder.name.startswith("test_failed_test_leaves_an_artifacts_folder.py__test_fails-")
    (vc,) = folder.iterdir()
    files = {p.relative_to(vc).as_posix() for p in vc.rglob("*") if p.is_file()}
    assert {"events.txt", "name-map.txt", "host-pods.yaml", "timings.json"} <= files
    assert "objects/configmaps.v1.yaml" in files
    assert "mode: loud" in (vc / "objects/configmaps.v1.yaml").read_text()
    assert "pw: '<redacted" in (vc / "objects/secrets.v1.yaml").read_text()
    assert not [f for f in files if "hunter2" in (vc / f).read_text(errors="replace")]
    assert "Pod looked-at-x-default-x-" in (vc / "name-map.txt").read_text()
    assert "<- default/looked-at" in (vc / "name-map.txt").read_text()
    assert "syncer: health on" in (vc / "syncer-log.txt").read_text()  # whole, from its start
    # Logs of a simulated pod cannot be read: said, not hidden.
    assert "logs/default/looked-at/c" in (vc / "errors.txt").read_text()
    assert json.loads((vc / "timings.json").read_text())["ready_seconds"] > 0
    assert str(folder) in junit.read_text()  # <property name="vcluster_artifacts" ...>
    result.stdout.fnmatch_lines(["*vcluster artifacts*", f"*{folder}*"])


def test_ttl_sets_when_a_vclusters_namespace_may_be_reaped(
    pytester: pytest.Pytester, cache: Path
) -> None:
    """``--vcluster-ttl``: the expiry label the janitor and ``reap`` go by."""
    pytester.makepyfile(
        """
        import time
        from kubernetes import client

        def test_label(vcluster, host_client):
            ns = client.CoreV1Api(host_client).read_namespace(vcluster.host_namespace)
            expires = float(ns.metadata.labels["pytest-vcluster.io/expires"])
            assert 0 < expires - time.time() <= 120
        """
    )
    result = pytester.runpytest_subprocess(f"--vcluster-cache-dir={cache}", "--vcluster-ttl=120")
    result.assert_outcomes(passed=1)
