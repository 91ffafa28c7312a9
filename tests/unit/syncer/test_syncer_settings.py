"""The syncer's resource switches: ``sync=`` lists, repeated flags, defaults."""

from __future__ import annotations

import pytest

from syncer.settings import RESOURCES, parse, parse_sync, sync_flags

BASE = ["--name=vc", "--host-namespace=ns", "--virtual-kubeconfig=k"]


def test_defaults_are_the_original_virtualclusters() -> None:
    assert set(parse(BASE).resources) == set(RESOURCES)
    assert all(RESOURCES.values())


@pytest.mark.parametrize(
    ("spec", "flags"),
    [
        ([], ()),
        (["ingresses"], ("--enable-sync-resources=ingresses",)),
        (["-ingresses", "-events"], ("--disable-sync-resources=events,ingresses",)),
        (
            ["+pods", "-events"],
            ("--enable-sync-resources=pods", "--disable-sync-resources=events"),
        ),
    ],
)
def test_sync_flags(spec: list[str], flags: tuple[str, ...]) -> None:
    assert sync_flags(spec) == flags


def test_sync_off_reaches_the_settings() -> None:
    settings = parse([*BASE, *sync_flags(["-ingresses", "-services"])])
    assert settings.resources == frozenset(RESOURCES) - {"ingresses", "services"}


def test_repeated_flags_add_up() -> None:
    """The chart passes its values' switches, a marker's sync= comes as extra arguments."""
    settings = parse(
        [*BASE, "--disable-sync-resources=events", "--disable-sync-resources=ingresses"]
    )
    assert "events" not in settings.resources
    assert "ingresses" not in settings.resources
    assert "pods" in settings.resources


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["gadgets"], "unknown resource 'gadgets'; accepted: pods, services"),
        (["-gadgets"], "unknown resource '-gadgets'"),
        (["pods", "-pods"], "pods turned both on and off"),
        ([3], "3 is not a resource name"),
    ],
)
def test_bad_sync_lists(spec: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sync(spec)


def test_kubelet_address_needs_its_certificates(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse([*BASE, "--kubelet-address=127.0.0.1:0"])
    assert "--kubelet-address needs --kubelet-cert-file" in capsys.readouterr().err


def test_kubelet_address_must_be_reachable(capsys: pytest.CaptureFixture[str]) -> None:
    certs = [
        f"--kubelet-{f}=x" for f in ("cert-file", "key-file", "client-ca-file", "client-cert-file")
    ]
    with pytest.raises(SystemExit):
        parse([*BASE, "--kubelet-address=0.0.0.0:10250", *certs])
    assert "expected IP:PORT with the IP the API server reaches" in capsys.readouterr().err
    assert parse([*BASE, "--kubelet-address=127.0.0.1:10250", *certs]).kubelet_address
