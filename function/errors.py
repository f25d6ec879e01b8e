"""One exception hierarchy for everything that can go wrong in a run.

    RunJobError                  kind      transient  HTTP
    ├── InputError               invalid_input  no    400   the event, run config or flags
    ├── ConfigError              config        yes    500   token, secret, settings
    ├── StorageError             storage       yes    500   results, outputs, continuations
    ├── MediaFetchError          media_fetch   yes    502   an image/audio URL failed
    ├── BudgetError              budget        yes    429   a daily budget is used up
    └── UpstreamError            upstream       no    502   the API answered an error
        ├── AuthError            auth           no          401 / 403
        ├── PaymentRequiredError payment_required no        402: credits used up
        ├── NotFoundError        not_found      no          404 / 410
        ├── BadRequestError      bad_request    no          400 / 413 / 422
        ├── BadResponseError     bad_response   no          a 2xx we cannot read
        │   └── ResponseTooLargeError  too_large no         over HF_MAX_RESPONSE_BYTES
        ├── RateLimitedError     rate_limited  yes          429
        ├── ModelLoadingError    model_loading yes          503 + estimated_time
        ├── ServerError          server_error  yes          5xx
        ├── UpstreamTimeoutError timeout       yes    504   no answer in time
        ├── ConnectionFailedError connection   yes          refused, reset, DNS
        └── LocalModelError      local_model    no          provider local: not cached,
            │                                               too large, damaged
            └── LocalRunError    local_model    no          its pipeline failed on the inputs

Every error carries a `kind` (logs, metrics, records), whether it is `transient` (a queue
should try the work again later) and the HTTP status a Function URL answers with. They
become failure envelopes at one boundary (`function.lifecycle`); whether a queued message
goes back is decided there too, from `transient` alone. `out_of_time` marks an error that
the invocation's deadline caused: a batch continues that item instead of failing it.
"""

from __future__ import annotations


class RunJobError(Exception):
    """Base class: a failure that becomes a failure envelope with this message."""

    kind = "error"
    transient = False
    http_status = 500

    def __init__(self, message: str, *, out_of_time: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = 0  # requests made before giving up
        self.out_of_time = out_of_time  # the deadline, not the work, ended it
        self.tried: list[dict[str, object]] | None = None  # a fallback chain's alternates


class InputError(RunJobError):
    """The run inputs (event, run config, CLI flags, batch lines) are invalid."""

    kind = "invalid_input"
    http_status = 400


class ConfigError(RunJobError):
    """The deployment is misconfigured: a missing token, a bad endpoint, an unreadable secret.

    Transient in the sense that matters for queues: once the deployment is fixed, the same
    inputs will work, so queued messages go back to the queue (and on to its DLQ).
    """

    kind = "config"
    transient = True
    http_status = 500


class StorageError(RunJobError):
    """Records, outputs or continuations could not be read or written (a full disk, a bad
    path, S3 refusing or hanging). Transient: nothing was lost if the work is run again."""

    kind = "storage"
    transient = True
    http_status = 500


class UpstreamError(RunJobError):
    """The Hugging Face API answered with an error, or could not be reached."""

    kind = "upstream"
    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        out_of_time: bool = False,
    ) -> None:
        super().__init__(message, out_of_time=out_of_time)
        self.status = status
        # Seconds the server asked us to wait (Retry-After, or a cold model's estimated_time).
        self.retry_after = retry_after


class AuthError(UpstreamError):
    kind = "auth"


class PaymentRequiredError(UpstreamError):
    """402: the account's credits are used up. Permanent until someone pays."""

    kind = "payment_required"


class NotFoundError(UpstreamError):
    kind = "not_found"


class BadRequestError(UpstreamError):
    kind = "bad_request"


class BadResponseError(UpstreamError):
    """A 2xx answer we cannot read: not JSON, or not a shape of the task."""

    kind = "bad_response"


class ResponseTooLargeError(BadResponseError):
    """An answer over the size limit: refused from its Content-Length, or cut off."""

    kind = "too_large"


class RateLimitedError(UpstreamError):
    kind = "rate_limited"
    transient = True


class ModelLoadingError(UpstreamError):
    kind = "model_loading"
    transient = True


class ServerError(UpstreamError):
    kind = "server_error"
    transient = True


class UpstreamTimeoutError(UpstreamError):
    kind = "timeout"
    transient = True
    http_status = 504


class ConnectionFailedError(UpstreamError):
    kind = "connection"
    transient = True


class MediaFetchError(RunJobError):
    """An image or audio URL could not be fetched (it failed, or answered an error):
    perhaps for now, so the run may be tried again."""

    kind = "media_fetch"
    transient = True
    http_status = 502


class BudgetError(RunJobError):
    """The run config's daily budget is used up: the run did not start. Transient: a
    queued run goes back to its queue (and on to its DLQ, to redrive another day)."""

    kind = "budget"
    transient = True
    http_status = 429


class LocalModelError(UpstreamError):
    """`provider: local`: the model is not in the cache, too large, damaged, or its
    pipeline failed. Permanent: the same model fails the same way until someone acts."""

    kind = "local_model"


class LocalRunError(LocalModelError):
    """`provider: local`: the pipeline failed on these inputs. A batch splits a list of texts
    that fails so, to find the item at fault (`function.coalescer`)."""
