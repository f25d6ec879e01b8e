"""How many requests may be in flight at once: found by asking, capped by the user.

The server's limit is unknown. The limiter starts moderately, doubles its limit while the
server answers well (slow start), and on the first 429/503 sets it just under the number
of requests that were in flight when the refused one was sent — which is the server's
concurrency cap. Then it probes one above that every `limit` successes, so a raised cap
is found again. `--concurrency` caps the limit and `--rate` spaces out request starts.

A request waiting out a Retry-After does not hold a slot: the limiter wraps single HTTP
attempts, not whole items.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from function.client import Deadline


@dataclass
class Attempt:
    """Set `answered` when the server answered, and `overloaded` when it said it is over
    its limit (429, 503). An attempt that got no answer does not move the limit."""

    in_flight_at_start: int
    answered: bool = False
    overloaded: bool = False


class AdaptiveLimiter:
    def __init__(self, *, start: int = 8, cap: int = 256, rate: float | None = None) -> None:
        self.cap = max(1, cap)
        self.limit = float(min(start, self.cap))
        self.in_flight = 0
        self.rate = rate
        self.overloads = 0
        self._slow_start = True
        self._successes = 0
        self._probe_rounds = 1  # rounds of answers between probes; doubles when a probe fails
        self._probing = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._next_start = 0.0

    @asynccontextmanager
    async def attempt(self, deadline: Deadline, *, retry: bool = False) -> AsyncIterator[Attempt]:
        """A slot for one request. Waiting for it (and `rate` spacing) is bounded by the
        deadline: TimeoutError when the slot would come too late.

        A retry goes to the front of the line: its item has waited longest, and a batch
        writes its records in input order, so the items behind it wait on it too."""
        async with asyncio.timeout(deadline.remaining()):
            await self._acquire(front=retry)
        attempt = Attempt(self.in_flight)
        try:
            yield attempt
        finally:
            self.in_flight -= 1
            self._adjust(attempt)
            self._wake()

    async def _acquire(self, *, front: bool) -> None:
        while self.in_flight >= int(self.limit) or (self._waiters and not front):
            waiter = asyncio.get_running_loop().create_future()
            if front:
                self._waiters.appendleft(waiter)
            else:
                self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass on the slot this waiter was given
                raise
            finally:
                if not waiter.done() or waiter.cancelled():  # `_wake` pops the ones it wakes
                    with suppress(ValueError):
                        self._waiters.remove(waiter)
            front = True  # woken: if the slot is gone again, it keeps its place
        self.in_flight += 1
        if self.rate:
            now = time.monotonic()
            self._next_start = max(now, self._next_start + 1.0 / self.rate)
            if self._next_start > now:
                try:
                    await asyncio.sleep(self._next_start - now)
                except BaseException:
                    self.in_flight -= 1  # the slot was never used
                    self._wake()
                    raise

    def stop_probing(self) -> None:
        """No more work is coming: a refused probe now would only delay the last items."""
        self._probe_rounds = 10**9
        if self._probing:
            self._probing = False
            self.limit = max(1.0, self.limit - 1.0)

    def _adjust(self, attempt: Attempt) -> None:
        if not attempt.answered:
            return
        if attempt.overloaded:
            self.overloads += 1
            self._slow_start = False
            self._successes = 0
            if self._probing:  # the level above is still refused: probe it less often
                self._probe_rounds = min(self._probe_rounds * 2, max(64, self._probe_rounds))
                self._probing = False
            # The cap is below what was in flight when this request went out.
            self.limit = max(1.0, min(self.limit, attempt.in_flight_at_start - 1.0))
            return
        if self._slow_start:
            self.limit = min(float(self.cap), self.limit + 1.0)  # +1 per answer: x2 a round
            return
        self._successes += 1
        if self._probing and self._successes >= int(self.limit):
            self._probing = False  # a whole round at the new level: it holds
            self._probe_rounds = 1
        if self._successes >= self._probe_rounds * int(self.limit):
            self._successes = 0
            self._probing = True
            self.limit = min(float(self.cap), self.limit + 1.0)  # probe one above

    def _wake(self) -> None:
        free = int(self.limit) - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
