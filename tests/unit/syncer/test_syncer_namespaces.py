"""The syncer's default ServiceAccount per virtual namespace (fakes for the API server)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from syncer.kube import ApiError
from syncer.resources.namespaces import DefaultServiceAccounts


class Cache:
    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        self.objects = objects or {}

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))


class Virtual:
    def __init__(self, status: int = 0) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.status = status

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append((path, body))
        if self.status:
            raise ApiError(self.status, "no", "POST", path)
        return body


def _setup(
    namespaces: dict[str, dict[str, Any]], accounts: set[tuple[str, str]], status: int = 0
) -> tuple[DefaultServiceAccounts, Virtual]:
    virtual = Virtual(status)
    informers: dict[str, Any] = {"serviceaccounts": Cache({k: {} for k in accounts})}
    engine = SimpleNamespace(
        virtual=virtual,
        virtual_informers=informers,
        watch_virtual=lambda resource, path: Cache({("", n): o for n, o in namespaces.items()}),
    )
    resource = DefaultServiceAccounts()
    resource.setup(engine)  # type: ignore[arg-type]
    return resource, virtual


def test_a_new_namespace_gets_its_default_account() -> None:
    resource, virtual = _setup({"team": {"metadata": {"name": "team"}}}, set())
    resource.reconcile("", "team")
    assert virtual.created == [
        ("/api/v1/namespaces/team/serviceaccounts", {"metadata": {"name": "default"}})
    ]


def test_nothing_for_an_existing_account_a_terminating_or_a_gone_namespace() -> None:
    going = {"metadata": {"name": "old", "deletionTimestamp": "2026-12-05T00:00:00Z"}}
    namespaces = {"team": {"metadata": {"name": "team"}}, "old": going}
    resource, virtual = _setup(namespaces, {("team", "default")})
    for name in ("team", "old", "gone"):
        resource.reconcile("", name)
    assert virtual.created == []


@pytest.mark.parametrize("status", [403, 404, 409])
def test_the_controller_first_or_the_namespace_going_is_no_error(status: int) -> None:
    resource, virtual = _setup({"team": {"metadata": {"name": "team"}}}, set(), status)
    resource.reconcile("", "team")
    assert len(virtual.created) == 1


def test_other_errors_are_retried_by_the_queue() -> None:
    resource, _ = _setup({"team": {"metadata": {"name": "team"}}}, set(), 500)
    with pytest.raises(ApiError):
        resource.reconcile("", "team")
