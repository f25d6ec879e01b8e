"""LLMs through the router's Inference Providers: the route, the provider suffix, chat
inputs, parameters, JSON answers, usage, and the router's own failures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import TOKEN, invoke
from tests.fakehf import FakeHF, Reply, Seen, recorded_reply, recording
from tests.schemas import assert_valid
from tests.test_edges import sqs_event, stored

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def chat_answer(content: str = "Deep learning is...", **extra: Any) -> dict[str, Any]:
    return {
        "object": "chat.completion",
        "model": LLAMA,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46},
        **extra,
    }


def chat(hf: FakeHF, *replies: Reply, **inputs: Any) -> dict[str, Any]:
    hf.on_chat(*(replies or (Reply(200, chat_answer()),)))
    return invoke({"model": LLAMA, "task": "text-generation", "text": "Hi", **inputs}).reply


def sent(hf: FakeHF) -> Seen:
    (request,) = hf.chats()
    assert_valid("chat-completion", "input", request.json)
    return request


def test_text_generation_goes_to_the_router_with_the_chat_body(env, hf):
    envelope = chat(hf)
    assert envelope == {
        "success": True,
        "result": {"generated_text": "Deep learning is..."},
        "is_classification": False,
        "model": LLAMA,
        "error": None,
    }
    request = sent(hf)
    assert request.json == {
        "model": LLAMA,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": False,
    }
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert [r.path for r in hf.requests] == ["/v1/chat/completions"]


PROVIDERS = ["groq", "together", "novita", "fireworks-ai", "hf-inference", "fastest", "cheapest"]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("how", ["provider field", "model suffix"])
def test_every_provider_and_policy_is_sent_as_the_model_suffix(env, hf, provider, how):
    inputs = {"provider": provider} if how == "provider field" else {"model": f"{LLAMA}:{provider}"}
    envelope = chat(hf, **inputs)
    assert envelope["success"], envelope["error"]
    request = sent(hf)
    assert request.json["model"] == f"{LLAMA}:{provider}"
    assert request.path == "/v1/chat/completions"  # the suffix never reaches the path


def test_auto_lets_the_router_pick(env, hf):
    assert chat(hf, provider="auto")["success"]
    assert sent(hf).json["model"] == LLAMA


def test_a_provider_suffix_implies_text_generation_over_the_default_run_config(env, hf):
    hf.on_chat(Reply(200, chat_answer()))
    envelope = invoke({"model": f"{LLAMA}:groq", "text": "Hi"}).reply  # config: zero-shot
    assert envelope["success"], envelope["error"]
    assert sent(hf).json["model"] == f"{LLAMA}:groq"


@pytest.mark.parametrize(
    "inputs, expected",
    [
        ({"provider": "gro q"}, "provider: 'gro q' is not a provider name"),
        ({"provider": "groq/../x"}, "is not a provider name"),
        ({"provider": "-groq"}, "is not a provider name"),
        ({"model": f"{LLAMA}:groq?x=1"}, "is not a Hugging Face model id"),
        ({"model": f"{LLAMA}:/v2"}, "is not a Hugging Face model id"),
        ({"model": f"{LLAMA}:groq", "provider": "together"}, "names provider 'groq'"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages.0.content"),
        ({"messages": []}, "messages: "),
        ({"messages": [{"role": "user", "content": "x"}], "system": "s"}, "not both"),
        ({"provider": "groq", "endpoint": "mine"}, "cannot both be given"),
    ],
)
def test_bad_chat_inputs_are_refused_before_any_request(env, hf, inputs, expected):
    envelope = chat(hf, **inputs)
    assert envelope["success"] is False
    assert envelope["error"].startswith("Invalid input: ")
    assert expected in envelope["error"], envelope["error"]
    assert hf.requests == []


@pytest.mark.parametrize(
    "inputs, expected",
    [
        ({"model": "facebook/bart-large-mnli:groq"}, "provider suffix is for text-generation"),
        ({"provider": "groq"}, "'groq' serves text-generation here"),
        ({"system": "Be brief."}, "system is only used by text-generation"),
    ],
)
def test_providers_and_chat_inputs_belong_to_text_generation(env, hf, inputs, expected):
    envelope = invoke(
        {"model": "facebook/bart-large-mnli", "task": "zero-shot-classification", **inputs}
    ).reply
    assert envelope["success"] is False
    assert expected in envelope["error"], envelope["error"]
    assert hf.requests == []


def test_system_prompt_and_messages(env, hf):
    assert chat(hf, system="Be brief.")["success"]
    assert sent(hf).json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    hf.requests.clear()
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "What is deep learning?"},
    ]
    hf.on_chat(Reply(200, chat_answer()))
    # The run config's text gives way to the event's conversation.
    envelope = invoke({"model": LLAMA, "messages": conversation}).reply
    assert envelope["success"], envelope["error"]
    assert sent(hf).json["messages"] == conversation


def test_parameters_pass_through_and_max_new_tokens_is_max_tokens(env, hf):
    parameters = {
        "max_new_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
    }
    assert chat(hf, parameters=parameters)["success"]
    body = sent(hf).json
    assert {k: body[k] for k in ("max_tokens", "temperature", "top_p", "stop", "seed")} == {
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
    }
    assert "max_new_tokens" not in body


JSON_FORMATS = [
    {"type": "json_object"},
    {"type": "json_schema", "json_schema": {"name": "ticket", "schema": {"type": "object"}}},
]


@pytest.mark.parametrize("response_format", JSON_FORMATS, ids=lambda f: f["type"])
def test_a_json_answer_is_parsed_into_the_result(env, hf, response_format):
    text = '{"team": "billing", "urgent": true}'
    envelope = chat(
        hf, Reply(200, chat_answer(text)), parameters={"response_format": response_format}
    )
    assert envelope["success"], envelope["error"]
    assert envelope["result"] == {
        "generated_text": text,
        "json": {"team": "billing", "urgent": True},
    }
    assert_valid("text-generation", "output", envelope["result"])
    assert sent(hf).json["response_format"] == response_format


def test_a_token_escaped_inside_the_json_text_never_shows(env, hf, tmp_path):
    escaped = "".join(f"\\u{ord(c):04x}" for c in TOKEN)  # JSON escapes inside the text
    text = '{"echo": "' + escaped + '"}'
    envelope = chat(
        hf, Reply(200, chat_answer(text)), parameters={"response_format": JSON_FORMATS[0]}
    )
    assert envelope["success"], envelope["error"]
    assert envelope["result"]["json"] == {"echo": "***"}
    assert TOKEN not in json.dumps(envelope)
    assert all(TOKEN not in json.dumps(record) for record in stored(tmp_path))


@pytest.mark.parametrize("response_format", JSON_FORMATS, ids=lambda f: f["type"])
def test_an_answer_that_is_not_the_json_asked_for_fails_clearly(env, hf, response_format):
    envelope = chat(
        hf,
        Reply(200, chat_answer("Sure! The team is billing.")),
        parameters={"response_format": response_format},
    )
    assert envelope["success"] is False
    assert "was asked for JSON (response_format) but its text is not JSON" in envelope["error"]
    assert "Sure! The team is billing." in envelope["error"]


def test_the_recorded_response_format_exchange_replays_with_its_json(env, hf):
    exchange = recording(
        "legacy-api-inference__InferenceClientVCRTest.test_chat_completion_with_response_format"
    )["exchanges"][0]
    recorded = json.loads(exchange["request"]["body"])
    hf.on_chat(recorded_reply(exchange))
    envelope = invoke(
        {
            "model": recorded["model"],
            "messages": recorded["messages"],
            "parameters": {"response_format": recorded["response_format"], "max_tokens": 500},
        }
    ).reply
    assert envelope["success"], envelope["error"]
    assert envelope["result"]["json"]["animals"] == ["puppy", "cat", "raccoon"]


def test_usage_and_the_provider_that_served_are_kept(env, hf, tmp_path):
    reply = Reply(200, chat_answer(), {"x-inference-provider": "together"})
    assert chat(hf, reply, provider="fastest")["success"]
    (record,) = stored(tmp_path)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (12, 34)
    assert record["provider"] == "together"
    assert record["where"] == "router:fastest"


def test_out_of_credits_is_a_permanent_failure_that_says_so(env, hf):
    body = {"error": "You have exceeded your monthly included credits for Inference Providers."}
    envelope = chat(hf, Reply(402, body))
    assert envelope["success"] is False
    assert "credits are used up (HTTP 402)" in envelope["error"]
    assert "exceeded your monthly included credits" in envelope["error"]
    assert len(hf.chats()) == 1  # not retried
    event = sqs_event([json.dumps({"model": LLAMA, "task": "text-generation", "text": "Hi"})])
    assert invoke(event).reply == {"batchItemFailures": []}  # stored and acknowledged


@pytest.mark.parametrize("status", [400, 404])  # the live router says 400
def test_a_model_no_enabled_provider_serves_says_what_to_do(env, hf, status):
    body = {
        "error": {
            "message": f"The requested model '{LLAMA}' is not supported by any provider you "
            "have enabled.",
            "type": "invalid_request_error",
        }
    }
    envelope = chat(hf, Reply(status, body))
    assert envelope["success"] is False
    assert f"(HTTP {status}): The requested model" in envelope["error"]
    assert "settings/inference-providers" in envelope["error"]
    assert "name one" in envelope["error"]


def test_a_named_provider_that_does_not_serve_the_model_says_so(env, hf):
    body = {"error": "Model not supported by provider groq"}
    envelope = chat(hf, Reply(400, body), model=f"{LLAMA}:groq")
    assert envelope["error"].startswith(f"Provider 'groq' does not serve model '{LLAMA}'")
    assert "name another provider" in envelope["error"]


def test_a_fallback_moves_on_when_no_enabled_provider_serves_the_model(env, hf):
    body = {"error": {"message": "The requested model 'x' is not supported by any provider"}}
    hf.on_chat(
        lambda request: (
            Reply(400, body) if request.json["model"] == LLAMA else Reply(200, chat_answer())
        )
    )
    fields = {"model": LLAMA, "task": "text-generation", "text": "Hi", "fallback": ["other/llm"]}
    envelope = invoke(fields, remaining_ms=6000).reply
    assert envelope["success"], envelope["error"]
    assert envelope["model"] == "other/llm"


@pytest.mark.parametrize("status", [400, 422])
def test_an_openai_style_error_gives_its_message(env, hf, status):
    body = {"error": {"message": "temperature must be at most 2", "type": "invalid_request_error"}}
    envelope = chat(hf, Reply(status, body), parameters={"temperature": 5})
    assert envelope["success"] is False
    assert envelope["error"].endswith(f"(HTTP {status}): temperature must be at most 2")


def test_bill_to_goes_to_hugging_face_s_hosts(env, hf):
    assert chat(hf)["success"]
    assert "x-hf-bill-to" not in sent(hf).headers  # nobody else pays unless told
    env.setenv("HF_BILL_TO", "my-org")
    hf.requests.clear()
    assert chat(hf)["success"]
    assert sent(hf).headers["x-hf-bill-to"] == "my-org"
    hf.on("/models/facebook/bart-large-mnli", Reply(200, [{"label": "a", "score": 1.0}]))
    assert invoke({"text": "x", "candidate_labels": "a"}).reply["success"]
    (classified,) = hf.seen("/models/facebook/bart-large-mnli")
    assert classified.headers["x-hf-bill-to"] == "my-org"


def test_a_bill_to_that_could_inject_a_header_is_refused(env, hf):
    env.setenv("HF_BILL_TO", "org\r\nX-Evil: 1")
    envelope = chat(hf)
    assert envelope["success"] is False
    assert "HF_BILL_TO" in envelope["error"]
    assert hf.requests == []
