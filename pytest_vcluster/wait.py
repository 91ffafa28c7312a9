"""One way to wait: ``poll`` a check until it is done, a deadline passes, or it fails for good.

Every readiness stage and teardown wait is a call of ``poll``: the check returns a value when
done, raises ``NotYet(reason)`` (or one of the ``retry`` exceptions: a slow or restarting
server) otherwise, and anything else ends the wait at once (a crashed process, an image that
will never pull). On the deadline the error names what was awaited and the last reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .errors import ReadinessTimeoutError

T = TypeVar("T")


class NotYet(Exception):
    """Raised by a check that is not done; its message is the reason shown on timeout."""


def poll(
    what: str,
    check: Callable[[], T],
    deadline: float,
    *,
    interval: float = 0.1,
    retry: tuple[type[BaseException], ...] = (),
    timeout_error: Callable[[str], BaseException] | None = None,
) -> T:
    """``check()``'s value once it returns; ``ReadinessTimeoutError`` (or ``timeout_error``
    of the message) after ``deadline`` (``time.monotonic()``); at least one try."""
    last = "not checked yet"
    while True:
        try:
            return check()
        except NotYet as exc:
            last = str(exc)
        except retry as exc:
            last = f"{type(exc).__name__}: {exc}"[:500]
        if time.monotonic() >= deadline:
            message = f"timed out waiting for {what}; last: {last}"
            raise (timeout_error or ReadinessTimeoutError)(message)
        time.sleep(interval)


def done_or_not_yet(ok: bool, reason: str) -> bool:
    """For checks that are a condition: ``True``, or ``NotYet(reason)``."""
    if not ok:
        raise NotYet(reason)
    return True
