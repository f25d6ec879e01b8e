"""The token never appears in logs (at DEBUG), envelopes, replies or error text."""

from __future__ import annotations

import json
import logging

import pytest

from function.settings import load_settings
from tests.conftest import TOKEN, invoke
from tests.fakehf import Reply

PATH = "/models/facebook/bart-large-mnli"
ECHO = {"error": f"bad token Bearer {TOKEN}", "estimated_time": 0.1}


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
def test_token_stays_secret(env, hf, debug_logs, replies):
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    logging.getLogger("httpcore").setLevel(logging.DEBUG)
    hf.on(PATH, *replies)
    event = {"requestContext": {}, "body": json.dumps({"text": "x"})}
    reply = invoke(event).reply
    assert hf.requests, "the request was made"
    assert TOKEN not in json.dumps(reply)
    assert debug_logs.records, "debug logging was captured"
    for record in debug_logs.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in str(record.__dict__)
    assert TOKEN not in debug_logs.text


def test_settings_do_not_show_the_token(env):
    settings = load_settings()
    assert settings.token == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
