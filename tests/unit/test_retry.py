"""Only idempotent failures are retried, and never forever."""

from __future__ import annotations

import time

import pytest

from pytest_vcluster.retry import Transient, idempotent, transient_status


def test_unreachable_then_fine_is_retried() -> None:
    calls = []

    @idempotent(first_wait=0.001)
    def op() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("not yet")
        return "ok"

    assert op() == "ok"
    assert len(calls) == 3


def test_other_errors_are_not_retried() -> None:
    calls = []

    @idempotent(first_wait=0.001)
    def op() -> None:
        calls.append(1)
        raise ValueError("permanent")

    with pytest.raises(ValueError, match="permanent"):
        op()
    assert len(calls) == 1


def test_attempts_and_time_are_bounded_and_the_last_error_is_raised() -> None:
    calls = []

    @idempotent(attempts=4, first_wait=0.001)
    def op() -> None:
        calls.append(1)
        raise Transient(f"try {len(calls)}")

    with pytest.raises(Transient, match="try 4"):
        op()

    t0 = time.monotonic()

    @idempotent(attempts=10_000, within=0.3, first_wait=0.01)
    def slow() -> None:
        raise Transient("still 503")

    with pytest.raises(Transient):
        slow()
    assert time.monotonic() - t0 < 2


@pytest.mark.parametrize(
    ("status", "transient"),
    [(500, True), (503, True), (429, True), (404, False), (409, False), (201, False)],
)
def test_transient_statuses(status: int, transient: bool) -> None:
    assert transient_status(status) is transient
