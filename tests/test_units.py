"""Pure logic on `httpx.MockTransport`, beside the socket tests: the retry policy, the error
mapping, the adaptive limiter, the coalescer, the aiohttp transport's exception mapping."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from function import jsontext, threads
from function.client import Access, Call, Deadline, HFClient
from function.coalescer import Coalescer
from function.errors import (
    AuthError,
    BadRequestError,
    ConnectionFailedError,
    ModelLoadingError,
    NotFoundError,
    RateLimitedError,
    ResponseTooLargeError,
    ServerError,
    UpstreamTimeoutError,
)
from function.limiter import AdaptiveLimiter
from function.settings import Settings

URL = "https://router.huggingface.co/hf-inference/models/org/model"


def settings(**values: Any) -> Settings:
    defaults = {"HF_BACKOFF_BASE": 0.01, "HF_BACKOFF_MAX": 0.02, "HF_MAX_RETRIES": 2}
    return Settings(**{**defaults, **values})  # type: ignore[arg-type]


def client_for(handler, **values: Any) -> tuple[HFClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request, len(seen))

    http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return HFClient(settings(**values), http), seen


SECRET = "hf_test_secret_token_value_0123456789"


def post(client: HFClient, budget: float = 5.0, wait: bool = True):
    async def main():
        call = Call(URL, {"inputs": "x"}, "org/model", wait, Access(SECRET))
        return await client.post_json(call, Deadline(budget))

    return asyncio.run(main())


# -- the retry policy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "attempts"),
    [
        (401, AuthError, 1),
        (403, AuthError, 1),
        (404, NotFoundError, 1),
        (410, NotFoundError, 1),
        (400, BadRequestError, 1),
        (422, BadRequestError, 1),
        (429, RateLimitedError, 3),  # HF_MAX_RETRIES=2: three attempts in all
        (500, ServerError, 3),
        (502, ServerError, 3),
    ],
)
def test_each_status_maps_to_its_error_and_retries_only_when_transient(status, error, attempts):
    client, seen = client_for(lambda request, n: httpx.Response(status, json={"error": "no"}))
    with pytest.raises(error) as raised:
        post(client)
    assert len(seen) == attempts == raised.value.attempts
    assert raised.value.transient is (attempts > 1)


def test_a_transient_failure_then_success():
    replies = [httpx.Response(503, json={"error": "x"}), httpx.Response(200, json=[1.0])]
    client, _ = client_for(lambda request, n: replies[min(n, 2) - 1])
    answer = post(client)
    assert answer.body == [1.0] and answer.attempts == 2


def test_retry_after_is_honoured_and_never_past_the_deadline():
    client, seen = client_for(
        lambda request, n: httpx.Response(429, headers={"Retry-After": "30"}, json={"error": "x"})
    )
    with pytest.raises(UpstreamTimeoutError) as raised:
        post(client, budget=2.0)
    assert len(seen) == 1 and raised.value.out_of_time


def test_a_loading_model_is_polled_until_the_deadline():
    client, seen = client_for(
        lambda request, n: httpx.Response(503, json={"error": "loading", "estimated_time": 0.3})
    )
    with pytest.raises(ModelLoadingError) as raised:
        post(client, budget=1.5)
    assert 2 <= len(seen) <= 6 and raised.value.out_of_time
    assert "still loading" in raised.value.message


def test_without_waiting_a_loading_model_fails_at_once():
    client, seen = client_for(
        lambda request, n: httpx.Response(503, json={"error": "loading", "estimated_time": 20})
    )
    with pytest.raises(ModelLoadingError):
        post(client, wait=False)
    assert len(seen) == 1 and "x-wait-for-model" not in seen[0].headers


def test_transport_errors_are_connection_failures_and_are_retried():
    def fail(request, n):
        raise httpx.ConnectError("refused", request=request)

    client, seen = client_for(fail)
    with pytest.raises(ConnectionFailedError):
        post(client)
    assert len(seen) == 3


def test_an_answer_over_the_limit_is_refused_from_its_content_length():
    client, _ = client_for(
        lambda request, n: httpx.Response(
            200, headers={"Content-Length": str(10**9)}, content=b"[]"
        ),
        HF_MAX_RESPONSE_BYTES=4096,
    )
    with pytest.raises(ResponseTooLargeError):
        post(client)


def test_an_answer_that_grows_past_the_limit_is_cut_off():
    class Endless(httpx.AsyncByteStream):
        async def __aiter__(self):
            while True:
                yield b"[1.0," * 1000

    def endless(request, n):
        return httpx.Response(200, stream=Endless())

    client, _ = client_for(endless, HF_MAX_RESPONSE_BYTES=64 * 1024)
    with pytest.raises(ResponseTooLargeError, match="grew past the limit of 65,536"):
        post(client)


def test_the_token_is_masked_in_answers_before_anything_reads_them():
    secret = SECRET
    client, _ = client_for(
        lambda request, n: httpx.Response(401, text="y" * 295 + secret, headers={"X": "1"})
    )
    with pytest.raises(AuthError) as raised:
        post(client)
    assert secret[:6] not in raised.value.message.replace("hf_test", "").replace("***", "")
    assert secret not in raised.value.message


# -- the adaptive limiter ----------------------------------------------------------------------


def test_the_limiter_finds_a_cap_and_stays_under_it():
    cap = 6

    async def main():
        limiter = AdaptiveLimiter(start=2, cap=64)
        in_flight = peak = refused = 0

        async def request():
            nonlocal in_flight, peak, refused
            while True:
                async with limiter.attempt(Deadline(30)) as attempt:
                    in_flight += 1
                    peak = max(peak, in_flight)
                    over = in_flight > cap
                    await asyncio.sleep(0.005)
                    in_flight -= 1
                    attempt.answered, attempt.overloaded = True, over
                if not over:
                    return
                refused += 1

        await asyncio.gather(*(request() for _ in range(300)))
        return limiter, peak, refused

    limiter, _, refused = asyncio.run(main())
    assert limiter.limit <= cap + 1
    assert 0 < refused < 60  # it found the cap, then stayed near it


def test_waiting_for_a_slot_is_bounded_by_the_deadline():
    async def main():
        limiter = AdaptiveLimiter(start=1, cap=1)
        async with limiter.attempt(Deadline(5)):
            with pytest.raises(TimeoutError):
                async with limiter.attempt(Deadline(0.1)):
                    pass
        async with limiter.attempt(Deadline(1)):  # the slot is free again
            return True

    assert asyncio.run(main())


def test_rate_spacing_is_bounded_by_the_deadline():
    async def main():
        limiter = AdaptiveLimiter(start=8, cap=8, rate=1.0)
        async with limiter.attempt(Deadline(5)):
            pass
        with pytest.raises(TimeoutError):
            async with limiter.attempt(Deadline(0.2)):
                pass
        return limiter.in_flight

    assert asyncio.run(main()) == 0


def test_a_retry_goes_before_the_requests_already_waiting():
    async def main():
        limiter = AdaptiveLimiter(start=1, cap=1)
        order: list[str] = []

        async def request(name: str, retry: bool = False) -> None:
            async with limiter.attempt(Deadline(5), retry=retry):
                order.append(name)
                await asyncio.sleep(0)

        async with limiter.attempt(Deadline(5)):  # the one slot is taken
            waiting = [asyncio.ensure_future(request(f"new {i}")) for i in range(3)]
            await asyncio.sleep(0.01)
            waiting.append(asyncio.ensure_future(request("retry", retry=True)))
            await asyncio.sleep(0.01)
        await asyncio.gather(*waiting)
        return order, limiter.in_flight, len(limiter._waiters)

    order, in_flight, waiters = asyncio.run(main())
    assert order == ["retry", "new 0", "new 1", "new 2"]
    assert (in_flight, waiters) == (0, 0)


def test_a_cancelled_waiter_leaves_the_line():
    async def main():
        limiter = AdaptiveLimiter(start=1, cap=1)
        async with limiter.attempt(Deadline(5)):
            waiters = [
                asyncio.ensure_future(limiter.attempt(Deadline(5), retry=i % 2 == 0).__aenter__())
                for i in range(4)
            ]
            await asyncio.sleep(0.01)
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        async with limiter.attempt(Deadline(1)):  # the slot is free, nobody is in line
            return limiter.in_flight, len(limiter._waiters)

    assert asyncio.run(main()) == (1, 0)


# -- the coalescer -----------------------------------------------------------------------------


class Recorder:
    """A stand-in API client: records what is sent, answers one vector per text."""

    def __init__(self, fail_over: int | None = None) -> None:
        self.sent: list[Any] = []
        self.fail_over = fail_over

    async def post_json(self, call, deadline):
        from function.client import ApiResponse
        from function.envelope import Usage

        payload = call.payload
        self.sent.append(payload)
        await asyncio.sleep(0.001)
        texts = payload["inputs"]
        if self.fail_over is not None and isinstance(texts, list) and len(texts) > self.fail_over:
            raise ResponseTooLargeError("too big")
        body = [[float(len(t))] for t in texts] if isinstance(texts, list) else [[0.0]]
        return ApiResponse(body, Usage(characters=len(json.dumps(texts))), 1)


def coalesce(recorder: Recorder, payloads: list[Any], url: str, batch_size: int = 4):
    async def main():
        coalescer = Coalescer(recorder, batch_size=batch_size)
        answers = await asyncio.gather(
            *(coalescer.post_json(Call(url, p, "m"), Deadline(5)) for p in payloads)
        )
        await coalescer.aclose()
        return answers

    return asyncio.run(main())


FE = "https://x/models/m/pipeline/feature-extraction"


def test_identical_requests_are_sent_once():
    recorder = Recorder()
    answers = coalesce(recorder, [{"inputs": "same"}] * 10, URL)
    assert len(recorder.sent) == 1
    assert all(a.body is answers[0].body for a in answers)  # one answer, shared
    # What it cost is counted once: the duplicates made no request.
    assert [a.attempts for a in answers].count(0) == 9
    assert sum(a.usage.characters or 0 for a in answers) == answers[0].usage.characters


def test_embeddings_go_in_chunks_and_come_back_per_text():
    recorder = Recorder()
    texts = ["a" * (i + 1) for i in range(10)]
    answers = coalesce(recorder, [{"inputs": t} for t in texts], FE, batch_size=4)
    assert [len(p["inputs"]) for p in recorder.sent] == [4, 4, 2]
    assert [a.body for a in answers] == [[float(len(t))] for t in texts]


def test_a_chunk_over_the_size_limit_is_sent_again_in_halves():
    recorder = Recorder(fail_over=2)
    texts = ["a" * (i + 1) for i in range(8)]
    answers = coalesce(recorder, [{"inputs": t} for t in texts], FE, batch_size=8)
    assert [a.body for a in answers] == [[float(len(t))] for t in texts]
    assert sorted(len(p["inputs"]) for p in recorder.sent) == [2, 2, 2, 2, 4, 4, 8]


def test_a_local_chunk_that_fails_is_split_until_the_text_at_fault_fails_alone():
    from function.errors import LocalRunError

    class FailsOnBad(Recorder):
        async def post_json(self, call, deadline):
            texts = call.payload["inputs"]
            if "bad" in texts:
                self.sent.append(call.payload)
                raise LocalRunError("the pipeline failed")
            return await super().post_json(call, deadline)

    recorder = FailsOnBad()
    texts = [f"t{i}" for i in range(7)] + ["bad"]
    url = "local:/models/m/pipeline/text-classification"
    answers = asyncio.run(_gathered(recorder, texts, url))
    assert [a.body for a in answers[:7]] == [[2.0]] * 7  # the others answered
    assert isinstance(answers[7], LocalRunError)
    assert len(recorder.sent) <= 2 * len(texts)


LOCAL_URL = "local:/models/m/pipeline/text-classification"


class AtTheModel(Recorder):
    """A stand-in local model: one call at a time, as a model's worker runs them; records
    how many calls were sent and not yet answered."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = self.most = 0
        self.model = asyncio.Lock()

    async def post_json(self, call, deadline):
        self.waiting += 1
        self.most = max(self.most, self.waiting)
        try:
            async with self.model:
                return await super().post_json(call, deadline)
        finally:
            self.waiting -= 1


def test_a_local_model_gets_texts_of_about_the_same_length_together():
    """What came while the model was busy runs shortest first, `batch_size` a call, with at
    most two calls at the model: a call pads its texts little, and each text is answered
    as its own call returns."""
    recorder = AtTheModel()
    lengths = [(i * 37) % 50 + 1 for i in range(40)]  # out of order

    async def main():
        coalescer = Coalescer(recorder, batch_size=4)
        first = [
            coalescer.post_json(Call(LOCAL_URL, {"inputs": "x" * n}, "m"), Deadline(5))
            for n in lengths[:20]
        ]
        tasks = [asyncio.ensure_future(c) for c in first]
        await asyncio.sleep(0.02)  # the model is busy with the first texts: the rest come
        later = [
            coalescer.post_json(Call(LOCAL_URL, {"inputs": "y" * n}, "m"), Deadline(5))
            for n in lengths[20:]
        ]
        answers = await asyncio.gather(*tasks, *later)
        await coalescer.aclose()
        return answers

    answers = asyncio.run(main())
    assert [a.body for a in answers] == [[float(n)] for n in lengths]  # each its own
    sent = [p["inputs"] for p in recorder.sent]
    assert all(len(texts) <= 4 for texts in sent) and recorder.most == 2
    first = [len(t) for texts in sent for t in texts if t[0] == "x"]
    later = [len(t) for texts in sent for t in texts if t[0] == "y"]
    assert first == sorted(lengths[:20]) and later == sorted(lengths[20:])
    assert sum(len(texts) for texts in sent) == 40  # each text once


def test_a_failing_local_text_does_not_hold_back_the_others():
    """Split until the text at fault fails alone; each half is answered as it returns, so
    the others have their answers while the bad text's call is still running."""
    from function.errors import LocalRunError

    class Stuck(Recorder):
        async def post_json(self, call, deadline):
            texts = call.payload["inputs"]
            if "bad" in texts:
                if len(texts) > 1:
                    raise LocalRunError("the pipeline failed")
                await self.forever.wait()
            return await super().post_json(call, deadline)

    async def main():
        recorder = Stuck()
        recorder.forever = asyncio.Event()
        coalescer = Coalescer(recorder, batch_size=8)
        texts = [f"t{i}" for i in range(3)] + ["bad"] + [f"t{i}" for i in range(3, 7)]
        tasks = [
            asyncio.ensure_future(
                coalescer.post_json(Call(LOCAL_URL, {"inputs": t}, "m"), Deadline(5))
            )
            for t in texts
        ]
        good = [t for t, text in zip(tasks, texts, strict=True) if text != "bad"]
        answers = await asyncio.wait_for(asyncio.gather(*good), 2)
        await coalescer.aclose()
        return answers

    assert [a.body for a in asyncio.run(main())] == [[2.0]] * 7


def test_a_text_nobody_waits_for_is_not_sent_and_each_waits_to_its_own_deadline():
    class Slow(Recorder):
        async def post_json(self, call, deadline):
            await asyncio.sleep(0.3)
            return await super().post_json(call, deadline)

    async def main():
        recorder = Slow()
        coalescer = Coalescer(recorder, batch_size=8)

        def ask(text: str, seconds: float):
            call = Call(LOCAL_URL, {"inputs": text}, "m")
            return asyncio.ensure_future(coalescer.post_json(call, Deadline(seconds)))

        gone, short, long = ask("gone", 5), ask("short", 0.05), ask("long", 5)
        await asyncio.sleep(0)
        gone.cancel()
        results = await asyncio.gather(gone, short, long, return_exceptions=True)
        await coalescer.aclose()
        return recorder.sent, results

    sent, (gone, short, long) = asyncio.run(main())
    assert [p["inputs"] for p in sent] == [["long", "short"]]  # in order of length
    assert isinstance(gone, asyncio.CancelledError)
    assert isinstance(short, UpstreamTimeoutError) and short.out_of_time
    assert long.body == [4.0]


@given(
    texts=st.lists(
        st.sampled_from(["a", "bb", "ccc", "bad", "dddd", "e" * 9, "bad2"]), max_size=40
    ),
    batch_size=st.integers(2, 9),
    local=st.booleans(),
)
@examples(max_examples=60, deadline=None)
def test_every_text_gets_its_own_answer_or_its_own_failure_once(texts, batch_size, local):
    """No text lost, none answered with another's answer, none sent twice once answered:
    whatever the texts, the batch size, and the failing texts among them."""
    from function.errors import LocalRunError

    class Picky(Recorder):
        async def post_json(self, call, deadline):
            inputs = call.payload["inputs"]
            if isinstance(inputs, list) and any(t.startswith("bad") for t in inputs):
                self.sent.append(call.payload)
                raise (LocalRunError if local else ResponseTooLargeError)("refused")
            return await super().post_json(call, deadline)

    url = LOCAL_URL if local else FE
    recorder = Picky()

    async def main():
        coalescer = Coalescer(recorder, batch_size=batch_size)
        calls = [coalescer.post_json(Call(url, {"inputs": t}, "m"), Deadline(5)) for t in texts]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        await coalescer.aclose()
        return answers

    for text, answer in zip(texts, asyncio.run(main()), strict=True):
        if text.startswith("bad"):
            assert isinstance(answer, LocalRunError | ResponseTooLargeError), answer
        else:
            assert answer.body == [float(len(text))], (text, answer)
    answered = [
        t
        for p in recorder.sent
        if not any(x.startswith("bad") for x in p["inputs"])
        for t in (p["inputs"] if isinstance(p["inputs"], list) else [p["inputs"]])
    ]
    good = {t for t in texts if not t.startswith("bad")}
    assert sorted(answered) == sorted(good)  # each distinct text answered once


@given(
    asks=st.lists(
        st.tuples(
            st.integers(1, 12),  # the text's length
            st.sampled_from([0.0, 0.02, 0.06, 5.0]),  # its own deadline
            st.none() | st.sampled_from([0.0, 0.01, 0.04]),  # cancelled after, or never
        ),
        max_size=30,
    ),
)
@examples(max_examples=40, deadline=None)
def test_local_texts_under_their_own_deadlines_and_cancellations(asks):
    """Whatever the deadlines and the cancellations: a text is answered with its own
    answer, or fails out_of_time (only with a short deadline), or is cancelled (only if
    its asker was); none is left waiting, and none is sent twice."""

    class Slow(Recorder):
        async def post_json(self, call, deadline):
            await asyncio.sleep(0.03)
            return await super().post_json(call, deadline)

    recorder = Slow()

    async def main():
        coalescer = Coalescer(recorder, batch_size=4)
        tasks = [
            asyncio.ensure_future(
                coalescer.post_json(
                    Call(LOCAL_URL, {"inputs": f"{i:02}" + "x" * n}, "m"), Deadline(s)
                )
            )
            for i, (n, s, _) in enumerate(asks)
        ]
        cancelled = [False] * len(asks)

        async def cancel(position: int, after: float) -> None:
            await asyncio.sleep(after)
            cancelled[position] = tasks[position].cancel()

        cancels = [cancel(i, after) for i, (_, _, after) in enumerate(asks) if after is not None]
        await asyncio.wait_for(asyncio.gather(*cancels), 5)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        await coalescer.aclose()
        return results, cancelled

    results, cancelled = asyncio.run(main())
    for i, ((n, seconds, _), result, was_cancelled) in enumerate(
        zip(asks, results, cancelled, strict=True)
    ):
        if was_cancelled:
            assert isinstance(result, asyncio.CancelledError), (i, result)
        elif isinstance(result, UpstreamTimeoutError):
            assert result.out_of_time and seconds < 5, (i, seconds, result)
        else:  # no answer comes within 0.03 s, so none before such a deadline
            assert seconds > 0.03, (i, seconds, result)
            assert result.body == [float(2 + n)], (i, result)
    sent = [t for payload in recorder.sent for t in payload["inputs"]]
    assert len(sent) == len(set(sent))


@pytest.mark.parametrize(
    ("seconds_a_char", "length", "remaining", "texts_a_call"),
    [
        (None, 10, 60, 8),  # not timed yet: FIRST_CALL texts
        (1e-5, 10, 60, 100),  # fast: CALL_BATCHES batches of 25
        (0.01, 10, 60, 100),  # 100 texts of 10 characters: 10 s, CALL_S
        (0.01, 20, 60, 50),  # longer texts: as many as run in CALL_S
        (0.01, 10, 8.2, 20),  # a deadline 8.2 s away: about 2 s of work
        (0.01, 10_000, 60, 1),  # one text over CALL_S still goes, alone
        (float("nan"), 10, 60, 100),
    ],
)
def test_a_local_call_holds_what_its_model_runs_in_a_few_seconds(
    monkeypatch, seconds_a_char, length, remaining, texts_a_call
):
    from concurrent.futures import Future

    from function import local
    from function.threads import Worker

    assert (local.CALL_S, local.FIRST_CALL, local.CALL_BATCHES) == (10.0, 8, 4)  # as above
    model = local.Model("m", "feature-extraction", None, True, threading.Lock(), Worker("w"))
    model.seconds_a_char = seconds_a_char
    loaded: Future[local.Model] = Future()
    loaded.set_result(model)
    monkeypatch.setitem(local.MODELS._models, ("m", "feature-extraction"), loaded)

    def size(url: str) -> int:
        call = Call(url, {"inputs": "x"}, "m")
        return min(100, local.call_size(call, [length] * 100, 25, Deadline(remaining)))

    assert size("local:/models/m/pipeline/feature-extraction") == texts_a_call
    assert size("local:/models/other/pipeline/feature-extraction") == 8  # not loaded


async def _gathered(recorder: Recorder, texts: list[str], url: str) -> list[Any]:
    coalescer = Coalescer(recorder, batch_size=8)
    calls = [coalescer.post_json(Call(url, {"inputs": t}, "m"), Deadline(5)) for t in texts]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    await coalescer.aclose()
    return answers


@pytest.mark.parametrize("url", [URL, LOCAL_URL])
def test_an_identical_request_is_sent_again_when_its_first_asker_ran_out_of_time(url):
    """Two items with the same text share one request; when the first item's deadline
    (a fallback's share of the time) ends it, the other, with time left, asks again."""

    class Slow(Recorder):
        async def post_json(self, call, deadline):
            self.sent.append(call.payload)
            if deadline.remaining() < 0.3:
                await asyncio.sleep(deadline.remaining())
                error = UpstreamTimeoutError("the deadline came")
                error.out_of_time = True
                raise error
            await asyncio.sleep(0.3)
            return await super().post_json(call, deadline)

    async def main():
        coalescer = Coalescer(Slow(), batch_size=8)
        short = coalescer.post_json(Call(url, {"inputs": "same"}, "m"), Deadline(0.05))
        long = coalescer.post_json(Call(url, {"inputs": "same"}, "m"), Deadline(5))
        answers = await asyncio.gather(short, long, return_exceptions=True)
        await coalescer.aclose()
        return answers

    short, long = asyncio.run(main())
    assert isinstance(short, UpstreamTimeoutError) and short.out_of_time
    assert not isinstance(long, BaseException) and long.attempts == 1  # its own request


@pytest.mark.parametrize("then", ["answered", "cancelled"])
def test_an_identical_request_is_waited_for_only_to_the_asker_s_own_deadline(then):
    """The second asker of a request already sent waits to its own deadline, and ends out of
    time there: neither after the first asker's answer, nor cancelled with it."""

    class Slow(Recorder):
        async def post_json(self, call, deadline):
            await asyncio.sleep(0.5)
            return await super().post_json(call, deadline)

    async def main():
        coalescer = Coalescer(Slow(), batch_size=8)
        first = asyncio.ensure_future(
            coalescer.post_json(Call(LOCAL_URL, {"inputs": "same"}, "m"), Deadline(5))
        )
        await asyncio.sleep(0)
        started = time.monotonic()
        second = asyncio.ensure_future(
            coalescer.post_json(Call(LOCAL_URL, {"inputs": "same"}, "m"), Deadline(0.02))
        )
        if then == "cancelled":
            await asyncio.sleep(0.05)
            first.cancel()
        await asyncio.wait([second])
        ended = time.monotonic() - started
        await asyncio.gather(first, return_exceptions=True)
        await coalescer.aclose()
        return second.exception(), ended

    error, ended = asyncio.run(main())
    assert isinstance(error, UpstreamTimeoutError) and error.out_of_time, error
    assert ended < 0.4  # the shared request takes 0.5 s


def test_texts_whose_deadline_came_while_they_waited_for_the_model_are_not_sent():
    """Texts taken to run after the model's current calls, whose own deadline comes while
    they wait, are not sent when their turn comes."""

    class Busy(Recorder):
        async def post_json(self, call, deadline):
            self.at.append(time.monotonic())
            await asyncio.sleep(0.1)
            return await super().post_json(call, deadline)

    recorder = Busy()
    recorder.at = []

    async def main():
        coalescer = Coalescer(recorder, batch_size=4)

        def ask(text: str, seconds: float):
            call = Call(LOCAL_URL, {"inputs": text}, "m")
            return asyncio.ensure_future(coalescer.post_json(call, Deadline(seconds)))

        short = [ask(f"s{i:02}", 0.05) for i in range(40)]  # the first two calls take 8
        later = [ask(f"later{i}", 5) for i in range(8)]
        results = await asyncio.gather(*short, *later, return_exceptions=True)
        await coalescer.aclose()
        return results

    started = time.monotonic()
    results = asyncio.run(main())
    assert not any(isinstance(r, BaseException) for r in results[40:])
    assert all(isinstance(r, UpstreamTimeoutError) for r in results[:40])
    late = [
        payload["inputs"]
        for payload, at in zip(recorder.sent, recorder.at, strict=True)
        if at - started > 0.05
    ]
    assert late and not [t for texts in late for t in texts if t.startswith("s")], late


def test_closing_before_a_call_is_sent_leaves_no_text_waiting():
    """aclose cancels a send that has not run yet: its texts end cancelled, even with no
    deadline of their own to end them."""

    async def main(turns: int):
        coalescer = Coalescer(Recorder(), batch_size=4)
        call = Call(LOCAL_URL, {"inputs": "hello"}, "m")
        waiting = asyncio.ensure_future(coalescer.post_json(call, Deadline(math.inf)))
        await asyncio.sleep(0.005)  # the runner gathers the first texts this long
        for _ in range(turns):
            await asyncio.sleep(0)
        await coalescer.aclose()
        done, _ = await asyncio.wait([waiting], timeout=1)
        waiting.cancel()
        return bool(done)

    assert all(asyncio.run(main(turns)) for turns in range(4))


def test_a_failure_is_shared_by_the_waiters_but_not_remembered():
    class Failing(Recorder):
        async def post_json(self, call, deadline):
            self.sent.append(call.payload)
            await asyncio.sleep(0.001)
            raise ServerError("boom")

    async def main():
        coalescer = Coalescer(Failing())
        calls = [
            coalescer.post_json(Call(URL, {"inputs": "x"}, "m"), Deadline(5)) for _ in range(3)
        ]
        first = await asyncio.gather(*calls, return_exceptions=True)
        later = coalescer.post_json(Call(URL, {"inputs": "x"}, "m"), Deadline(5))
        again = await asyncio.gather(later, return_exceptions=True)
        return first, again, coalescer.client.sent

    first, again, sent = asyncio.run(main())
    assert all(isinstance(e, ServerError) for e in first + again)
    assert len(sent) == 2  # three waiters shared one request; a later one is sent again


# -- the aiohttp transport ---------------------------------------------------------------------


def test_aiohttp_exceptions_map_to_what_they_are():
    import aiohttp

    from function.transport import remap

    request = httpx.Request("POST", URL)

    def mapped(cause: Exception) -> type:
        wrapped = httpx.ConnectTimeout("as httpx-aiohttp maps it")
        wrapped.__cause__ = cause
        return type(remap(wrapped, request))

    assert mapped(aiohttp.ServerDisconnectedError()) is httpx.RemoteProtocolError
    assert mapped(aiohttp.ClientOSError(104, "reset")) is httpx.ReadError
    assert mapped(aiohttp.ServerTimeoutError()) is httpx.ConnectTimeout
    assert mapped(aiohttp.ClientPayloadError("cut")) is httpx.ReadError
    connector = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
        OSError(111, "refused"),
    )
    assert mapped(connector) is httpx.ConnectError


def test_a_server_that_hangs_up_is_a_connection_failure_not_a_timeout(env, hf):
    """Through real sockets: a reset in a batch (aiohttp) reads as a connection failure."""
    from tests.conftest import invoke
    from tests.fakehf import Reply

    env.setenv("HF_MAX_RETRIES", "0")
    hf.on("/models/facebook/bart-large-mnli", Reply(reset=True))
    summary = invoke({"text": ["a", "b"]}).reply
    errors = {r["error"] for r in summary["results"]}
    assert all(e.startswith("Could not reach the Inference API") for e in errors), errors


def test_the_coalescer_keeps_answers_within_its_byte_budget():
    class Big(Recorder):
        async def post_json(self, call, deadline):
            from function.client import ApiResponse
            from function.envelope import Usage

            self.sent.append(call.payload)
            return ApiResponse([call.payload["inputs"]], Usage(), 1, size=100_000)

    async def main():
        coalescer = Coalescer(Big(), cache_bytes=1_000_000)
        for i in range(50):
            await coalescer.post_json(Call(URL, {"inputs": f"t{i}"}, "m"), Deadline(5))
        return coalescer

    coalescer = asyncio.run(main())
    assert len(coalescer._answers) <= 10 and coalescer._held <= 1_000_000


# -- JSON lines and worker threads -----------------------------------------------------------


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # past 64 bits too: json writes those
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@examples(max_examples=300, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_a_json_line_reads_back_as_the_value_it_was(value, sort_keys):
    line = jsontext.dumps(value, sort_keys=sort_keys)
    assert "\n" not in line
    assert json.loads(line) == value


def test_a_json_line_has_no_nan_and_its_keys_sorted_when_asked():
    assert jsontext.dumps({"b": float("nan"), "a": 1}, sort_keys=True) == '{"a":1,"b":null}'
    assert jsontext.dumps({"b": 2**70, "a": 1}, sort_keys=True) == f'{{"a": 1, "b": {2**70}}}'


def test_a_worker_runs_its_calls_in_turn_on_one_thread_that_ends_when_idle(monkeypatch):
    monkeypatch.setattr(threads, "IDLE_S", 0.2)
    worker = threads.Worker("test-worker")
    seen: list[tuple[int, str]] = []

    def call(i: int) -> int:
        seen.append((i, threading.current_thread().name))
        time.sleep(0.01)
        return i

    async def main() -> list[int]:
        deadline = Deadline(10)
        return await asyncio.gather(
            *(threads.bounded(lambda i=i: call(i), deadline, worker) for i in range(5))
        )

    assert asyncio.run(main()) == list(range(5))
    assert seen == [(i, "test-worker") for i in range(5)]
    time.sleep(0.5)
    assert worker._thread is None  # idle: its thread has ended
    assert asyncio.run(main()) == list(range(5))  # and work starts a new one


def test_a_call_still_waiting_for_its_worker_at_the_deadline_is_dropped():
    worker = threads.Worker("test-worker")
    ran: list[str] = []
    release = threading.Event()

    async def main() -> None:
        first = asyncio.ensure_future(
            threads.bounded(lambda: release.wait(5) and ran.append("first"), Deadline(10), worker)
        )
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            await threads.bounded(lambda: ran.append("late"), Deadline(0.1), worker)
        release.set()
        await first

    asyncio.run(main())
    time.sleep(0.1)
    assert ran == ["first"]


class _Odd:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def get_remaining_time_in_millis(self) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize("answer", [RuntimeError("gone"), 10**400, "soon", None, object()])
def test_a_context_whose_time_left_cannot_be_read_gets_the_default_budget(answer):
    """Whatever a (stand-in) Lambda context answers, the run gets a deadline, not a crash."""
    settings = Settings()
    deadline = Deadline.for_invocation(_Odd(answer), settings)
    assert 0 < deadline.remaining() <= settings.default_budget_s


_CUT_TOKEN = "hf_CutShortTokenAbcdefghijklmnopqrstuv"


@examples(max_examples=300, deadline=None)
@given(
    cut=st.integers(8, len(_CUT_TOKEN)),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
)
def test_a_token_cut_short_in_a_message_is_masked_from_its_start(cut, before, after):
    """An excerpt cut before it was masked (a pipeline's error at 300 characters, a path at
    200) may end inside the token: what is left of it is masked too, wherever it sits."""
    from function.redact import redact, remember

    remember(_CUT_TOKEN)
    shown = redact(before + _CUT_TOKEN[:cut] + after)
    assert _CUT_TOKEN[:8] not in shown
    plain = "pip install hf_transfer; HF_HUB_OFFLINE=1; the token hf_CutS was short"
    assert redact(plain) == plain  # under eight of its characters: nothing to mask
