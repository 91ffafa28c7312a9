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
    (tmp_path / "c.yaml").write_text("apiVersion: v1\nkind: Node\nmetadata: {name: c}\n")
    with pytest.raises(ValueError, match="'Node'"):
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


class PodKube(FakeKube):
    """Pods by path with a phase; get/delete as the API server answers them."""

    def __init__(self) -> None:
        super().__init__()
        self.existing = set()
        self.pods: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        out = super().create(path, body)
        if body["kind"] == "Pod":
            self.existing.add(body["metadata"]["name"])
            self.pods[f"{path}/{body['metadata']['name']}"] = {
                "metadata": {"uid": "u"},
                "status": {"phase": "Pending"},
            }
        return out

    def get(self, path: str) -> dict[str, Any]:
        if path not in self.pods:
            raise ApiError(404, {"reason": "NotFound"}, "GET", path)
        return self.pods[path]

    def delete(self, path: str, uid: str | None = None) -> None:
        self.deleted.append(path)
        self.pods.pop(path)
        self.existing.discard(path.rsplit("/", 1)[1])


def test_bootstrap_pods_are_kept(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: dns-0, namespace: kube-system}\n"
    )
    kube = PodKube()
    path = "/api/v1/namespaces/kube-system/pods/dns-0"
    stop = threading.Event()
    rounds: list[float] = []

    def tick(seconds: float) -> None:
        rounds.append(seconds)
        if len(rounds) == 1:  # a user deletes it: created again
            kube.delete(path)
        elif len(rounds) == 2:  # it ended: deleted, then created again
            kube.pods[path]["status"]["phase"] = "Failed"
        elif len(rounds) == 4:
            stop.set()

    thread = bootstrap.start(
        kube,  # type: ignore[arg-type]
        str(tmp_path),
        resolv_conf=str(tmp_path / "none"),
        sleep=tick,
        stop=stop,
        keep_interval=0.5,
    )
    thread.join(5)
    assert not thread.is_alive()
    assert rounds == [0.5] * 4
    names = [n for _, n in kube.created]
    assert names == ["dns-0", "dns-0", "dns-0"]  # first apply, after the deletion, after it ended
    assert kube.deleted == [path, path]  # the user's, then ours of the ended pod
    assert kube.pods[path]["status"]["phase"] == "Pending"


class RefusingKube(FakeKube):
    """The API server refuses one object for good (422, an invalid spec)."""

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if body["metadata"]["name"] == "bad":
            raise ApiError(422, {"reason": "Invalid"}, "POST", path)
        return super().create(path, body)


def _bootstrap(kube: FakeKube, directory: Path) -> tuple[threading.Thread, list[float]]:
    """Run the bootstrap thread over ``directory`` to its end; the waits it asked for."""
    waits: list[float] = []
    thread = bootstrap.start(
        kube,  # type: ignore[arg-type]
        str(directory),
        resolv_conf=str(directory / "none"),
        sleep=waits.append,
        stop=threading.Event(),
    )
    thread.join(5)
    return thread, waits


def test_an_object_the_server_refuses_is_left_out_not_retried(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\n"
    )
    kube = RefusingKube(failures=2)  # not up yet twice: those are retried
    thread, waits = _bootstrap(kube, tmp_path)
    assert not thread.is_alive()  # before: retried the 422 forever, 4 times a second
    assert kube.created == [("/api/v1/namespaces/default/configmaps", "good")]
    assert waits[:2] == [0.1, 0.2]  # the two connection failures
    # Then the refusal, asked again for the grace period (slowing to 1 s), and no longer.
    refusal = waits[2:]
    assert bootstrap.REFUSED_GRACE <= sum(refusal) <= bootstrap.REFUSED_GRACE + 1
    assert max(refusal) == 1.0


class StartingKube(FakeKube):
    """Refuses a Pod until the API server has made its PriorityClasses (its start-up)."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if body["metadata"]["name"] == "dns" and self.refusals:
            self.refusals -= 1
            message = "no PriorityClass with name system-cluster-critical was found"
            raise ApiError(403, {"message": message}, "POST", path)
        return super().create(path, body)


def test_a_refusal_of_the_servers_start_up_is_waited_out(tmp_path: Path) -> None:
    """Seen on kind: CoreDNS's pod came before the PriorityClass it names, and was dropped."""
    (tmp_path / "x.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dns}\n")
    kube = StartingKube(refusals=3)
    _, waits = _bootstrap(kube, tmp_path)
    assert kube.created == [("/api/v1/namespaces/default/configmaps", "dns")]
    assert len(waits) == 3
