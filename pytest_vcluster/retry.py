"""Retries for idempotent operations only (creating what may exist, deleting what may be gone).

Anything else fails at once with its reason: retrying a non-idempotent call could duplicate
it, and retrying a permanent failure only hides it for longer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import tenacity

F = TypeVar("F", bound=Callable[..., Any])


class Transient(Exception):
    """Raised inside an idempotent operation for an answer worth asking again (404 before a
    namespace exists, 5xx, 429)."""


def idempotent(
    *, attempts: int = 5, within: float | None = None, first_wait: float = 0.05
) -> Callable[[F], F]:
    """Retry on ``OSError`` (the server is unreachable or restarting) and ``Transient``, with
    exponential waits from ``first_wait`` up to 1 s; at most ``attempts`` tries and, when
    ``within`` is given, no new try after that many seconds. The last error is re-raised."""
    stop: Any = tenacity.stop_after_attempt(attempts)
    if within is not None:
        stop = stop | tenacity.stop_after_delay(within)
    decorator = tenacity.retry(
        retry=tenacity.retry_if_exception_type((OSError, Transient)),
        stop=stop,
        wait=tenacity.wait_exponential(multiplier=first_wait, max=1.0),
        reraise=True,
    )
    return decorator  # type: ignore[return-value]


def transient_status(status: int) -> bool:
    return status == 429 or status >= 500
