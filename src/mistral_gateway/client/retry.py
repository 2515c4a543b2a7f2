"""When to retry, and how long to wait.

- 429: retried for every method, POST included. A rate-limited request was refused before any work was done, so
  sending it again cannot do anything twice; the wait honours ``Retry-After``.
- 502, 503, 504: retried only for idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE). A POST that reached a
  busy or failing backend may have been processed (a chat billed, a file stored), so it is never resent.
- Connection failures: retried for every method when the connection was never established (nothing was sent);
  other transport errors (a dropped connection mid-answer, a read timeout) only for idempotent methods.

Waits grow exponentially (``backoff * 2**attempt``, capped at ``max_backoff``) with "equal jitter": half the wait
is fixed, half random, so clients that failed together do not retry together. A ``Retry-After`` longer than
``max_retry_after`` is not waited for: the error is raised at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from mistral_gateway.client.errors import parse_retry_after

__all__ = ["IDEMPOTENT_METHODS", "NO_RETRY", "RETRY_STATUSES", "RetryPolicy"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3  # retries after the first attempt
    backoff: float = 0.5  # seconds before the first retry (before jitter)
    max_backoff: float = 8.0
    max_retry_after: float = 60.0  # longer Retry-After values are not waited for
    jitter: Callable[[float, float], float] = field(default=random.uniform, repr=False, compare=False)

    def backoff_delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt + 1`` (0-based), jittered within [d/2, d]."""
        cap = min(self.max_backoff, self.backoff * (2 ** attempt))
        return cap / 2 + self.jitter(0.0, cap / 2)

    def delay_for_response(self, method: str, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before resending, or None to give up and raise."""
        if attempt >= self.max_retries or response.status_code not in RETRY_STATUSES:
            return None
        if response.status_code != 429 and method.upper() not in IDEMPOTENT_METHODS:
            return None
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None:
            return self.backoff_delay(attempt)
        if retry_after > self.max_retry_after:
            return None
        # The server's own figure, plus a little jitter so a crowd told "1 second" does not return as one.
        return retry_after + self.jitter(0.0, min(1.0, retry_after * 0.1 + 0.05))

    def delay_for_error(self, method: str, error: httpx.TransportError, attempt: int) -> float | None:
        if attempt >= self.max_retries:
            return None
        if isinstance(error, _NOT_SENT) or method.upper() in IDEMPOTENT_METHODS:
            return self.backoff_delay(attempt)
        return None


NO_RETRY = RetryPolicy(max_retries=0)
