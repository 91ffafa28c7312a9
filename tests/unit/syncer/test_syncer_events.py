"""The syncer's own Events: one request per distinct event, however often a reconcile finds it."""

from __future__ import annotations

from typing import Any

from syncer.kube import ApiError
from syncer.resources.events import EventRecorder


class FakeVirtual:
    """Records creates; a second create of one name is a 409, as the API server answers."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if name in self.created:
            raise ApiError(409, {}, "POST", path)
        self.created.append(name)
        return body


class FakeEngine:
    def __init__(self) -> None:
        self.virtual = FakeVirtual()


SVC = {"metadata": {"name": "web", "namespace": "a", "uid": "u1"}}


def test_the_same_event_is_written_once() -> None:
    engine = FakeEngine()
    recorder = EventRecorder(engine)  # type: ignore[arg-type]
    for _ in range(5):
        recorder.warn(SVC, "Service", "ExternalIPsNotSynced", "externalIPs 1.2.3.4 not synced")
    assert len(engine.virtual.created) == 1
    recorder.warn(SVC, "Service", "ExternalIPsNotSynced", "externalIPs 5.6.7.8 not synced")
    other = {"metadata": {"name": "web", "namespace": "a", "uid": "u2"}}  # a new Service
    recorder.warn(other, "Service", "ExternalIPsNotSynced", "externalIPs 1.2.3.4 not synced")
    assert len(engine.virtual.created) == 3


def test_what_it_remembers_is_bounded() -> None:
    engine = FakeEngine()
    recorder = EventRecorder(engine)  # type: ignore[arg-type]
    recorder.REMEMBERED = 3
    for i in range(5):
        recorder.warn(SVC, "Service", "R", f"m{i}")
    recorder.warn(SVC, "Service", "R", "m0")  # forgotten: asked again, the API says 409
    assert len(engine.virtual.created) == 5
    assert len(recorder._written) == 3
