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
    result.stdout.fnmatch_lines(["vcluster: host=local kubernetes=1.37.2 cache=*"])


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
        (["--vcluster-host=mars"], "", "*--vcluster-host: invalid value 'mars'*accepted: local*"),
        (
            ["--vcluster-timeout=-3"],
            "",
            "*--vcluster-timeout: invalid value '-3'*positive number of seconds*",
        ),
        (["--vcluster-timeout=soon"], "", "*--vcluster-timeout: invalid value 'soon'*"),
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
