"""Every failure the API can produce becomes a clear failure envelope, within a 3 s deadline."""

from __future__ import annotations

import pytest

from tests.conftest import TOKEN, invoke
from tests.fakehf import LEGACY_PREFIX, FakeHF, Reply, recorded_reply, recording

MODEL = "facebook/bart-large-mnli"
PATH = f"/models/{MODEL}"
RUN = {"text": "Where is my parcel?", "candidate_labels": ["shipping", "billing"]}
OK = Reply(200, [{"label": "shipping", "score": 0.9}, {"label": "billing", "score": 0.1}])
LOADING = Reply(503, {"error": f"Model {MODEL} is currently loading", "estimated_time": 20.0})
DEADLINE_S = 3.0


def run(hf: FakeHF, *replies: Reply, **inputs):
    hf.on(PATH, *replies)
    invoked = invoke({**RUN, **inputs}, remaining_ms=int(DEADLINE_S * 1000))
    assert invoked.elapsed < DEADLINE_S, f"took {invoked.elapsed:.2f} s"
    envelope = invoked.reply
    assert set(envelope) == {"success", "result", "is_classification", "model", "error"}
    assert envelope["model"] == MODEL
    if not envelope["success"]:
        assert envelope["result"] is None and envelope["is_classification"] is False
        assert isinstance(envelope["error"], str) and envelope["error"]
    assert TOKEN not in str(envelope)
    return envelope, invoked.elapsed


def test_cold_model_is_waited_for(env, hf):
    short = Reply(503, {"error": f"Model {MODEL} is currently loading", "estimated_time": 0.5})
    envelope, _ = run(hf, short, OK)
    assert envelope["success"] and envelope["result"][0]["label"] == "shipping"
    assert len(hf.seen(PATH)) == 2
    assert hf.seen(PATH)[0].headers["x-wait-for-model"] == "true"


def test_cold_model_without_waiting_says_it_is_loading(env, hf):
    envelope, elapsed = run(hf, LOADING, wait_for_model=False)
    assert envelope["error"] == (
        "Model is currently loading. Estimated time: 20 seconds. Try again shortly."
    )
    assert len(hf.seen(PATH)) == 1 and elapsed < 1
    assert "x-wait-for-model" not in hf.seen(PATH)[0].headers


def test_model_still_loading_at_the_deadline(env, hf):
    envelope, elapsed = run(hf, LOADING)
    assert "still loading" in envelope["error"] and "Try again shortly" in envelope["error"]
    assert "Estimated time: 20 seconds" in envelope["error"]
    assert elapsed > 1.0  # it did wait


def test_rate_limit_honours_retry_after(env, hf):
    envelope, elapsed = run(
        hf, Reply(429, {"error": "Too many requests"}, {"Retry-After": "1"}), OK
    )
    assert envelope["success"]
    assert elapsed >= 1.0
    assert len(hf.seen(PATH)) == 2


def test_rate_limit_longer_than_the_deadline_fails_at_once(env, hf):
    envelope, elapsed = run(hf, Reply(429, {"error": "Too many requests"}, {"Retry-After": "60"}))
    assert "Rate limited" in envelope["error"] and "HTTP 429" in envelope["error"]
    assert "Too many requests" in envelope["error"]
    assert elapsed < 1.0 and len(hf.seen(PATH)) == 1


def test_persistent_rate_limit(env, hf):
    envelope, _ = run(hf, Reply(429, {"error": "Too many requests"}))
    assert "HTTP 429" in envelope["error"]
    assert len(hf.seen(PATH)) > 1


@pytest.mark.parametrize("status", [500, 502, 504])
def test_server_errors_are_retried(env, hf, status):
    envelope, _ = run(hf, Reply(status, {"error": "boom"}), Reply(status, "oops"), OK)
    assert envelope["success"]
    assert len(hf.seen(PATH)) == 3


def test_persistent_server_error(env, hf):
    env.setenv("HF_MAX_RETRIES", "2")
    envelope, _ = run(hf, Reply(500, {"error": "Internal failure in the pipeline"}))
    assert envelope["error"] == (
        "The Inference API failed (HTTP 500): Internal failure in the pipeline (after 3 attempts)"
    )
    assert len(hf.seen(PATH)) == 3


def test_slow_answer_times_out_and_is_retried(env, hf):
    env.setenv("HF_REQUEST_TIMEOUT", "0.3")
    envelope, _ = run(hf, Reply(200, OK.body, delay=2.0), OK)
    assert envelope["success"]
    assert len(hf.seen(PATH)) == 2


def test_answer_slower_than_the_deadline(env, hf):
    envelope, elapsed = run(hf, Reply(200, OK.body, delay=10.0))
    assert "timed out" in envelope["error"] or "deadline" in envelope["error"]
    assert elapsed < DEADLINE_S


def test_connection_reset_is_retried(env, hf):
    envelope, _ = run(hf, Reply(reset=True), OK)
    assert envelope["success"]
    assert len(hf.seen(PATH)) == 2


def test_persistent_connection_reset(env, hf):
    envelope, _ = run(hf, Reply(reset=True))
    assert envelope["error"].startswith("Could not reach the Inference API at 127.0.0.1")


def test_nothing_listening(env, hf, monkeypatch):
    hf.stop()
    envelope, _ = run(hf)
    assert envelope["error"].startswith("Could not reach the Inference API at 127.0.0.1")


def test_html_error_page(env, hf):
    page = (
        "<html><head><style>body{color:red}</style><title>502 Bad Gateway</title></head>"
        "<body><h1>502 Bad Gateway</h1><p>cloudfront</p></body></html>"
    )
    env.setenv("HF_MAX_RETRIES", "0")
    envelope, _ = run(hf, Reply(502, page, {"Content-Type": "text/html"}))
    assert envelope["error"] == (
        "The Inference API failed (HTTP 502): non-JSON body (text/html): "
        "502 Bad Gateway 502 Bad Gateway cloudfront"
    )


def test_success_status_with_a_body_that_is_not_json(env, hf):
    envelope, _ = run(
        hf, Reply(200, "<html><body>Hello</body></html>", {"Content-Type": "text/html"})
    )
    assert "HTTP 200 with a body that is not JSON (text/html)" in envelope["error"]


def test_unprocessable_entity_with_a_text_body(env, hf):
    exchange = recording(LEGACY_PREFIX + "unprocessable_entity_error")["exchanges"][0]
    envelope, _ = run(hf, recorded_reply(exchange))
    assert envelope["error"] == (
        "The Inference API rejected the request (HTTP 422): Failed to deserialize the JSON "
        "body into the target type: inputs: invalid type: map, expected a string at line 1 "
        "column 11"
    )
    assert len(hf.seen(PATH)) == 1  # not retried


def test_bad_request_with_a_json_error_list(env, hf):
    envelope, _ = run(hf, Reply(400, {"error": ["candidate_labels must not be empty", "x"]}))
    assert envelope["error"] == (
        "The Inference API rejected the request (HTTP 400): candidate_labels must not be empty; x"
    )


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token(env, hf, status):
    # A server that echoes the credentials it got must not get the token into the envelope.
    echo = {"error": f"Invalid credentials in Authorization header: Bearer {TOKEN}"}
    envelope, _ = run(hf, Reply(status, echo))
    assert f"Hugging Face refused the token (HTTP {status})" in envelope["error"]
    assert "HUGGINGFACE_API_KEY" in envelope["error"]
    assert "Bearer ***" in envelope["error"]
    assert len(hf.seen(PATH)) == 1


def test_model_not_found(env, hf):
    envelope, _ = run(hf, Reply(404, {"error": "Model facebook/bart-large-mnli does not exist"}))
    assert envelope["error"] == (
        "Model 'facebook/bart-large-mnli' was not found, or is not served by this endpoint "
        "(HTTP 404): Model facebook/bart-large-mnli does not exist"
    )


def test_model_gone(env, hf):
    envelope, _ = run(hf, Reply(410, {"error": "no longer supported"}))
    assert envelope["error"] == (
        "Model 'facebook/bart-large-mnli' is no longer served by this endpoint "
        "(HTTP 410): no longer supported"
    )


def test_dead_host_is_refused_before_any_request(env, hf):
    env.setenv("HUGGINGFACE_API_ENDPOINT", "https://api-inference.huggingface.co")
    envelope, elapsed = run(hf)
    assert envelope["error"] == (
        "HUGGINGFACE_API_ENDPOINT points at api-inference.huggingface.co, which Hugging Face "
        "has shut down; use https://router.huggingface.co/hf-inference"
    )
    assert elapsed < 0.5


def test_missing_token_is_refused_before_any_request(env, hf):
    env.delenv("HUGGINGFACE_API_KEY")
    env.setenv("HUGGINGFACE_API_ENDPOINT", "https://router.huggingface.co/hf-inference")
    envelope, elapsed = run(hf)
    assert envelope["error"].startswith("No Hugging Face token: set HUGGINGFACE_API_KEY")
    assert elapsed < 0.5


def test_self_hosted_endpoint_needs_no_token(env, hf):
    env.delenv("HUGGINGFACE_API_KEY")
    envelope, _ = run(hf, OK)
    assert envelope["success"]
    assert "authorization" not in hf.seen(PATH)[0].headers


def test_hf_token_is_accepted_too(env, hf):
    env.delenv("HUGGINGFACE_API_KEY")
    env.setenv("HF_TOKEN", "hf_test_other")
    envelope, _ = run(hf, OK)
    assert envelope["success"]
    assert hf.seen(PATH)[0].headers["authorization"] == "Bearer hf_test_other"


def test_unreadable_answer_shape(env, hf):
    envelope, _ = run(hf, Reply(200, {"unexpected": True}))
    assert envelope["error"] == (
        "The answer does not have the shape of a zero-shot-classification result: "
        "object{unexpected}"
    )


def test_wrong_task_answer_gets_a_hint(env, hf):
    entities = [{"entity_group": "PER", "score": 0.9, "word": "Sarah", "start": 0, "end": 5}]
    envelope, _ = run(hf, Reply(200, entities))
    assert "It looks like a token-classification answer" in envelope["error"]


def test_invalid_setting_names_the_variable(env, hf):
    env.setenv("HF_REQUEST_TIMEOUT", "soon")
    envelope = invoke(RUN).reply
    assert envelope["success"] is False
    assert envelope["error"].startswith("Invalid setting HF_REQUEST_TIMEOUT:")
