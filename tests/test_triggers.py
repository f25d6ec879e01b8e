"""Each trigger's event (real samples in events/) becomes run inputs, and gets its reply."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import ROOT, invoke, load_event
from tests.fakehf import FakeHF, Reply

DEFAULT = json.loads((ROOT / "run_config" / "default.json").read_text())
PATH = f"/models/{DEFAULT['model']}"
OK = Reply(200, [{"label": "billing", "score": 0.8}, {"label": "shipping", "score": 0.2}])


def sent(hf: FakeHF) -> dict:
    (request,) = hf.seen(PATH)
    return request.json


def test_direct_invoke_overrides_the_run_config(env, hf):
    hf.on(PATH, OK)
    envelope = invoke({"text": "Refund please", "candidate_labels": "billing, shipping"}).reply
    assert envelope["success"] and envelope["result"][0] == {"label": "billing", "score": 0.8}
    assert sent(hf) == {
        "inputs": "Refund please",
        "parameters": {"candidate_labels": ["billing", "shipping"]},
    }


def test_scheduled_event_runs_the_run_config(env, hf):
    hf.on(PATH, OK)
    envelope = invoke(load_event("scheduled-event.json")).reply
    assert envelope["success"] and envelope["model"] == DEFAULT["model"]
    assert sent(hf) == {
        "inputs": DEFAULT["text"],
        "parameters": {"candidate_labels": DEFAULT["candidate_labels"]},
    }


def test_eventbridge_detail_overrides_the_run_config(env, hf):
    hf.on(PATH, OK)
    event = load_event("scheduled-event.json")
    event["detail-type"] = "Ticket Created"
    event["source"] = "helpdesk"
    event["detail"] = {"text": "My card was charged twice", "parameters": {"multi_label": True}}
    envelope = invoke(event).reply
    assert envelope["success"]
    assert sent(hf) == {
        "inputs": "My card was charged twice",
        "parameters": {"candidate_labels": DEFAULT["candidate_labels"], "multi_label": True},
    }


def test_eventbridge_detail_must_be_an_object(env, hf):
    event = load_event("scheduled-event.json")
    event["detail"] = ["not", "an", "object"]
    envelope = invoke(event).reply
    assert envelope["error"] == "detail: expected an object of run inputs, not an array"
    assert hf.requests == []


def test_scheduler_input_is_passed_through_as_run_inputs(env, hf):
    hf.on(PATH, OK)
    event = load_event("scheduler-input.json")
    envelope = invoke(event).reply
    assert envelope["success"]
    assert sent(hf)["inputs"] == event["text"]


def test_function_url_request_gets_an_http_response(env, hf):
    hf.on(PATH, OK)
    event = load_event("function-url.json")  # base64 body: text + comma-separated labels
    reply = invoke(event).reply
    assert reply["statusCode"] == 200
    assert reply["headers"]["Content-Type"] == "application/json"
    envelope = json.loads(reply["body"])
    assert envelope["success"] and envelope["is_classification"]
    assert sent(hf) == {
        "inputs": "My invoice is wrong",
        "parameters": {"candidate_labels": ["billing", "shipping"]},
    }


def _http(body: str | None, *, b64: bool = False, query: dict | None = None) -> dict:
    event = load_event("function-url.json")
    event["queryStringParameters"] = query
    event["isBase64Encoded"] = b64
    if body is None:
        event.pop("body")
    else:
        event["body"] = base64.b64encode(body.encode()).decode() if b64 else body
    return event


def test_function_url_plain_json_body(env, hf):
    hf.on(PATH, OK)
    reply = invoke(_http(json.dumps({"text": "Where is my parcel?"}))).reply
    assert reply["statusCode"] == 200
    assert sent(hf)["inputs"] == "Where is my parcel?"


def test_function_url_query_string_without_body(env, hf):
    hf.on(PATH, OK)
    reply = invoke(_http(None, query={"text": "Late delivery", "wait_for_model": "false"})).reply
    assert reply["statusCode"] == 200
    assert sent(hf)["inputs"] == "Late delivery"
    assert "x-wait-for-model" not in hf.seen(PATH)[0].headers


@pytest.mark.parametrize(
    ("body", "b64", "message"),
    [
        ("{not json", False, "The request body is not valid JSON (line 1, column 2)"),
        ("[1, 2]", False, "The request body must be a JSON object of run inputs, not an array"),
        ("%%%", True, None),
        (json.dumps({"model": "../../admin"}), False, "Invalid input: model:"),
        (json.dumps({"txet": "typo"}), False, "unknown input field(s): 'txet' (did you mean"),
    ],
)
def test_function_url_bad_request_is_400(env, hf, body, b64, message):
    event = _http(body, b64=b64)
    if body == "%%%":
        event["body"] = "%%%"  # not base64 at all
        message = "The request body is not valid base64 UTF-8"
    reply = invoke(event).reply
    assert reply["statusCode"] == 400
    assert json.loads(reply["body"])["error"].startswith(message)
    assert hf.requests == []


@pytest.mark.parametrize(
    ("upstream", "status"),
    [
        (Reply(401, {"error": "Invalid credentials"}), 502),
        (Reply(404, {"error": "Not found"}), 502),
        (Reply(500, {"error": "boom"}), 502),
        (Reply(200, OK.body, delay=10), 504),
    ],
)
def test_function_url_upstream_failures(env, hf, upstream, status):
    env.setenv("HF_MAX_RETRIES", "0")
    hf.on(PATH, upstream)
    reply = invoke(_http(json.dumps({"text": "x"}))).reply
    assert reply["statusCode"] == status
    assert json.loads(reply["body"])["success"] is False


def test_function_url_missing_token_is_a_server_error(env, hf):
    env.delenv("HUGGINGFACE_API_KEY")
    env.setenv("HUGGINGFACE_API_ENDPOINT", "https://router.huggingface.co/hf-inference")
    reply = invoke(_http(json.dumps({"text": "x"}))).reply
    assert reply["statusCode"] == 500
    assert "HUGGINGFACE_API_KEY" in json.loads(reply["body"])["error"]


def test_empty_event_runs_the_run_config(env, hf):
    hf.on(PATH, OK)
    assert invoke(None).reply["success"]
    assert invoke({}).reply["success"]


@pytest.mark.parametrize("event", [[1, 2], "run", 42, True])
def test_event_that_is_not_an_object(env, hf, event):
    envelope = invoke(event).reply
    assert envelope["success"] is False
    assert envelope["error"].startswith("The event must be a JSON object of run inputs, not ")


def test_sqs_batch_goes_back_to_the_queue_when_settings_are_invalid(env, hf):
    env.setenv("HF_REQUEST_TIMEOUT", "soon")
    event = load_event("sqs-receive-message.json")
    event["Records"][0]["body"] = json.dumps({"text": "x"})
    reply = invoke(event).reply
    assert reply == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert hf.requests == []


def test_importing_the_handler_leaves_the_aws_batch_and_local_paths_unloaded():
    import subprocess
    import sys

    probe = (
        "import sys, handler; print(sorted(m for m in sys.modules if m.split('.')[0] == 'boto3'"
        " or m.split('.')[0] in ('torch', 'transformers', 'sentence_transformers',"
        " 'huggingface_hub', 'numpy')"
        " or m in ('function.batch', 'function.limiter', 'function.secrets_backend',"
        " 'function.local')"
        " or m.startswith(('aws_lambda_powertools.utilities.parameters',"
        " 'aws_lambda_powertools.utilities.batch'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]"


def test_an_event_item_that_is_not_usable_json_is_named():
    """An event that arrived parsed (a direct invoke) is refused whole when a string in it
    is not Unicode, and the message says which item holds it."""
    from function.triggers import read_event

    (request,) = read_event({"items": [{"text": "ok"}, {"id": 7, "text": "bad \ud800"}]}).requests
    assert request.problem is not None
    assert request.problem.message == (
        "The event is not usable JSON: a string holds a lone surrogate (not Unicode) (in items[1])"
    )
    (request,) = read_event({"system": "\udfff", "items": ["a"]}).requests
    assert request.problem is not None and request.problem.message.endswith("(in system)")
