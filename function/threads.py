"""Blocking work (boto3 calls, a local model's pipeline) bounded by the deadline.

The work runs in a daemon thread, never in the event loop's default executor: `asyncio.run`
waits for that executor's threads before it returns, so a pipeline or a peer that overruns
would hold the reply past the deadline. A daemon thread is left to finish (or to its own
timeouts) while the reply goes out.

Most work gets a thread of its own. A local model's calls go to its `Worker`, one thread
that runs them in turn: torch builds its pool of compute threads for each new thread that
calls it, which made a thread a call about 20% slower on an embedding batch.
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from function.client import Deadline

T = TypeVar("T")
IDLE_S = 60.0  # a worker's thread ends after this long without work (a new one starts)


async def bounded(call: Callable[[], T], deadline: Deadline, worker: Worker | None = None) -> T:
    """`call()` in a daemon thread (the worker's, or one of its own); its result, its
    exception, or TimeoutError at the deadline. A call still waiting for the worker then is
    dropped; one that has started is left to finish on its own."""
    remaining = deadline.remaining()
    if remaining <= 0:
        raise TimeoutError("no time left before the deadline")
    result: Future[T] = Future()
    if worker is None:
        threading.Thread(
            target=_run, args=(call, result), name="hf-run-job-io", daemon=True
        ).start()
    else:
        worker.submit(call, result)
    async with asyncio.timeout(None if math.isinf(remaining) else remaining):
        return await asyncio.wrap_future(result)


def _run(call: Callable[[], T], result: Future[T]) -> None:
    if not result.set_running_or_notify_cancel():  # the caller stopped waiting
        return
    try:
        value = call()
    except BaseException as exc:
        result.set_exception(exc)
    else:
        result.set_result(value)


class Worker:
    """A daemon thread that runs the calls given to it one after another, started when
    work comes and ended after `IDLE_S` without any."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, call: Callable[[], T], result: Future[T]) -> None:
        self._calls.put((call, result))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                call, result = self._calls.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._calls.empty():  # work put in meanwhile is still served
                        self._thread = None
                        return
                continue
            _run(call, result)
            del call, result  # hold no model or answer while idle
