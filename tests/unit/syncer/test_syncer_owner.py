"""Every host object the syncer makes is owned by the release's Service (``--owner-service``),
so ``helm uninstall`` alone removes them (e2e: test_plain_helm_install_without_the_plugin)."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.core.controller import Engine
from syncer.kube import ApiError
from syncer.settings import parse

BASE = ["--name=vc", "--host-namespace=vcluster-vc", "--virtual-kubeconfig=k"]


class FakeHost:
    """Answers GET of the owner Service after ``missing`` 404s (helm creates it with the pod)."""

    def __init__(self, missing: int) -> None:
        self.missing = missing
        self.paths: list[str] = []

    def get(self, path: str, **_: Any) -> Any:
        self.paths.append(path)
        if self.missing:
            self.missing -= 1
            raise ApiError(404, {"message": "not found"}, "GET", path)
        return {"metadata": {"name": "vc", "uid": "uid-1"}}


def _engine(args: list[str], host: FakeHost) -> Engine:
    return Engine(parse([*BASE, *args]), virtual=object(), host=host)  # type: ignore[arg-type]


def test_owner_is_looked_up_and_put_on_host_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncer.core.controller.time.sleep", lambda s: None)
    host = FakeHost(missing=2)
    engine = _engine(["--owner-service=vc"], host)
    engine.resolve_owner(timeout=10)
    assert host.paths == ["/api/v1/namespaces/vcluster-vc/services/vc"] * 3
    obj = engine.own({"metadata": {"name": "web-x-default-x-vc"}})
    assert obj["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Service", "name": "vc", "uid": "uid-1"}
    ]
    token = {"metadata": {"ownerReferences": [{"kind": "Pod", "name": "p", "uid": "u"}]}}
    assert engine.own(token)["metadata"]["ownerReferences"][0]["kind"] == "Pod"


def test_a_missing_owner_is_an_error_not_unowned_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncer.core.controller.time.sleep", lambda s: None)
    engine = _engine(["--owner-service=vc"], FakeHost(missing=10**9))
    with pytest.raises(RuntimeError, match=r"owner Service vc: GET .*: 404 not found"):
        engine.resolve_owner(timeout=0.01)


def test_without_owner_objects_are_left_alone() -> None:
    engine = _engine([], FakeHost(missing=0))
    engine.resolve_owner()
    assert engine.own({"metadata": {}}) == {"metadata": {}}
