"""Run inputs: model id safety, precedence of event over run config, clear errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import invoke
from tests.fakehf import FakeHF, Reply

ENVELOPE_KEYS = {"success", "result", "is_classification", "model", "error"}
BATCH_KEYS = {"total", "succeeded", "failed", "output", "elapsed_s", "items_per_s"}
LABELS = [{"label": "a", "score": 0.6}, {"label": "b", "score": 0.4}]


@pytest.mark.parametrize(
    "model", ["gpt2", "facebook/bart-large-mnli", "Org_1/name.v2-final", "t5-small"]
)
def test_valid_model_ids_reach_their_url(env, hf, model):
    hf.on(f"/models/{model}", Reply(200, LABELS))
    assert invoke({"model": model}).reply["success"]
    assert len(hf.seen(f"/models/{model}")) == 1


@pytest.mark.parametrize(
    "model",
    [
        "https://evil.example/x",
        "//evil.example/x",
        "../../admin",
        "org/../secret",
        "a/b/c",
        "name?x=1",
        "name#frag",
        "a%2Fb",
        "org name",
        "org/",
        "/name",
        "name\n",
        "-name",
        "name.",
        "org--x/y",
        "",
        "x" * 200,
        "évil/model",
        "@evil.example",
        "host:8080/x",
    ],
)
def test_model_ids_that_could_change_host_or_path_are_refused(env, hf, model):
    envelope = invoke({"model": model}).reply
    assert envelope["success"] is False
    assert envelope["error"].startswith("Invalid input: model: ")
    assert "is not a Hugging Face model id" in envelope["error"]
    assert hf.requests == []


@pytest.mark.parametrize("model", [42, None, ["a"], {"id": "x"}])
def test_model_of_the_wrong_type(env, hf, model, tmp_path):
    (tmp_path / "empty.json").write_text("{}")
    env.setenv("RUN_CONFIG_DIR", str(tmp_path))
    env.setenv("RUN_CONFIG", "empty")
    envelope = invoke({"model": model, "text": "x"}).reply
    assert envelope["success"] is False
    assert "model" in envelope["error"]
    assert hf.requests == []


def test_comma_separated_labels(env, hf):
    hf.on("/models/facebook/bart-large-mnli", Reply(200, LABELS))
    invoke({"candidate_labels": "urgent, not urgent,, "})
    (request,) = hf.requests
    assert request.json["parameters"]["candidate_labels"] == ["urgent", "not urgent"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"candidate_labels": ", ,"}, "candidate_labels: expected at least one label"),
        ({"candidate_labels": [1, 2]}, "candidate_labels.0: Input should be a valid string"),
        ({"text": ""}, "text: String should have at least 1 character"),
        (
            {"text": " \u200b\ufeff\u2060 \u200d"},
            "text: expected some text, got only whitespace and",
        ),
        ({"wait_for_model": "sometimes"}, "wait_for_model: Input should be a valid boolean"),
        ({"task": "text-to-video"}, "task: Input should be 'zero-shot-classification'"),
        ({"parameters": [1]}, "parameters: Input should be a valid dictionary"),
        (
            {"task": "question-answering", "inputs": {"question": "q"}},
            "inputs.context must be a non-empty string for task 'question-answering'",
        ),
        (
            {"task": "sentence-similarity", "inputs": {"source_sentence": "a", "sentences": [1]}},
            "inputs.sentences must be a list of strings",
        ),
        ({"task": "summarization", "text": None}, "text is required for task 'summarization'"),
        (
            {"task": "zero-shot-classification", "candidate_labels": None},
            "candidate_labels is required for zero-shot-classification",
        ),
        (
            {"task": "summarization", "candidate_labels": ["a"]},
            "candidate_labels is only used by zero-shot-classification",
        ),
        ({"run_config": 7}, "run_config: expected the name of a run config"),
        ({"run_config": ""}, "run_config: expected the name of a run config, not an empty"),
    ],
)
def test_bad_inputs_name_the_field(env, hf, inputs, message):
    envelope = invoke(inputs).reply
    assert envelope["success"] is False
    assert message in envelope["error"], envelope["error"]
    assert hf.requests == []


def test_thousands_of_unknown_fields_are_one_short_error_in_no_time(env, hf):
    """An event of 40,000 unknown names is refused naming a few of them: not a close-match
    search for each (seconds of a blocked loop), nor an error as long as the event."""
    fields = {f"text{i:05d}": "x" for i in range(40_000)}
    envelope = invoke({**fields, "text": "hi"}).reply
    error = envelope["error"]
    assert error.startswith("unknown input field(s): 'text00000' (did you mean 'text'?)")
    assert "and 39,995 more; expected some of" in error and len(error) < 2000
    assert hf.requests == []


def test_unknown_field_is_an_error_not_the_default_job(env, hf):
    envelope = invoke({"modle": "gpt2"}).reply
    assert envelope["error"].startswith("unknown input field(s): 'modle' (did you mean 'model'?)")
    assert hf.requests == []


@pytest.fixture
def configs(env, tmp_path):
    (tmp_path / "default.json").write_text(
        json.dumps(
            {
                "model": "org/default",
                "text": "default text",
                "candidate_labels": ["a", "b"],
                "parameters": {"multi_label": True, "hypothesis_template": "About {}."},
            }
        )
    )
    (tmp_path / "sentiment.json").write_text(
        json.dumps({"model": "org/sentiment", "task": "text-classification", "text": "great"})
    )
    env.setenv("RUN_CONFIG_DIR", str(tmp_path))
    return tmp_path


def test_run_config_from_the_environment(configs, env, hf):
    env.setenv("RUN_CONFIG", "sentiment")
    hf.on("/models/org/sentiment", Reply(200, [LABELS]))
    envelope = invoke({}).reply
    assert envelope["success"] and envelope["model"] == "org/sentiment"


def test_run_config_named_by_the_event_wins(configs, env, hf):
    env.setenv("RUN_CONFIG", "default")
    hf.on("/models/org/sentiment", Reply(200, [LABELS]))
    assert invoke({"run_config": "sentiment.json"}).reply["model"] == "org/sentiment"


def test_run_config_by_path_from_the_operator_not_from_an_event(configs, env, hf, tmp_path):
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps({"model": "org/path", "text": "t", "task": "summarization"}))
    hf.on("/models/org/path", Reply(200, [{"summary_text": "s"}]))
    # An event names run configs only: it cannot make the job read another file.
    for name in (str(other), "../run_config/x", "/etc/passwd", "a" * 5000, "x\u0000y"):
        envelope = invoke({"run_config": name}).reply
        assert envelope["error"].startswith("Invalid input: run_config:") or envelope[
            "error"
        ].startswith("run_config:"), envelope["error"]
        assert not hf.requests
    env.setenv("RUN_CONFIG", str(other))  # the setting is the operator's
    assert invoke({}).reply["result"] == {"summary_text": "s"}


def test_event_fields_override_and_parameters_merge(configs, hf):
    hf.on("/models/org/default", Reply(200, LABELS))
    invoke({"text": "event text", "parameters": {"multi_label": False}})
    assert hf.requests[0].json == {
        "inputs": "event text",
        "parameters": {
            "candidate_labels": ["a", "b"],
            "multi_label": False,
            "hypothesis_template": "About {}.",
        },
    }


def test_null_removes_a_run_config_value(configs, hf):
    hf.on("/models/org/default", Reply(200, [LABELS]))
    envelope = invoke({"candidate_labels": None, "parameters": None}).reply
    assert envelope["success"] and envelope["is_classification"]
    assert hf.requests[0].json == {"inputs": "default text", "parameters": {}}


def test_event_naming_another_task_starts_it_afresh(configs, hf):
    hf.on("/models/org/default", Reply(200, [{"summary_text": "short"}]))
    envelope = invoke({"task": "summarization"}).reply
    assert envelope["result"] == {"summary_text": "short"}
    assert hf.requests[0].json == {"inputs": "default text", "parameters": {}}


def test_unknown_run_config_lists_the_available_ones(configs, hf):
    envelope = invoke({"run_config": "nightly"}).reply
    assert "run_config: no run config named 'nightly'" in envelope["error"]
    assert "(available: default, sentiment)" in envelope["error"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "is not valid JSON (line 1, column 2)"),
        ("[1]", "must hold a JSON object"),
        ('{"model": "m", "labels": []}', "has unknown field(s) 'labels'"),
    ],
)
def test_broken_run_config(configs, hf, content, message):
    (configs / "broken.json").write_text(content)
    envelope = invoke({"run_config": "broken"}).reply
    assert envelope["success"] is False and message in envelope["error"]
    assert hf.requests == []


# -- no event shape ever raises ----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "model",
        "text",
        "candidate_labels",
        "wait_for_model",
        "task",
        "parameters",
        "inputs",
        "run_config",
        "body",
        "detail",
        "requestContext",
        "detail-type",
        "source",
        "items",
        "batch_size",
        "concurrency",
        "rate",
    ]
)
run_inputs = st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=6)
http_events = st.builds(
    lambda body, b64, query: {
        "requestContext": {"http": {"method": "POST"}},
        "body": body,
        "isBase64Encoded": b64,
        "queryStringParameters": query,
    },
    st.one_of(st.none(), st.text(max_size=40), run_inputs.map(json.dumps), json_values),
    st.booleans(),
    st.one_of(st.none(), run_inputs, json_values),
)
eventbridge_events = st.builds(
    lambda detail, kind: {"detail-type": kind, "source": "aws.events", "detail": detail},
    st.one_of(run_inputs, json_values),
    st.sampled_from(["Scheduled Event", "Other"]),
)
events = st.one_of(json_values, run_inputs, http_events, eventbridge_events)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(event=events)
def test_no_event_shape_ever_raises(env, hf: FakeHF, event) -> None:
    hf.on("/models/facebook/bart-large-mnli", Reply(200, LABELS))
    reply = invoke(event).reply
    if isinstance(reply, dict) and "statusCode" in reply:
        assert reply["statusCode"] in (200, 400, 500, 502, 504)
        reply = json.loads(reply["body"])
    if "total" in reply:  # a batch (items, a list of texts, input_uri): its summary
        assert set(reply) >= BATCH_KEYS
        assert reply["succeeded"] + reply["failed"] + reply.get("continued", 0) == reply["total"]
        return
    assert set(reply) == ENVELOPE_KEYS
    assert reply["success"] is (reply["error"] is None)
    if not reply["success"]:
        assert "Internal error" not in reply["error"], reply["error"]
