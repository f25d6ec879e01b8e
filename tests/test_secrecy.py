"""The token never appears in logs (at DEBUG), envelopes, replies or error text."""

from __future__ import annotations

import json
import logging

import pytest

from function.observability import configure_logging
from function.settings import load_settings
from tests.conftest import TOKEN, invoke
from tests.fakehf import Reply

PATH = "/models/facebook/bart-large-mnli"
ECHO = {"error": f"bad token Bearer {TOKEN}", "estimated_time": 0.1}


@pytest.fixture
def everything_at_debug():
    configure_logging()  # before lowering the level: it sets the job's loggers up once
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore", "function")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


@pytest.mark.parametrize(
    "replies",
    [
        [Reply(200, [{"label": "a", "score": 1.0}])],
        [Reply(401, ECHO)],
        [Reply(403, f"<html>{TOKEN}</html>", {"Content-Type": "text/html"})],
        [Reply(500, ECHO), Reply(503, ECHO), Reply(200, [{"label": "a", "score": 1.0}])],
        [Reply(422, f"token {TOKEN} rejected")],
        [Reply(429, ECHO, {"Retry-After": "0"})],
        [Reply(200, f"not json {TOKEN}")],
        [Reply(reset=True)],
    ],
)
def test_token_stays_secret(env, hf, debug_logs, capfd, everything_at_debug, replies):
    hf.on(PATH, *replies)
    event = {"requestContext": {}, "body": json.dumps({"text": "x"})}
    reply = invoke(event).reply
    assert hf.requests, "the request was made"
    assert TOKEN not in json.dumps(reply)
    # The library loggers (caplog) and the job's own JSON log lines (stderr).
    assert debug_logs.records, "debug logging was captured"
    for record in debug_logs.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in str(record.__dict__)
    out, err = capfd.readouterr()
    job_lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(line["message"] == "Run finished" for line in job_lines)
    assert any(line["level"] == "DEBUG" for line in job_lines)
    assert TOKEN not in out and TOKEN not in err


def test_settings_do_not_show_the_token(env):
    settings = load_settings()
    assert settings.env_token == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
