"""Kubeconfig flattening (pure) and the ``--vcluster-host=kubeconfig`` options (pytester)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from pytest_vcluster.hosts.kubeconfig import KubeconfigError, flatten, split_paths


def _config(name: str, server: str, **user: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": dict(user)}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def test_file_references_are_inlined_relative_to_their_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "c.crt").write_bytes(b"CERT")
    (tmp_path / "certs" / "c.key").write_bytes(b"KEY")
    (tmp_path / "tok").write_text("secret-token\n")
    cfg = _config(
        "a",
        "https://127.0.0.1:6443",
        **{"client-certificate": "certs/c.crt", "client-key": "certs/c.key", "tokenFile": "tok"},
    )
    cfg["clusters"][0]["cluster"]["certificate-authority"] = str(tmp_path / "certs" / "c.crt")
    (tmp_path / "kc").write_text(yaml.safe_dump(cfg))

    flat, name = flatten([tmp_path / "kc"], None)
    assert name == "a"
    user = flat["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == b"CERT"
    assert base64.b64decode(user["client-key-data"]) == b"KEY"
    assert user["token"] == "secret-token"
    assert "client-certificate" not in user
    assert "tokenFile" not in user
    cluster = flat["clusters"][0]["cluster"]
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CERT"
    assert flat["current-context"] == "a"
    assert len(flat["contexts"]) == 1


def test_several_files_merge_first_wins_and_context_is_chosen(tmp_path: Path) -> None:
    first = _config("a", "https://127.0.0.1:1")
    second = _config("a", "https://127.0.0.1:2")
    second["clusters"].append({"name": "b", "cluster": {"server": "https://127.0.0.1:3"}})
    second["users"].append({"name": "b", "user": {"token": "t"}})
    second["contexts"].append(
        {"name": "b", "context": {"cluster": "b", "user": "b", "namespace": "ns"}}
    )
    (tmp_path / "1").write_text(yaml.safe_dump(first))
    (tmp_path / "2").write_text(yaml.safe_dump(second))
    paths = split_paths(f"{tmp_path / '1'}:{tmp_path / 'missing'}:{tmp_path / '2'}")

    flat, name = flatten(paths, None)
    assert (name, flat["clusters"][0]["cluster"]["server"]) == ("a", "https://127.0.0.1:1")
    flat, name = flatten(paths, "b")
    assert flat["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:3"
    assert flat["contexts"][0]["context"]["namespace"] == "ns"
    assert flat["users"][0]["user"] == {"token": "t"}


@pytest.mark.parametrize(
    ("content", "context", "message"),
    [
        (None, None, "no kubeconfig at"),
        ("[1, 2]", None, "holds a list"),
        (": :", None, "is not YAML"),
        ("apiVersion: v1\nkind: Config\n", None, "no current-context"),
        (
            yaml.safe_dump(_config("a", "https://x")),
            "nope",
            "no context 'nope' in it (contexts: a)",
        ),
    ],
)
def test_unusable_kubeconfigs_are_named(
    tmp_path: Path, content: str | None, context: str | None, message: str
) -> None:
    path = tmp_path / "kc"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KubeconfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        flatten([path], context)


def test_missing_file_or_context_is_one_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(vcluster):\n    pass\n")
    result = pytester.runpytest("--vcluster-host=kubeconfig", "--vcluster-kubeconfig=/nonexistent")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--vcluster-host=kubeconfig: --vcluster-kubeconfig: '/nonexistent': no kubeconfig at*"]
    )

    kc = pytester.path / "kc"
    kc.write_text(yaml.safe_dump(_config("a", "https://127.0.0.1:1")))
    pytester.makeini(
        f"[pytest]\nvcluster_host = kubeconfig\nvcluster_kubeconfig = {kc}\n"
        "vcluster_context = other\n"
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*ini vcluster_kubeconfig / --vcluster-context*no context 'other'*"]
    )


def test_kubeconfig_host_header_and_default_from_env(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    kc = pytester.path / "kc"
    kc.write_text(yaml.safe_dump(_config("a", "https://127.0.0.1:1")))
    monkeypatch.setenv("KUBECONFIG", str(kc))
    pytester.makepyfile("def test_x(vcluster_settings):\n    assert vcluster_settings.kubeconfig\n")
    result = pytester.runpytest("--vcluster-host=kubeconfig")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"vcluster: host=kubeconfig ({kc}, context current)*"])


def test_service_range_discovery_order() -> None:
    """ServiceCIDR objects, else the 1.1.1.1 refusal (hosts before 1.33 name the range in
    it), else the default; a probe that was accepted is deleted and is an error."""
    from pytest_vcluster.errors import VClusterError
    from pytest_vcluster.servicecidr import discover

    listing = {"items": [{"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.0.0.0/16"]}}]}
    refusal = "... The range of valid IPs is 10.43.0.0/16"
    probes: list[dict[str, object]] = []
    deleted: list[str] = []

    def probe(status: int, body: object) -> object:
        def create(obj: dict[str, object]) -> tuple[int, object]:
            probes.append(obj)
            return status, body

        return create

    assert discover(lambda: listing, probe(422, {}), deleted.append, "ns") == "10.0.0.0/16"
    assert probes == []
    assert discover(lambda: None, probe(422, {"message": refusal}), deleted.append, "ns") == (
        "10.43.0.0/16"
    )
    assert probes[0]["metadata"] == {
        "generateName": "pytest-vcluster-cidr-probe-",
        "namespace": "ns",
    }
    assert discover(lambda: {"items": []}, probe(422, "no range"), print, "ns", "10.96.0.0/12") == (
        "10.96.0.0/12"
    )
    with pytest.raises(VClusterError, match="could not read the service CIDR"):
        discover(lambda: None, probe(422, "no range"), print, "ns")
    with pytest.raises(VClusterError, match=r"accepted ClusterIP 1\.1\.1\.1"):
        discover(lambda: None, probe(201, {"metadata": {"name": "p1"}}), deleted.append, "ns")
    assert deleted == ["p1"]
