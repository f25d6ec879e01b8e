"""Secrets never leave the process: not in logs, envelopes, records or error text.

The job remembers every token it resolves (`remember`). `redact` replaces them, and anything
shaped like a Hugging Face token or a secret-store value, with `***`. Log output passes
through `RedactingHandler` (the job's own lines) and `RedactFilter` (the root logger's
handlers, which carry botocore's and httpx's DEBUG lines), so a library that logs a
response body cannot show the token either.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

MASK = "***"
_known: set[str] = set()
# Hugging Face tokens (in any case: an error may upper-case what it was given), and the
# values of Secrets Manager / SSM answers as botocore logs them.
_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{20,}", re.IGNORECASE)
# A secret store's answer as botocore logs it (a bytes repr, JSON inside JSON): everything
# after the value's key is masked, whatever escaping it holds.
_STORED_VALUE = re.compile(r'("(?:SecretString|SecretBinary|Value)"\s*:).*', re.S)


def remember(secret: str | None) -> None:
    if secret and len(secret) >= 4:
        _known.add(secret)


_CUT_AT_LEAST = 8  # a known secret cut short (an error's excerpt): masked from this long


def redact(text: str) -> str:
    for secret in _known:
        if secret in text:
            text = text.replace(secret, MASK)
        # A message cut before it was masked may end inside the secret: its start goes too.
        if len(secret) >= 2 * _CUT_AT_LEAST and secret[:_CUT_AT_LEAST] in text:
            text = re.sub(re.escape(secret[:_CUT_AT_LEAST]) + r"[A-Za-z0-9]*", MASK, text)
    return _STORED_VALUE.sub(
        rf'\1 "{MASK}" (the rest of this answer is masked)', _TOKEN_SHAPE.sub(MASK, text)
    )


def redact_value(value: Any) -> Any:
    """A parsed JSON value with the secrets masked in every string (for answers whose text
    had escapes: `\\u0068f_...` is only the token once decoded)."""
    if isinstance(value, str):
        return redact(value) if _known and any(s in value for s in _known) else value
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    return value


def redact_bytes(data: bytes) -> bytes:
    for secret in _known:
        if (raw := secret.encode()) in data:
            data = data.replace(raw, MASK.encode())
    return data


class RedactFilter(logging.Filter):
    """Rewrites a record's message (and its exception text) with the secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the record as it is
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


class RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stderr handler whose every formatted line is redacted. It writes to whatever
    `sys.stderr` is at the time (redirections, test capture); stdout stays for replies."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RedactFilter())

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def guard_root_handlers() -> None:
    """Add the filter to the root logger's handlers (Lambda's own, where library loggers'
    lines end up)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())
