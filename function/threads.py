"""Blocking work (boto3 calls, a local model's pipeline) bounded by the deadline.

The work runs in a daemon thread of its own, never in the event loop's default executor:
`asyncio.run` waits for that executor's threads before it returns, so a pipeline or a peer
that overruns would hold the reply past the deadline. A daemon thread is left to finish
(or to its own timeouts) while the reply goes out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from function.client import Deadline

T = TypeVar("T")


async def bounded(call: Callable[[], T], deadline: Deadline) -> T:
    """`call()` in a daemon thread; its result, its exception, or TimeoutError at the
    deadline (the thread is left to finish on its own)."""
    remaining = deadline.remaining()
    if remaining <= 0:
        raise TimeoutError("no time left before the deadline")
    result: concurrent.futures.Future[T] = concurrent.futures.Future()

    def work() -> None:
        try:
            value = call()
        except BaseException as exc:
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                result.set_exception(exc)
        else:
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                result.set_result(value)

    threading.Thread(target=work, name="hf-run-job-io", daemon=True).start()
    async with asyncio.timeout(None if math.isinf(remaining) else remaining):
        return await asyncio.wrap_future(result)
