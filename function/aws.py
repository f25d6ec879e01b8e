"""AWS calls, bounded by the invocation's deadline.

boto3 is synchronous and a peer can hang (S3, Secrets Manager, SSM, SQS). Each call runs
in a daemon thread that the event loop waits for until the deadline, no longer
(`function.threads.bounded`): a call that
does not answer in time raises `TimeoutError`, and the reply goes out anyway. botocore's
own connect/read timeouts (`HF_AWS_TIMEOUT`) end the thread soon after.

Clients are made once per process (a client costs tens of milliseconds, and a warm Lambda
container runs many invocations); boto3 is imported only when one is asked for.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any


@cache
def aws_client(service: str, timeout_s: float = 10.0) -> Any:
    """A boto3 client, one per service in a process. Made under a lock: boto3's default
    session is not safe for threads that make clients at once."""
    with _MAKING:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
            # S3 links (`report --presign`) signed as AWS signs requests now (SigV4).
            signature_version="s3v4" if service == "s3" else None,
        )
        return boto3.client(service, config=config)


_MAKING = threading.Lock()


def describe(exc: BaseException) -> str:
    """An AWS or OS failure in a few words: the AWS error code and message, or the OS's
    reason. AWS and OS messages never carry a secret's value."""
    if isinstance(exc, TimeoutError):
        return "no answer before the deadline"
    cause = exc.__cause__ if getattr(exc, "response", None) is None and exc.__cause__ else exc
    response = getattr(cause, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip(": ")[:300]
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if isinstance(cause, TimeoutError):
        return "no answer before the deadline"
    return f"{type(cause).__name__}: {cause}"[:300] if str(cause) else type(cause).__name__
