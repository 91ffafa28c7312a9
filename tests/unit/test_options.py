"""Options and their ini twins, through a real pytest run (pytester)."""

from __future__ import annotations

import pytest

SHOW = """
def test_show(vcluster_settings):
    s = vcluster_settings
    print("SETTINGS", s.host, s.k8s, s.timeout, s.cache_dir)
"""


def _settings_line(result: pytest.RunResult) -> str:
    line = next(ln for ln in result.outlines if "SETTINGS " in ln)
    return line[line.index("SETTINGS ") :]


def test_defaults(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SHOW)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert _settings_line(result).split()[1:4] == ["local", "1.37.2", "120.0"]
    result.stdout.fnmatch_lines(
        [
            "vcluster: host=local kubernetes=1.37.2 keep=never prewarm=1 reuse-host=false cache=*",
            "vcluster binaries: etcd 3.6.16*, kube-apiserver 1.37.2*, kwok 0.8.0*",
        ]
    )


def test_ini_values_are_used(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nvcluster_k8s_version = 1.35\nvcluster_timeout = 30\n"
        "vcluster_cache_dir = /tmp/vc-cache\n"
    )
    pytester.makepyfile(SHOW)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    assert _settings_line(result).split()[1:] == ["local", "1.35.4", "30.0", "/tmp/vc-cache"]


def test_cli_wins_over_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nvcluster_k8s_version = 1.35\n")
    pytester.makepyfile(SHOW)
    result = pytester.runpytest("-s", "--vcluster-k8s-version=1.36.1")
    result.assert_outcomes(passed=1)
    assert _settings_line(result).split()[2] == "1.36.1"


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        (
            ["--vcluster-k8s-version=1.20"],
            "",
            "*--vcluster-k8s-version: invalid value '1.20'*supported: 1.34, 1.35, 1.36, 1.37*",
        ),
        (
            [],
            "vcluster_k8s_version = banana",
            "*ini vcluster_k8s_version: invalid value 'banana'*",
        ),
        (
            ["--vcluster-host=mars"],
            "",
            "*--vcluster-host: invalid value 'mars'*accepted: local | kind*",
        ),
        (
            ["--vcluster-timeout=-3"],
            "",
            "*--vcluster-timeout: invalid value '-3'*positive number of seconds*",
        ),
        (["--vcluster-timeout=soon"], "", "*--vcluster-timeout: invalid value 'soon'*"),
        (
            ["--vcluster-keep=sometimes"],
            "",
            "*--vcluster-keep: invalid value 'sometimes'*accepted: never | on-failure | always*",
        ),
        ([], "vcluster_keep = forever", "*ini vcluster_keep: invalid value 'forever'*"),
        (
            ["--vcluster-ttl=0"],
            "",
            "*--vcluster-ttl: invalid value '0'*positive number of seconds*",
        ),
        (
            ["--vcluster-artifacts-when=sometimes"],
            "",
            "*--vcluster-artifacts-when: invalid value 'sometimes'*accepted: failed | always*",
        ),
        (["--vcluster-reuse-host=maybe"], "", "*--vcluster-reuse-host: invalid value 'maybe'*"),
        (["--vcluster-prewarm=9"], "", "*--vcluster-prewarm: invalid value '9'*0 to 8*"),
        ([], "vcluster_prewarm = some", "*ini vcluster_prewarm: invalid value 'some'*"),
        (
            ["--vcluster-prewarm-cpu=lots"],
            "",
            "*--vcluster-prewarm-cpu: invalid value 'lots'*accepted: idle, or a CPU quantity*",
        ),
        (["--vcluster-prewarm-cpu=5m"], "", "*--vcluster-prewarm-cpu: invalid value '5m'*10m*"),
        (
            ["--vcluster-values=/nonexistent.yaml"],
            "",
            "*--vcluster-values: invalid value '/nonexistent.yaml': cannot read it*",
        ),
    ],
)
def test_bad_values_are_one_usage_error(
    pytester: pytest.Pytester, args: list[str], ini: str, expected: str
) -> None:
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(SHOW)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {expected}"])
    assert "Traceback" not in result.stderr.str()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("a: [1, 2\n", "*not valid YAML*"),
        ("- just\n- a list\n", "*holds a list, not a mapping*"),
        ("bogus: 1\n", "*fails the chart's values.schema.json: (top level): Additional*'bogus'*"),
        (
            "controlPlane:\n  image:\n    tag: 5\n",
            "*values.schema.json: controlPlane.image.tag: 5 is not of type 'string'*",
        ),
    ],
)
def test_values_file_must_be_a_yaml_mapping(
    pytester: pytest.Pytester, content: str, expected: str
) -> None:
    values = pytester.path / "values.yaml"
    values.write_text(content)
    pytester.makepyfile(SHOW)
    result = pytester.runpytest(f"--vcluster-values={values}", "--vcluster-host=kind")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --vcluster-values: invalid value*{expected}"])


def test_chart_values_on_the_local_host_are_a_usage_error(pytester: pytest.Pytester) -> None:
    """Before: the local runtime ignored --vcluster-values and the marker's values=."""
    values = pytester.path / "values.yaml"
    values.write_text("syncer:\n  workers: 2\n")
    pytester.makepyfile(SHOW)
    result = pytester.runpytest(f"--vcluster-values={values}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --vcluster-values: chart values do not apply on --vcluster-host=local*"]
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vcluster(values={"syncer": {"workers": 2}})
        def test_x(vcluster):
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: test_*.py::test_x: @pytest.mark.vcluster(values=...): the local host runs*"]
    )
    # The same values on a chart host are fine (checked at collection: no host is started).
    result = pytester.runpytest("--vcluster-host=kind", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK


def test_vcluster_fixture_arguments_are_checked_at_declaration(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_vcluster.fixtures import vcluster_fixture

        shared = vcluster_fixture(scope="module", colour="red")
        """
    )
    pytester.makepyfile("def test_x(shared):\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: conftest.py:3: vcluster_fixture: got an unexpected keyword argument 'colour'; "
            "accepted arguments: k8s_version, values, sync, name*"
        ]
    )
    pytester.makeconftest(
        """
        from pytest_vcluster.fixtures import vcluster_fixture

        shared = vcluster_fixture(values={"coredns": {"replicas": 2}})
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: conftest.py:3: vcluster_fixture(values=...): the local host runs vclusters*"]
    )


def test_keep_values_and_bare_reuse_flag(pytester: pytest.Pytester) -> None:
    values = pytester.path / "values.yaml"
    values.write_text("sync:\n  ingresses: {enabled: true}\n")
    pytester.makepyfile(
        """
        def test_show(vcluster_settings):
            s = vcluster_settings
            print("SETTINGS", s.keep, s.reuse_host, s.values)
        """
    )
    result = pytester.runpytest(
        "-s",
        "--vcluster-keep=on-failure",
        "--vcluster-reuse-host",
        f"--vcluster-values={values}",
        "--vcluster-host=kind",  # chart values are a chart host's
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*SETTINGS on-failure True {'sync': {'ingresses': {'enabled': True}}}"]
    )


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("vcluster(k8s_version='1.12')", "*(k8s_version='1.12'): *not supported*1.34, 1.35*"),
        ("vcluster(values=[1])", "*(values=?1?): must be a dict of chart values, not list"),
        ("vcluster(sync=['pods', 'gadgets'])", "*unknown resource 'gadgets'; accepted: pods*"),
        ("vcluster(sync=['pods', '-pods'])", "*pods turned both on and off*"),
        ("vcluster(sync='pods')", "*(sync='pods'): must be a list of resource names"),
        ("vcluster(name='Bad_Name')", "*(name='Bad_Name'): vcluster name 'Bad_Name' is invalid*"),
        (
            "vcluster(colour='red')",
            "*unexpected keyword argument 'colour'*"
            "accepted arguments: k8s_version, values, sync, name",
        ),
        ("vcluster('1.35')", "*takes keyword arguments only*"),
        ("vcluster(k8s_version=[])", "(k8s_version=[]): an empty list; name one or more"),
        ("vcluster(k8s_version=['1.36', '1.12'])", "(k8s_version='1.12'): *not supported*"),
        ("vcluster(k8s_version=['1.36', '1.36.1'])", "*: a minor version twice"),
        (
            "vcluster(values={'sync': {'nope': 1}})",
            "(values=...): fails the chart's values.schema.json: sync: Additional*'nope'*",
        ),
    ],
)
def test_malformed_markers_are_usage_errors(
    pytester: pytest.Pytester, marker: str, expected: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_x(vcluster):
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: test_*.py::test_x: @pytest.mark.vcluster{expected}"])


def test_marker_is_registered_with_its_signature(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.vcluster(k8s_version: 'str | list[[]str] | None' = None, values: *, "
            "sync: *, name: *"
        ]
    )


SHOW_ALL = """
def test_show(vcluster_settings):
    s = vcluster_settings
    print("ALL", s.kind_cluster, s.kind_image, s.kind_workers, s.reuse_host, s.values, s.prewarm,
          s.access, s.prewarm_cpu)
"""


@pytest.mark.parametrize("where", ["cli", "ini"])
def test_kind_values_and_reuse_options_via_cli_and_ini(
    pytester: pytest.Pytester, where: str
) -> None:
    values = pytester.path / "v.yaml"
    values.write_text("coredns:\n  replicas: 2\n")
    opts = {
        "vcluster-host": "kind",
        "vcluster-kind-cluster": "ci-host",
        "vcluster-kind-image": "example/node:v1",
        "vcluster-kind-workers": "2",
        "vcluster-reuse-host": "true",
        "vcluster-values": str(values),
        "vcluster-prewarm": "2",
        "vcluster-access": "port-forward",
        "vcluster-prewarm-cpu": "0.5",
    }
    if where == "ini":
        lines = "".join(f"{k.replace('-', '_')} = {v}\n" for k, v in opts.items())
        pytester.makeini(f"[pytest]\n{lines}")
        args: list[str] = []
    else:
        args = [f"--{k}={v}" for k, v in opts.items()]
    pytester.makepyfile(SHOW_ALL)
    result = pytester.runpytest("-s", *args)
    result.assert_outcomes(passed=1)
    line = next(ln for ln in result.outlines if "ALL " in ln)
    assert line[line.index("ALL ") :] == (
        "ALL ci-host example/node:v1 2 True {'coredns': {'replicas': 2}} 2 port-forward 0.5"
    )


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("--vcluster-kind-cluster=Bad_Name", "*--vcluster-kind-cluster: invalid value 'Bad_Name'*"),
        ("--vcluster-kind-workers=9", "*--vcluster-kind-workers: invalid value '9'*0 to 8*"),
        (
            "--vcluster-reuse-host=maybe",
            "*--vcluster-reuse-host: invalid value 'maybe'*true | false*",
        ),
        (
            "--vcluster-k8s-version=1.36,",
            "*--vcluster-k8s-version: invalid value '1.36,'*an empty entry*comma-separated*",
        ),
        (
            "--vcluster-k8s-version=1.36,1.36.1",
            "*--vcluster-k8s-version: invalid value '1.36,1.36.1'*a minor version twice*",
        ),
        (
            "--vcluster-missing-version=maybe",
            "*--vcluster-missing-version: invalid value 'maybe'*error | skip*",
        ),
        (
            "--vcluster-host=docker",
            "*--vcluster-host: invalid value 'docker'*local | kind | kubeconfig*",
        ),
        (
            "--vcluster-access=nodeport",
            "*--vcluster-access: invalid value 'nodeport'*auto | port-forward*",
        ),
    ],
)
def test_more_bad_values(pytester: pytest.Pytester, arg: str, expected: str) -> None:
    pytester.makepyfile(SHOW)
    result = pytester.runpytest(arg)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {expected}"])


MATRIX_TESTS = """
import pytest

@pytest.mark.vcluster(k8s_version=["1.35", "1.37"])
def test_marked(vcluster):
    pass

def test_shared(vcluster_session):
    pass

def test_plain():
    pass

def test_cell(vcluster_k8s_version):
    print("CELL", vcluster_k8s_version)
"""


def test_a_matrix_marker_parametrizes_its_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MATRIX_TESTS)
    result = pytester.runpytest("--collect-only", "-q")
    ids = sorted(ln for ln in result.outlines if "::" in ln)
    assert ids == [
        "test_a_matrix_marker_parametrizes_its_test.py::test_cell",
        "test_a_matrix_marker_parametrizes_its_test.py::test_marked[k8s-1.35]",
        "test_a_matrix_marker_parametrizes_its_test.py::test_marked[k8s-1.37]",
        "test_a_matrix_marker_parametrizes_its_test.py::test_plain",
        "test_a_matrix_marker_parametrizes_its_test.py::test_shared",
    ]


def test_a_matrix_option_parametrizes_every_vcluster_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MATRIX_TESTS)
    result = pytester.runpytest("--collect-only", "-q", "--vcluster-k8s-version=1.36,1.37.2")
    ids = sorted(ln.split("::")[1] for ln in result.outlines if "::" in ln)
    assert ids == [
        "test_cell[k8s-1.36]",
        "test_cell[k8s-1.37.2]",
        "test_marked[k8s-1.35]",  # the marker's list wins for its test
        "test_marked[k8s-1.37]",
        "test_plain",  # no vcluster: not in the matrix
        "test_shared[k8s-1.36]",
        "test_shared[k8s-1.37.2]",
    ]


def test_the_host_of_a_matrix_runs_the_newest_version(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SHOW)
    result = pytester.runpytest("-s", "--vcluster-k8s-version=1.37,1.35")
    result.assert_outcomes(passed=1)
    assert _settings_line(result).split()[1:3] == ["local", "1.37.2"]


def test_a_cell_knows_its_version(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MATRIX_TESTS)
    result = pytester.runpytest("-s", "-k", "test_cell", "--vcluster-k8s-version=1.36,1.37")
    result.assert_outcomes(passed=2)
    cells = sorted(ln[ln.index("CELL") :] for ln in result.outlines if "CELL" in ln)
    assert cells == ["CELL 1.36", "CELL 1.37"]


def test_declared_vcluster_fixtures_follow_the_matrix(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "from pytest_vcluster.fixtures import vcluster_fixture\n"
        "shared = vcluster_fixture(scope='module')\n"
    )
    pytester.makepyfile("def test_uses(shared):\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q", "--vcluster-k8s-version=1.35,1.37")
    ids = sorted(ln.split("::")[1] for ln in result.outlines if "::" in ln)
    assert ids == ["test_uses[k8s-1.35]", "test_uses[k8s-1.37]"]
