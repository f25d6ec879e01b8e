"""One exception hierarchy for everything that can go wrong in a run.

Every error carries a `kind` (for logs, metrics and the trigger's reply) and whether it
is `transient` (worth trying again later). They turn into failure envelopes at one
boundary, `function.job.run_job`.
"""

from __future__ import annotations


class RunJobError(Exception):
    """Base class: a failure that becomes a failure envelope with this message."""

    kind = "error"
    transient = False
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = 0  # requests made before giving up


class InputError(RunJobError):
    """The run inputs (event, run config, CLI flags) are invalid."""

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


class UpstreamError(RunJobError):
    """The Hugging Face API answered with an error, or could not be reached."""

    kind = "upstream"
    http_status = 502

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        # Seconds the server asked us to wait (Retry-After, or a cold model's estimated_time).
        self.retry_after = retry_after


class AuthError(UpstreamError):
    kind = "auth"


class NotFoundError(UpstreamError):
    kind = "not_found"


class BadRequestError(UpstreamError):
    kind = "bad_request"


class BadResponseError(UpstreamError):
    """A 2xx answer we cannot read: not JSON, or not a shape of the task."""

    kind = "bad_response"


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
