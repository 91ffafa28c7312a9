"""syncer/bootstrap.py: manifests read, ${HOST_DNS} substituted, created once, retried."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from syncer import bootstrap
from syncer.kube import ApiError


def test_host_nameserver(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search a.svc.cluster.local\nnameserver 10.96.0.10\nnameserver 8.8.8.8\n")
    assert bootstrap.host_nameserver(resolv) == "10.96.0.10"
    assert bootstrap.host_nameserver(tmp_path / "missing") == ""


def test_load_substitutes_and_refuses_unknown_kinds(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    (tmp_path / "a.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {ns: '${HOST_DNS}'}\n---\n"
    )
    objs = bootstrap.load(tmp_path, "10.0.0.10")
    assert [o["metadata"]["name"] for o in objs] == ["a", "b"]
    assert objs[0]["data"]["ns"] == "10.0.0.10"
    with pytest.raises(ValueError, match="names none"):
        bootstrap.load(tmp_path, "")
    (tmp_path / "c.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: c}\n")
    with pytest.raises(ValueError, match="'Pod'"):
        bootstrap.load(tmp_path, "10.0.0.10")


class FakeKube:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.created: list[tuple[str, str]] = []
        self.existing = {"coredns"}

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("not up yet")
        if body["metadata"]["name"] in self.existing:
            raise ApiError(409, {"reason": "AlreadyExists"}, "POST", path)
        self.created.append((path, body["metadata"]["name"]))
        return body


def test_apply_is_create_only_and_start_retries(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: coredns, namespace: kube-system}\n"
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
    )
    kube = FakeKube(failures=3)
    thread = bootstrap.start(
        kube,  # type: ignore[arg-type]
        str(tmp_path),
        resolv_conf=str(tmp_path / "none"),
        sleep=lambda s: None,
        stop=threading.Event(),
    )
    thread.join(5)
    assert not thread.is_alive()
    assert kube.created == [("/apis/apps/v1/namespaces/default/deployments", "web")]
