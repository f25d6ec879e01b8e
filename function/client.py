"""HTTP to the Hugging Face Inference API: retries, waiting for cold models, the deadline,
and the mapping of every failure to one `UpstreamError`.

Nothing here knows about tasks: a task gives a URL and a payload (JSON, or an image's or a
sound's bytes) and gets parsed JSON back, or a picture's bytes (see `function.tasks`).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import httpx

from function import __version__, jsontext
from function.envelope import Usage, count, hardware, seconds
from function.errors import (
    AuthError,
    BadRequestError,
    BadResponseError,
    ConnectionFailedError,
    ModelLoadingError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitedError,
    ResponseTooLargeError,
    ServerError,
    UpstreamError,
    UpstreamTimeoutError,
)
from function.redact import redact, redact_bytes, redact_value
from function.settings import Settings

if TYPE_CHECKING:
    from function.limiter import AdaptiveLimiter

log = logging.getLogger(__name__)

LOCAL = "local:"  # the scheme of calls run in this process (`function.local`), not sent
EXCERPT_CHARS = 300
# Do not start an attempt with less time than this left: it could not finish.
MIN_ATTEMPT_S = 0.25
MAX_LOADING_POLL_S = 10.0
MAX_RETRY_AFTER_S = 900.0  # a longer Retry-After is not waited for (SQS can delay 15 min)


class Deadline:
    """A point in time (monotonic) by which the run must have returned."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = clock() + seconds

    @classmethod
    def for_invocation(cls, context: Any, settings: Settings) -> Deadline:
        """The Lambda context's remaining time less a safety margin, else the default budget."""
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining_ms):
            try:
                seconds = float(remaining_ms()) / 1000.0
            except Exception:  # a context we cannot read (a stand-in's): the default budget
                seconds = settings.default_budget_s
            return cls(max(0.0, seconds - settings.deadline_margin_s))
        return cls(settings.default_budget_s)

    def remaining(self) -> float:
        return max(0.0, self.at - self._clock())

    def share(self, parts: int, minimum: float) -> Deadline:
        """One of `parts` equal shares of the time left, at least `minimum`, never later
        than this deadline."""
        share = Deadline(0.0, self._clock)
        remaining = self.remaining()
        share.at = self._clock() + min(remaining, max(minimum, remaining / max(1, parts)))
        return share

    def before(self, seconds: float) -> Deadline:
        """A deadline `seconds` earlier (time kept back to store results and reply)."""
        earlier = Deadline(0.0, self._clock)
        earlier.at = self.at - seconds
        return earlier


@dataclass
class ApiResponse:
    body: Any
    usage: Usage
    attempts: int
    size: int = 0  # bytes of the answer, for caches that keep it
    cached: bool = False  # from the cache across runs: no request was sent


class Access(NamedTuple):
    """On whose behalf a request goes: the bearer token (never in a repr) and, on Hugging
    Face's hosts, the organization that pays (`X-HF-Bill-To`). (Values that live for one
    request are NamedTuples: a frozen dataclass costs a cold start 0.5 ms each.)"""

    token: str | None = None
    bill_to: str | None = None

    def __repr__(self) -> str:
        return f"Access(token={'***' if self.token else None}, bill_to={self.bill_to!r})"


class Call(NamedTuple):
    """One request as a value: where it goes, its payload (JSON, or the raw bytes of an
    image or a sound with their content type), and on whose behalf."""

    url: str
    payload: Any
    model: str  # for messages
    wait_for_model: bool = True
    access: Access = Access()
    # A dedicated endpoint scaled to zero answers 503 while it starts: wait as for a cold model.
    starts_on_503: bool = False
    content_type: str = "application/json"
    cache_s: float = 0.0  # answered from the cache across runs for this long (function.cache)
    # Whether an answer is one the task reads: the cache keeps and serves only those.
    accepts: Callable[[Any], bool] | None = None
    # provider local: a list of texts runs through the model this many at a time.
    batch_size: int = 32


class Fetcher(Protocol):
    """What a task run needs of the API: `HFClient`, or a batch's coalescer in front of it."""

    async def post_json(self, call: Call, deadline: Deadline) -> ApiResponse: ...


@dataclass
class _Attempts:
    """What the retry loop has seen so far, for the final error message."""

    count: int = 0
    waited_s: float = 0.0
    last_status: int | None = None


@dataclass
class Answer:
    """One HTTP answer, read whole (within the size limit), the token masked out of it."""

    status: int
    headers: httpx.Headers
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "no content type").split(";")[0].strip()

    def json(self) -> Any:
        return jsontext.parse(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


@cache
def _ssl_context() -> ssl.SSLContext:
    # Building the default context loads the CA bundle (tens of ms): once per process.
    return httpx.create_ssl_context()


def new_http_client(
    settings: Settings, *, max_connections: int = 10, many: bool = False
) -> httpx.AsyncClient:
    """The HTTP client of a session. Sessions with many requests in flight (batches) use
    aiohttp under httpx: httpx's own pool costs milliseconds of CPU a request there."""
    options: dict[str, Any] = {
        "timeout": httpx.Timeout(settings.request_timeout_s),
        "headers": {"User-Agent": f"hf-run-job/{__version__}", "Accept": "application/json"},
        "follow_redirects": False,
        "trust_env": True,
    }
    if many:
        from function.transport import AiohttpClient

        return AiohttpClient(ssl_context=_ssl_context(), max_connections=max_connections, **options)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(verify=_ssl_context(), limits=limits, **options)


class HFClient:
    """Posts JSON to the Inference API and returns the parsed answer, or raises UpstreamError."""

    def __init__(
        self, settings: Settings, http: httpx.AsyncClient, limiter: AdaptiveLimiter | None = None
    ) -> None:
        self.settings = settings
        self.http = http
        self.limiter = limiter
        self._urls: dict[str, httpx.URL] = {}  # parsed once: parsing costs more than sending

    async def post_json(self, call: Call, deadline: Deadline) -> ApiResponse:
        if call.url.startswith(LOCAL):  # provider: local, in this process
            from function import local

            return await local.post_json(call, self.settings, deadline)
        model = call.model
        headers = {"Content-Type": call.content_type}
        if call.access.token:
            headers["Authorization"] = f"Bearer {call.access.token}"
        if call.access.bill_to:
            headers["X-HF-Bill-To"] = call.access.bill_to
        if call.wait_for_model:
            headers["X-Wait-For-Model"] = "true"
        content = (
            call.payload
            if isinstance(call.payload, bytes)
            else json.dumps(call.payload, ensure_ascii=False).encode()
        )
        seen = _Attempts()
        while True:
            remaining = deadline.remaining()
            if remaining < MIN_ATTEMPT_S:
                raise self._out_of_time(model, seen)
            seen.count += 1
            result = await self._attempt(call, content, headers, deadline, seen)
            if isinstance(result, ApiResponse):
                return result
            delay = self._retry_delay(result, call.wait_for_model, seen, deadline)
            if delay is None:
                raise self._final(result, seen)
            if delay > deadline.remaining() - MIN_ATTEMPT_S:
                raise self._out_of_time(model, seen, result)
            log.info(
                "Retrying model %s in %.2f s after %s (attempt %d)",
                model,
                delay,
                result.kind,
                seen.count,
            )
            seen.waited_s += delay
            await asyncio.sleep(delay)

    async def _attempt(
        self,
        call: Call,
        content: bytes,
        headers: dict[str, str],
        deadline: Deadline,
        seen: _Attempts,
    ) -> ApiResponse | UpstreamError:
        """One request: the parsed answer, or the error it came to."""
        url, model = call.url, call.model
        started = time.monotonic()
        try:
            answer = await self._send(url, content, headers, deadline, retry=seen.count > 1)
        except (httpx.TimeoutException, TimeoutError):
            return UpstreamTimeoutError(
                f"The request for model '{model}' timed out after "
                f"{time.monotonic() - started:.1f} s"
            )
        except httpx.TransportError as exc:
            log.debug("No answer from %s (attempt %d): %s", url, seen.count, type(exc).__name__)
            return ConnectionFailedError(
                f"Could not reach the Inference API at {httpx.URL(url).host}: "
                f"{_describe_transport_error(exc)}"
            )
        except ResponseTooLargeError as exc:
            return exc
        except httpx.DecodingError as exc:  # a corrupt gzip/deflate body: try again
            return ServerError(
                f"Model '{model}' answered with a body that cannot be decoded "
                f"({_describe_transport_error(exc)})"
            )
        log.debug(
            "HTTP %s from %s (attempt %d, %.0f ms)",
            answer.status,
            url,
            seen.count,
            (time.monotonic() - started) * 1000,
        )
        if answer.is_success:
            if answer.content_type.startswith("image/"):  # text-to-image: the picture
                return ApiResponse(answer.content, _usage(answer), seen.count, len(answer.content))
            try:
                body = _read_json(answer, model)
            except BadResponseError as exc:
                return exc
            if b"\\" in answer.content:  # escapes could spell a secret only once decoded
                body = redact_value(body)
            return ApiResponse(body, _usage(answer), seen.count, len(answer.content))
        seen.last_status = answer.status
        return self._error_from_response(answer, call)

    async def _send(
        self, url: str, content: bytes, headers: dict[str, str], deadline: Deadline, *, retry: bool
    ) -> Answer:
        """POST within the deadline; with a limiter, only once a slot is free (the wait
        for it counts against the deadline too)."""
        if self.limiter is None:
            return await self._post(url, content, headers, deadline)
        async with self.limiter.attempt(deadline, retry=retry) as attempt:
            answer = await self._post(url, content, headers, deadline)
            attempt.answered = True
            attempt.overloaded = answer.status in (429, 503)
            return answer

    async def _post(
        self, url: str, content: bytes, headers: dict[str, str], deadline: Deadline
    ) -> Answer:
        """The whole exchange (connect, send, headers, body) under one timeout: the request
        timeout or the time left, whichever is shorter. A peer that trickles its answer
        cannot hold the run past it, nor an endless body grow past the size limit."""
        remaining = deadline.remaining()
        if remaining < MIN_ATTEMPT_S:
            raise httpx.TimeoutException("the run's deadline came before the request was sent")
        timeout = min(self.settings.request_timeout_s, remaining)
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = httpx.URL(url)
        async with asyncio.timeout(timeout):
            request = self.http.build_request(
                "POST", parsed, content=content, headers=headers, timeout=timeout
            )
            response = await self.http.send(request, stream=True)
            try:
                body = await self._read_body(response)
            finally:
                await response.aclose()
        return Answer(response.status_code, response.headers, body)

    async def _read_body(self, response: httpx.Response) -> bytes:
        limit = self.settings.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLargeError(
                f"The answer is {int(declared):,} bytes, over the limit of {limit:,} "
                "(HF_MAX_RESPONSE_BYTES)",
                status=response.status_code,
            )
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise ResponseTooLargeError(
                    f"The answer grew past the limit of {limit:,} bytes (HF_MAX_RESPONSE_BYTES)",
                    status=response.status_code,
                )
        return redact_bytes(bytes(body))

    # -- retry policy ---------------------------------------------------------------------

    def _retry_delay(
        self, error: UpstreamError, wait_for_model: bool, seen: _Attempts, deadline: Deadline
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if not error.transient:
            return None
        if isinstance(error, ModelLoadingError):
            if not wait_for_model:
                return None
            # Waiting for a cold model is bounded by the deadline, not by max_retries. The
            # estimate is often pessimistic: poll at most every 10 s, and once more just
            # before the deadline rather than giving up early.
            wanted = min(max(error.retry_after or 1.0, 1.0), MAX_LOADING_POLL_S)
            last_chance = deadline.remaining() - 2 * MIN_ATTEMPT_S
            return min(wanted, last_chance) if last_chance >= MIN_ATTEMPT_S else wanted
        if seen.count > self.settings.max_retries:
            return None
        if error.retry_after is not None:
            # Asked to wait longer than anyone would: give up now (and say how long).
            return error.retry_after if error.retry_after <= MAX_RETRY_AFTER_S else None
        return self._backoff(seen.count)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter."""
        ceiling = min(
            self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1)
        )
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _final(self, error: UpstreamError, seen: _Attempts) -> UpstreamError:
        if seen.count > 1 and error.transient:
            error.message += f" (after {seen.count} attempts)"
            error.args = (error.message,)
        error.attempts = seen.count
        return error

    def _out_of_time(
        self, model: str, seen: _Attempts, last: UpstreamError | None = None
    ) -> UpstreamError:
        error = self._deadline_error(model, seen, last)
        error.attempts = seen.count
        error.out_of_time = True
        return error

    def _deadline_error(
        self, model: str, seen: _Attempts, last: UpstreamError | None
    ) -> UpstreamError:
        if isinstance(last, ModelLoadingError):
            estimate = last.retry_after
            eta = f" Estimated time: {estimate:.0f} seconds." if estimate else ""
            return ModelLoadingError(
                f"Model '{model}' is still loading after waiting {seen.waited_s:.0f} s, and the "
                f"run's deadline has come.{eta} Try again shortly.",
                status=503,
            )
        detail = f" The last error: {last.message}" if last else ""
        return UpstreamTimeoutError(
            f"The run's deadline came before model '{model}' answered "
            f"({seen.count} attempt{'s' if seen.count != 1 else ''}).{detail}",
            status=seen.last_status,
        )

    # -- error mapping --------------------------------------------------------------------

    def _error_from_response(self, response: Answer, call: Call) -> UpstreamError:
        status, model = response.status, call.model
        message = _api_message(response)
        said = f": {message}" if message else ""
        if status in (401, 403):
            return AuthError(
                f"Hugging Face refused the token (HTTP {status}){said}. "
                "Check HUGGINGFACE_API_KEY: it must be a valid token with the "
                "'Make calls to Inference Providers' permission.",
                status=status,
            )
        if status == 402:
            return PaymentRequiredError(
                f"The Hugging Face account's credits are used up (HTTP 402){said.rstrip('.')}. Add "
                "credits or a payment method at https://huggingface.co/settings/billing, or "
                "set HF_BILL_TO to an organization that pays.",
                status=status,
            )
        if status in (400, 404) and _not_served_by_provider(message):
            # The router says 400 (sometimes 404) when no enabled provider serves the model:
            # another model or provider could, so it counts as "not found" (fallback moves on).
            _, colon, provider = model.partition(":")
            advice = (
                f"Provider '{provider}' does not serve model '{model.partition(':')[0]}', or it "
                "is not enabled for this account. Enable it at "
                "https://huggingface.co/settings/inference-providers, or name another provider "
                "(a model suffix such as ':together', or provider: 'auto')"
                if colon
                else f"Model '{model}' is not served by any provider you have enabled. Enable "
                "one at https://huggingface.co/settings/inference-providers, or name one "
                "(provider: 'groq', or a model suffix such as ':together')"
            )
            return NotFoundError(f"{advice} (HTTP {status}){said.rstrip('.')}.", status=status)
        if status == 404:
            return NotFoundError(
                f"Model '{model}' was not found, or is not served by this endpoint "
                f"(HTTP 404){said}",
                status=status,
            )
        if status == 410:
            return NotFoundError(
                f"Model '{model}' is no longer served by this endpoint (HTTP 410){said}",
                status=status,
            )
        retry_after = _parse_retry_after(response.headers.get("Retry-After"))
        if status == 429:
            return RateLimitedError(
                f"Rate limited by the Inference API (HTTP 429){said}",
                status=status,
                retry_after=retry_after,
            )
        if status == 503:
            estimate = _estimated_time(response)
            if call.starts_on_503 and estimate is None:
                return ModelLoadingError(
                    f"The endpoint for model '{model}' is starting (HTTP 503){said}. "
                    "Try again shortly.",
                    status=status,
                    retry_after=retry_after,
                )
            if estimate is not None or "loading" in message.lower():
                return ModelLoadingError(
                    f"Model is currently loading. Estimated time: {estimate or 0:.0f} seconds. "
                    "Try again shortly.",
                    status=status,
                    retry_after=estimate,
                )
        if status >= 500:
            return ServerError(
                f"The Inference API failed (HTTP {status}){said}",
                status=status,
                retry_after=retry_after,
            )
        if status in (400, 413, 422):
            return BadRequestError(
                f"The Inference API rejected the request (HTTP {status}){said}", status=status
            )
        return UpstreamError(
            f"Unexpected answer from the Inference API (HTTP {status}){said}", status=status
        )


def _not_served_by_provider(message: str) -> bool:
    """The router's "not supported by any provider you have enabled" / "Model not supported
    by provider X" answers."""
    lowered = message.lower()
    return "provider" in lowered and ("not supported" in lowered or "not served" in lowered)


def _read_json(response: Answer, model: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        reason = "not JSON" if "not valid" in str(exc) else str(exc)
        text = response.text
        if "html" in response.content_type or text.lstrip().startswith("<"):
            text = _strip_html(text)
        raise BadResponseError(
            f"Model '{model}' answered HTTP {response.status} with a body that is {reason} "
            f"({response.content_type}): {_excerpt(text)}",
            status=response.status,
        ) from None


def _api_message(response: Answer) -> str:
    """The API's own words: `error`/`message`/`detail` of a JSON body, else a text excerpt."""
    try:
        body = response.json()
    except ValueError:
        text = response.text
        if "html" in response.content_type or text.lstrip().startswith("<"):
            text = _strip_html(text)
            return f"non-JSON body ({response.content_type}): {_excerpt(text)}" if text else ""
        return _excerpt(text)
    if isinstance(body, dict):
        for key in ("error", "message", "detail", "errors"):
            value = body.get(key)
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                value = value["message"]  # OpenAI-style: {"error": {"message", "type"}}
            if value:
                if isinstance(value, list):
                    value = "; ".join(str(v) for v in value)
                return _excerpt(str(value))
    return _excerpt(json.dumps(body))


def _estimated_time(response: Answer) -> float | None:
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get("estimated_time") if isinstance(body, dict) else None
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _usage(response: Answer) -> Usage:
    headers = response.headers
    return Usage(
        characters=count(headers.get("x-compute-characters")),
        compute_time_s=seconds(headers.get("x-compute-time")),
        compute_type=_not_a_secret(hardware(headers.get("x-compute-type"))),
        provider=_provider(headers.get("x-inference-provider")),
    )


def _not_a_secret(value: str | None) -> str | None:
    """A header value kept for the records, unless it holds a key the job knows (a server
    may echo the bearer token it was sent, an endpoint's own key included)."""
    from function.redact import redact

    return value if value is None or redact(value) == value else None


# Provider names are lowercase words joined by `-` (groq, fireworks-ai, hf-inference).
_PROVIDER_HEADER = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _provider(value: str | None) -> str | None:
    """The provider the router names, if it is a name: never an arbitrary header value, and
    never a secret a server echoes there."""
    if not value or len(value) > 40 or not _PROVIDER_HEADER.fullmatch(value):
        return None
    return value if redact(value) == value else None


_TAGS = re.compile(r"<(script|style)[^>]*>.*?</\1>|<[^>]+>", re.S | re.I)


def _strip_html(text: str) -> str:
    return " ".join(_TAGS.sub(" ", text).split())


def _excerpt(text: str) -> str:
    """A short, one-line excerpt, secrets masked before it is cut (a cut secret would
    no longer be recognized)."""
    text = " ".join(redact(text).split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."


def _describe_transport_error(exc: httpx.HTTPError) -> str:
    name = exc.__class__.__name__
    return _excerpt(f"{name}: {exc}" if str(exc) else name)
