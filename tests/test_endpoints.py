"""Dedicated endpoints by name, and fallbacks across models, providers and endpoints."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.conftest import TOKEN, invoke
from tests.fakehf import FakeHF, Reply
from tests.test_edges import stored
from tests.test_providers import LLAMA, chat_answer

BART = "facebook/bart-large-mnli"
LABELS = [{"label": "billing", "score": 0.9}, {"label": "shipping", "score": 0.1}]
OWN_KEY = "own-endpoint-key-0123456789"


@pytest.fixture
def endpoints(env, hf: FakeHF):
    """Two endpoints on the fake server: `mine` (the HF token) and `tgi` (its own key)."""
    env.setenv(
        "HF_ENDPOINTS",
        json.dumps(
            {
                "mine": hf.base_url + "/endpoints/mine/",
                "tgi": {"url": hf.base_url + "/endpoints/tgi", "token_env": "TGI_KEY"},
            }
        ),
    )
    env.setenv("TGI_KEY", OWN_KEY)
    return env


def test_a_task_goes_to_the_endpoint_s_root(endpoints, hf):
    hf.on("/endpoints/mine", Reply(200, LABELS), prefix="")
    envelope = invoke({"endpoint": "mine", "text": "my parcel", "candidate_labels": "a, b"}).reply
    assert envelope["success"], envelope["error"]
    assert envelope["result"] == LABELS
    (request,) = hf.requests
    assert request.path == "/endpoints/mine"
    assert request.json == {
        "inputs": "my parcel",
        "parameters": {"candidate_labels": ["a", "b"]},
    }
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_chat_goes_to_the_endpoint_s_chat_route_with_its_own_key(endpoints, hf):
    hf.on("/endpoints/tgi/v1/chat/completions", Reply(200, chat_answer()), prefix="")
    envelope = invoke(
        {"endpoint": "tgi", "model": LLAMA, "messages": [{"role": "user", "content": "Hi"}]}
    ).reply
    assert envelope["success"], envelope["error"]
    (request,) = hf.requests
    assert request.json["model"] == LLAMA
    assert request.headers["authorization"] == f"Bearer {OWN_KEY}"
    assert "x-hf-bill-to" not in request.headers


def test_an_endpoint_scaled_to_zero_is_waited_for(endpoints, hf, tmp_path):
    hf.on(
        "/endpoints/mine",
        Reply(503, "Service Unavailable", {"Retry-After": "0.3"}),
        Reply(503, "Service Unavailable", {"Retry-After": "0.3"}),
        Reply(200, LABELS),
        prefix="",
    )
    invoked = invoke({"endpoint": "mine", "text": "x"}, remaining_ms=5000)
    assert invoked.reply["success"], invoked.reply["error"]
    assert len(hf.requests) == 3
    (record,) = stored(tmp_path)
    assert record["where"] == "endpoint:mine" and record["attempts"] == 3


def test_an_endpoint_still_starting_at_the_deadline_says_so(endpoints, hf):
    hf.on("/endpoints/mine", Reply(503, "Service Unavailable", {"Retry-After": "1"}), prefix="")
    invoked = invoke({"endpoint": "mine", "text": "x"}, remaining_ms=2500)
    assert invoked.reply["success"] is False
    assert "is still loading" in invoked.reply["error"] or "starting" in invoked.reply["error"]
    assert invoked.elapsed < 2.5


def test_an_unknown_endpoint_lists_the_known_names(endpoints, hf):
    envelope = invoke({"endpoint": "theirs", "text": "x"}).reply
    assert envelope["success"] is False
    assert envelope["error"] == (
        "Invalid input: endpoint: no endpoint named 'theirs' (known: mine, tgi)"
    )
    assert hf.requests == []


@pytest.mark.parametrize(
    "endpoint", ["https://evil.example", "http://127.0.0.1:1/x", "evil.example/x", "a b", ""]
)
def test_a_url_never_comes_from_an_event(endpoints, hf, endpoint):
    envelope = invoke({"endpoint": endpoint, "text": "x"}).reply
    assert envelope["success"] is False
    assert envelope["error"].startswith("Invalid input: endpoint: ")
    assert "a URL is never taken from run inputs" in envelope["error"]
    assert hf.requests == []


def test_an_endpoint_key_that_is_not_set_is_a_configuration_error(endpoints, hf):
    endpoints.delenv("TGI_KEY")
    envelope = invoke({"endpoint": "tgi", "text": "x"}).reply
    assert envelope["success"] is False
    assert "TGI_KEY is not set" in envelope["error"]
    assert OWN_KEY not in json.dumps(envelope) and hf.requests == []


def test_an_endpoint_that_echoes_its_key_never_shows_it(endpoints, hf):
    hf.on("/endpoints/tgi", Reply(401, {"error": f"bad key {OWN_KEY}"}), prefix="")
    envelope = invoke({"endpoint": "tgi", "text": "x"}).reply
    assert envelope["success"] is False
    assert OWN_KEY not in json.dumps(envelope)


# -- fallback -----------------------------------------------------------------------------------


def classify(hf: FakeHF, **inputs):
    return invoke({"text": "my parcel", "candidate_labels": "a, b", **inputs}, remaining_ms=6000)


@pytest.mark.parametrize(
    "failure",
    [
        Reply(404, {"error": "Model not found"}),
        Reply(410, {"error": "gone"}),
        Reply(503, {"error": "Model is currently loading", "estimated_time": 30.0}),
        Reply(500, {"error": "boom"}),
        Reply(429, {"error": "slow down"}, {"Retry-After": "0.05"}),
        Reply(402, {"error": "credits"}),
        Reply(delay=10.0),
    ],
    ids=["404", "410", "loading", "500", "429", "402", "timeout"],
)
def test_a_failure_another_model_could_fix_moves_on(env, hf, tmp_path, failure):
    env.setenv("HF_REQUEST_TIMEOUT", "0.5")
    env.setenv("HF_MAX_RETRIES", "1")
    hf.on(f"/models/{BART}", failure)
    hf.on("/models/other/model", Reply(200, LABELS))
    invoked = classify(hf, fallback=["other/model"])
    assert invoked.reply["success"], invoked.reply["error"]
    assert invoked.reply["model"] == "other/model"  # the model that answered
    (record,) = stored(tmp_path)
    assert [t["model"] for t in record["tried"]] == [BART, "other/model"]
    assert record["tried"][0]["error_kind"] is not None and record["tried"][1]["error_kind"] is None
    assert all(t["where"] == "hf-inference" for t in record["tried"])


@pytest.mark.parametrize(
    "failure",
    [
        Reply(400, {"error": "bad input"}),
        Reply(422, {"error": "unprocessable"}),
        Reply(401, {"error": "bad token"}),
        Reply(403, {"error": "forbidden"}),
    ],
    ids=["400", "422", "401", "403"],
)
def test_invalid_input_or_a_refused_token_stops_the_chain(env, hf, failure):
    hf.on(f"/models/{BART}", failure)
    hf.on("/models/other/model", Reply(200, LABELS))
    envelope = classify(hf, fallback=["other/model"]).reply
    assert envelope["success"] is False
    assert hf.seen("/models/other/model") == []


def test_alternates_may_change_provider_and_endpoint(env, hf, tmp_path):
    env.setenv("HF_ENDPOINTS", json.dumps({"mine": hf.base_url + "/endpoints/mine"}))
    hf.on_chat(
        lambda request: (
            Reply(404, {"error": "not here"})
            if request.json["model"].endswith(":groq")
            else Reply(200, chat_answer())
        )
    )
    hf.on("/endpoints/mine/v1/chat/completions", Reply(500, {"error": "boom"}), prefix="")
    env.setenv("HF_MAX_RETRIES", "0")
    invoked = invoke(
        {
            "model": LLAMA,
            "provider": "groq",
            "text": "Hi",
            "fallback": [
                {"model": LLAMA, "endpoint": "mine"},
                {"model": LLAMA, "provider": "together"},
            ],
        },
        remaining_ms=6000,
    )
    assert invoked.reply["success"], invoked.reply["error"]
    (record,) = stored(tmp_path)
    assert [t["where"] for t in record["tried"]] == [
        "router:groq",
        "endpoint:mine",
        "router:together",
    ]
    assert [r.json["model"] for r in hf.chats()] == [f"{LLAMA}:groq", f"{LLAMA}:together"]


def test_every_alternate_failing_names_each_failure(env, hf):
    env.setenv("HF_MAX_RETRIES", "0")
    hf.on(f"/models/{BART}", Reply(404, {"error": "no"}))
    hf.on("/models/other/model", Reply(500, {"error": "boom"}))
    envelope = classify(hf, fallback=["other/model"]).reply
    assert envelope["success"] is False
    assert envelope["error"].startswith("All 2 models failed: ")
    assert BART in envelope["error"] and "other/model" in envelope["error"]


def test_a_model_loading_past_its_share_leaves_time_for_the_next(env, hf):
    # The primary keeps loading; it gets its share of the 4 s, not all of it.
    hf.on(f"/models/{BART}", Reply(503, {"error": "Model is loading", "estimated_time": 0.2}))
    hf.on("/models/other/model", Reply(200, LABELS))
    started = time.monotonic()
    invoked = invoke(
        {"text": "x", "candidate_labels": "a", "fallback": ["other/model"]}, remaining_ms=4000
    )
    assert invoked.reply["success"], invoked.reply["error"]
    assert time.monotonic() - started < 3.5
    assert len(hf.seen(f"/models/{BART}")) >= 2  # it did wait for the primary a while


def test_no_alternate_starts_without_a_minimum_of_time(env, hf):
    hf.on(f"/models/{BART}", Reply(delay=5.0))
    hf.on("/models/other/model", Reply(200, LABELS))
    invoked = invoke(
        {"text": "x", "candidate_labels": "a", "fallback": ["other/model"]}, remaining_ms=1500
    )
    assert invoked.reply["success"] is False
    assert hf.seen("/models/other/model") == []
    assert invoked.elapsed < 1.5


def test_an_alternate_may_name_only_another_provider(env, hf, tmp_path):
    hf.on_chat(
        lambda request: (
            Reply(503, {"error": "overloaded"})
            if request.json["model"].endswith(":groq")
            else Reply(200, chat_answer())
        )
    )
    env.setenv("HF_MAX_RETRIES", "0")
    fields = {"model": f"{LLAMA}:groq", "text": "Hi", "fallback": [{"provider": "together"}]}
    invoked = invoke(fields, remaining_ms=6000)
    assert invoked.reply["success"], invoked.reply["error"]
    assert [r.json["model"] for r in hf.chats()] == [f"{LLAMA}:groq", f"{LLAMA}:together"]
    (record,) = stored(tmp_path)
    assert [t["where"] for t in record["tried"]] == ["router:groq", "router:together"]
    assert record["attempts"] == sum(t["attempts"] for t in record["tried"]) == 2


def test_alternates_left_untried_for_lack_of_time_are_named(env, hf, tmp_path):
    env.setenv("HF_REQUEST_TIMEOUT", "0.5")
    env.setenv("HF_MAX_RETRIES", "0")
    hf.on(f"/models/{BART}", Reply(delay=5.0))
    hf.on("/models/other/model", Reply(delay=5.0))
    hf.on("/models/third/model", Reply(200, LABELS))
    fields = {"text": "x", "candidate_labels": "a", "fallback": ["other/model", "third/model"]}
    envelope = invoke(fields, remaining_ms=2800).reply
    assert envelope["success"] is False
    assert "of 3 models tried, none answered" in envelope["error"], envelope["error"]
    assert envelope["error"].rpartition("; not tried for lack of time: ")[2].endswith("third/model")
    assert hf.seen("/models/third/model") == []
    (record,) = stored(tmp_path)
    assert record["task"] == "zero-shot-classification"
    assert record["where"] == "hf-inference"


def test_a_failed_run_s_record_keeps_its_task_and_place(env, hf, tmp_path):
    hf.on_chat(Reply(404, {"error": "Model not found"}))
    assert invoke({"model": LLAMA, "task": "text-generation", "text": "Hi"}).reply["error"]
    (record,) = stored(tmp_path)
    assert (record["task"], record["where"]) == ("text-generation", "router")


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", "/v1/chat/completions"])
def test_a_router_url_written_as_openai_clients_write_it_is_its_root(env, hf, suffix):
    env.setenv("HUGGINGFACE_ROUTER_URL", hf.base_url + suffix)
    hf.on_chat(Reply(200, chat_answer()))
    assert invoke({"model": LLAMA, "task": "text-generation", "text": "Hi"}).reply["success"]
    assert [r.path for r in hf.chats()] == ["/v1/chat/completions"]


def test_the_dead_host_as_router_is_refused_by_name(env, hf):
    env.setenv("HUGGINGFACE_ROUTER_URL", "https://api-inference.huggingface.co")
    envelope = invoke({"model": LLAMA, "task": "text-generation", "text": "Hi"}).reply
    assert "HUGGINGFACE_ROUTER_URL" in envelope["error"] and "shut down" in envelope["error"]


@pytest.mark.parametrize(
    "fallback, expected",
    [
        (["bad model id"], "fallback.0.model"),
        ([{"model": "x/y", "colour": "red"}], "fallback.0.colour"),
        ([{"model": "x/y", "endpoint": "https://evil"}], "a URL is never taken"),
        (["facebook/bart-large-mnli:groq"], "fallback[0]: "),
        ("other/model", "fallback: "),
    ],
)
def test_bad_alternates_are_refused_before_any_request(env, hf, fallback, expected):
    envelope = classify(hf, fallback=fallback).reply
    assert envelope["success"] is False
    assert expected in envelope["error"], envelope["error"]
    assert hf.requests == []


# -- comparison ---------------------------------------------------------------------------------


def test_a_comparison_runs_every_alternate_at_once_and_reports_each(env, hf, tmp_path):
    hf.on(f"/models/{BART}", Reply(200, LABELS, {"x-compute-characters": "9"}, delay=0.3))
    hf.on("/models/other/model", Reply(200, LABELS[::-1], delay=0.3))
    hf.on("/models/gone/model", Reply(404, {"error": "Model not found"}))
    invoked = invoke(
        {"text": "my parcel", "compare": [BART, {"model": "other/model"}, "gone/model"]},
        remaining_ms=5000,
    )
    summary = invoked.reply
    assert invoked.elapsed < 0.9  # concurrently: not 0.6 s and more one after the other
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (3, 2, 1)
    first, second, third = summary["results"]
    assert first["id"] == BART and first["model"] == BART and first["success"]
    assert first["usage"] == {"characters": 9} and first["latency_ms"] >= 300
    assert second["id"] == {"model": "other/model"} and second["result"] == LABELS
    assert third["success"] is False and "was not found" in third["error"]
    assert {k for k in first} == {
        "success",
        "result",
        "is_classification",
        "model",
        "error",
        "id",
        "latency_ms",
        "usage",
    }
    assert len(stored(tmp_path)) == 3  # a run record per alternate


def test_a_comparison_across_providers_of_one_model(env, hf):
    hf.on_chat(lambda request: Reply(200, chat_answer(f"from {request.json['model']}")))
    summary = invoke(
        {"task": "text-generation", "text": "Hi", "compare": [f"{LLAMA}:groq", f"{LLAMA}:together"]}
    ).reply
    assert [r["result"]["generated_text"] for r in summary["results"]] == [
        f"from {LLAMA}:groq",
        f"from {LLAMA}:together",
    ]
    assert summary["results"][0]["usage"]["prompt_tokens"] == 12


def test_every_alternate_of_a_comparison_runs_the_task_one_of_them_implies(env, hf):
    # Over the default (zero-shot) run config: the suffix makes it a chat for both.
    hf.on_chat(lambda request: Reply(200, chat_answer(f"from {request.json['model']}")))
    summary = invoke({"text": "Hi", "compare": [f"{LLAMA}:groq", "Qwen/Qwen2.5-7B-Instruct"]}).reply
    assert summary["succeeded"] == 2, summary
    assert sorted(r.json["model"] for r in hf.chats()) == sorted(
        [f"{LLAMA}:groq", "Qwen/Qwen2.5-7B-Instruct"]
    )
    assert not any(r["is_classification"] for r in summary["results"])


@pytest.mark.parametrize(
    "compare, expected",
    [
        ([], "compare: List should have at least 1 item"),
        ("x/y", "compare: Input should be a valid list"),
        (["ok/model", "bad id"], "compare.1.model: "),
        ([{"model": "x/y", "endpoint": "https://evil"}], "a URL is never taken"),
    ],
)
def test_a_bad_comparison_is_refused_before_any_request(env, hf, compare, expected):
    envelope = invoke({"text": "x", "compare": compare}).reply
    assert envelope["success"] is False
    assert expected in envelope["error"], envelope["error"]
    assert hf.requests == []


def test_the_cli_prints_a_comparison_table(env, hf):
    from tests.conftest import run_cli

    hf.on(f"/models/{BART}", Reply(200, LABELS))
    hf.on("/models/gone/model", Reply(404, {"error": "Model not found"}))
    environment = {"HUGGINGFACE_API_ENDPOINT": hf.endpoint, "HUGGINGFACE_API_KEY": TOKEN}
    done = run_cli(
        "compare", "--text", "my parcel", "--model", BART, "--model", "gone/model", env=environment
    )
    assert done.returncode == 1, done.stderr  # one of them failed
    header, ok, failed = done.stdout.splitlines()
    assert header.split()[:3] == ["model", "ok", "result"]
    assert ok.startswith(BART) and " yes " in ok and "billing (0.90)" in ok
    assert (
        failed.startswith("gone/model")
        and " no " in failed
        and "error: Model 'gone/model'" in failed
    )
    done = run_cli("compare", "--text", "x", "--model", BART, "--json", env=environment)
    assert done.returncode == 0
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert record["id"] == BART and record["success"]
    assert TOKEN not in done.stdout + done.stderr


# -- where alternates run, and the limits (probe findings) ------------------------------------


def test_comparison_alternates_run_where_the_comparison_says_unless_they_say(endpoints, hf):
    hf.on_chat(Reply(200, chat_answer()))
    hf.on("/endpoints/mine/v1/chat/completions", Reply(200, chat_answer()), prefix="")
    summary = invoke(
        {
            "task": "text-generation",
            "text": "Hi",
            "provider": "groq",
            "compare": ["a/b", "c/d:together", {"model": "e/f", "endpoint": "mine"}],
        }
    ).reply
    assert summary["succeeded"] == 3, summary
    assert [r.json["model"] for r in hf.chats()] == ["a/b:groq", "c/d:together"]
    assert len(hf.seen("/endpoints/mine/v1/chat/completions", prefix="")) == 1
    hf.requests.clear()
    hf.on("/endpoints/mine", Reply(200, LABELS), prefix="")
    summary = invoke({"endpoint": "mine", "text": "x", "compare": ["a/b", "c/d"]}).reply
    assert summary["succeeded"] == 2, summary
    assert [r.path for r in hf.requests] == ["/endpoints/mine"] * 2  # never hf-inference


def test_the_more_specific_place_wins_over_the_run_config_s(endpoints, hf, tmp_path):
    config = tmp_path / "llm.json"
    config.write_text(json.dumps({"model": LLAMA, "provider": "groq", "system": "Be brief."}))
    hf.on_chat(Reply(200, chat_answer()))
    hf.on("/endpoints/mine/v1/chat/completions", Reply(200, chat_answer()), prefix="")
    run = {"run_config": str(config), "text": "Hi"}
    from function.lifecycle import cli_invocation, handle

    def cli(**fields):
        return asyncio.run(handle(cli_invocation("cli", {**run, **fields}))).reply

    assert cli(model=f"{LLAMA}:together")["success"]
    assert hf.chats()[-1].json["model"] == f"{LLAMA}:together"
    assert cli(endpoint="mine")["success"]
    assert len(hf.seen("/endpoints/mine/v1/chat/completions", prefix="")) == 1
    envelope = cli(messages=[{"role": "user", "content": "Hello"}], text=None)  # system goes too
    assert envelope["success"], envelope["error"]
    assert hf.chats()[-1].json["messages"] == [{"role": "user", "content": "Hello"}]


def test_a_fallback_naming_an_unknown_endpoint_is_refused_before_any_request(endpoints, hf):
    envelope = classify(hf, fallback=[{"model": "x/y", "endpoint": "nope"}]).reply
    assert envelope["success"] is False
    assert "no endpoint named 'nope'" in envelope["error"]
    assert hf.requests == []


def test_fallback_and_messages_have_limits(env, hf):
    envelope = classify(hf, fallback=["o/a"] * 9).reply
    assert "fallback: List should have at most 8 items" in envelope["error"], envelope["error"]
    messages = [{"role": "user", "content": "x"}] * 1001
    envelope = invoke({"model": LLAMA, "messages": messages}).reply
    assert "messages: List should have at most 1000 items" in envelope["error"]
    assert hf.requests == []


ECHOED = "secret-key-of-the-endpoint-0123"


@pytest.mark.parametrize(
    "header", [TOKEN, f"Bearer {TOKEN}", "groq\r\nx", "a" * 100, ECHOED, "Groq_Key.x"]
)
def test_a_provider_header_that_is_not_a_name_is_not_kept(env, hf, tmp_path, header):
    env.setenv("HF_ENDPOINTS", json.dumps({"own": {"url": "http://own", "token_env": "OWN"}}))
    env.setenv("OWN", ECHOED)  # a key the job knows: masked wherever it could show
    reply = Reply(200, chat_answer(), {"x-inference-provider": header})
    envelope = invoke({"model": LLAMA, "text": "Hi", "compare": [LLAMA]}).reply
    hf.on_chat(reply)
    summary = invoke({"model": LLAMA, "text": "Hi", "compare": [LLAMA]}).reply
    assert TOKEN not in json.dumps(summary) + json.dumps(envelope)
    assert "provider" not in summary["results"][0]["usage"]
    assert all(TOKEN not in json.dumps(r) and ECHOED not in json.dumps(r) for r in stored(tmp_path))


def test_a_key_spelled_with_json_escapes_in_an_answer_is_masked(endpoints, hf, tmp_path):
    key = "sk/AbC+dEf/123456=="
    endpoints.setenv("TGI_KEY", key)
    escaped = json.dumps(chat_answer(f"the key is {key}")).replace("/", "\\/")
    hf.on("/endpoints/tgi/v1/chat/completions", Reply(200, escaped.encode()), prefix="")
    chat = {"endpoint": "tgi", "model": LLAMA, "task": "text-generation", "text": "Hi"}
    envelope = invoke(chat).reply
    assert envelope["success"], envelope["error"]
    assert key not in json.dumps(envelope)
    assert all(key not in json.dumps(r) for r in stored(tmp_path))


@pytest.mark.parametrize("kind", [["json_object"], {"a": 1}, 5, None])
def test_an_odd_response_format_type_is_no_internal_error(env, hf, kind):
    hf.on_chat(Reply(200, chat_answer("plain")))
    parameters = {"response_format": {"type": kind}}
    envelope = invoke({"model": LLAMA, "system": "s", "text": "Hi", "parameters": parameters}).reply
    assert envelope["success"], envelope["error"]  # not a JSON format: the text as it is


def test_the_comparison_table_prints_no_control_characters(env, hf):
    from tests.conftest import run_cli

    hf.on_chat(Reply(200, chat_answer("\x1b[2Jcleared\x07")))
    environment = {
        "HUGGINGFACE_API_ENDPOINT": hf.endpoint,
        "HUGGINGFACE_ROUTER_URL": hf.base_url,
        "HUGGINGFACE_API_KEY": TOKEN,
    }
    done = run_cli("compare", "--text", "Hi", "--model", f"{LLAMA}:groq", env=environment)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout and "cleared" in done.stdout


def test_batch_items_whose_fallback_runs_out_of_time_are_continued(env, hf):
    hf.on_chat(Reply(200, chat_answer(), hang=True))
    items = [{"id": i, "text": f"t{i}"} for i in range(3)]
    fields = {"items": items, "model": f"{LLAMA}:groq", "fallback": ["other/llm:groq"]}
    summary = invoke(fields, remaining_ms=3000).reply
    assert (summary["failed"], summary["continued"]) == (0, 3), summary


@pytest.mark.parametrize(
    "answers, status",
    [
        ([Reply(401, {"error": "bad token"})], 502),
        ([Reply(200, chat_answer()), Reply(401, {"error": "bad token"})], 200),
        (None, 400),  # every alternate refused for the same bad input
    ],
)
def test_a_comparison_over_http_says_why_nothing_answered(env, hf, answers, status):
    from tests.test_edges import load_event

    hf.on_chat(*(answers or [Reply(200, chat_answer())]))
    fields = {"task": "text-generation", "text": "Hi", "compare": [f"{LLAMA}:groq", "x/y:together"]}
    if answers is None:
        fields["temperature"] = 1  # not a run input: a bad field both alternates share
    event = load_event("function-url.json")
    event.update(body=json.dumps(fields), isBase64Encoded=False)
    reply = invoke(event).reply
    assert reply["statusCode"] == status, reply["body"]
