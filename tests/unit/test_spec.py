"""VClusterSpec: one check for every way a vcluster is asked for; and the kept record."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vcluster import kept
from pytest_vcluster.hosts.registry import NAMES, host_type
from pytest_vcluster.spec import SpecError, VClusterSpec, build_spec, check_supported
from pytest_vcluster.versions import parse_k8s_version


def test_a_spec_is_normalised_and_copied() -> None:
    values = {"coredns": {"replicas": 2}}
    spec = build_spec({"k8s_version": "1.36", "sync": ["-ingresses"], "values": values}, "w")
    values["coredns"]["replicas"] = 3  # the caller's dict changing later changes nothing
    assert spec == VClusterSpec(
        k8s_version=parse_k8s_version("1.36"),
        values={"coredns": {"replicas": 2}},
        sync=("-ingresses",),
    )
    assert spec.syncer_args() == ("--disable-sync-resources=ingresses",)
    assert not spec.is_default
    assert build_spec({}, "w").is_default
    assert build_spec({"sync": None, "values": None, "name": None}, "w").is_default


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"nonsense": 1}, "w: got an unexpected keyword argument 'nonsense'; accepted arguments: "),
        ({"values": {"nosuchkey": 1}}, "w(values=...): fails the chart's values.schema.json: "),
        ({"values": [1]}, "w(values=[1]): must be a dict of chart values, not list"),
        ({"sync": "pods"}, "w(sync='pods'): must be a list of resource names"),
        ({"sync": 3}, "w(sync=3): must be a list of resource names"),
        ({"sync": ["gadgets"]}, "w(sync=['gadgets']): unknown resource 'gadgets'"),
        ({"k8s_version": "1.2"}, "w(k8s_version='1.2'): "),
        ({"name": "Bad_Name"}, "w(name='Bad_Name'): vcluster name 'Bad_Name' is invalid"),
    ],
)
def test_wrong_arguments_are_one_error_naming_them(kw: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as err:
        build_spec(kw, "w")
    assert str(err.value).startswith(message)


def test_values_over_the_options_and_what_a_host_honours() -> None:
    spec = build_spec({"values": {"syncer": {"workers": 4}}}, "w")
    merged = spec.over({"syncer": {"workers": 2, "extraArgs": ["-v"]}, "labels": {"a": "b"}})
    assert merged.values == {"syncer": {"workers": 4, "extraArgs": ["-v"]}, "labels": {"a": "b"}}
    assert VClusterSpec().over({}) == VClusterSpec()
    check_supported(spec, "kind", host_type("kind").provides, "w")
    check_supported(VClusterSpec(sync=("pods",)), "local", host_type("local").provides, "w")
    with pytest.raises(SpecError, match=r"^w\(values=\.\.\.\): the local host runs vclusters"):
        check_supported(spec, "local", host_type("local").provides, "w")


def test_every_host_type_says_what_it_provides() -> None:
    assert NAMES == ("local", "kind", "kubeconfig")
    provides = {name: host_type(name).provides for name in NAMES}
    assert [p.chart_values for p in provides.values()] == [False, True, True]
    assert [p.default_prewarm for p in provides.values()] == [1, 0, 0]
    assert [p.deferred_namespace_wait for p in provides.values()] == [False, True, True]
    assert "kwok" in provides["local"].tools
    assert provides["kind"].tools == ("kind", "kubectl", "helm")
    assert [host_type(n).name for n in NAMES] == list(NAMES)


def test_kept_records_round_trip_and_old_ones_are_read(tmp_path: Path) -> None:
    record = kept.KeptRecord(
        kind=kept.CHART,
        name="a",
        host_namespace="vcluster-a",
        kubeconfig="/k",
        workdir="/w",
        pids={"1": "2"},
        release="a",
        host_kubeconfig="/h",
    )
    path = kept.save(record, tmp_path)
    assert path == tmp_path / "kept" / "a.json"
    # Written before records had a kind: a release says it was a chart's.
    (tmp_path / "kept" / "old.json").write_text(
        '{"name": "old", "host_namespace": "vcluster-old", "kubeconfig": "/k", "workdir": "/w",'
        ' "etcd_url": "http://e", "etcd_prefix": "/vcluster/old", "pids": {}}'
    )
    (tmp_path / "kept" / "torn.json").write_text('{"name": ')
    (tmp_path / "kept" / "alien.json").write_text('{"kind": "k3s", "name": "x"}')
    loaded = {r.name: r for _, r in kept.load_all(tmp_path)}
    assert sorted(loaded) == ["a", "old"]
    assert loaded["a"] == record
    assert loaded["old"].kind == kept.LOCAL
    assert loaded["old"].etcd_prefix == "/vcluster/old"
