"""Every recorded text-task exchange, replayed through the fake server, gives the right
envelope, and every result validates against its task's official output schema."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import invoke
from tests.fakehf import CHAT, PREFIX, FakeHF, Reply, recorded_reply, recording
from tests.schemas import assert_valid

ROUTER = "router__TestInferenceClient.test_"
LEGACY = "legacy-api-inference__InferenceClientVCRTest.test_"


@dataclass
class Case:
    recording: str
    task: str
    inputs: dict[str, Any]  # run inputs besides model and task
    exchange: int = 0

    @property
    def id(self) -> str:
        return self.recording.split(".test_")[-1]

    def load(self) -> tuple[str, Reply, dict[str, Any]]:
        exchange = recording(self.recording)["exchanges"][self.exchange]
        url = urlsplit(exchange["request"]["url"])
        model = _model_from_path(url.path)
        return model, recorded_reply(exchange), json.loads(exchange["request"]["body"])


def _model_from_path(path: str) -> str:
    # /hf-inference/models/{m}[/v1/...], /models/{m}, /[hf-inference/]pipeline/{task}/{m}
    parts = [p for p in path.split("/") if p and p != "hf-inference"]
    parts = parts[2:] if parts[0] == "pipeline" else parts[1:]
    if "v1" in parts:
        parts = parts[: parts.index("v1")]
    return "/".join(parts)


EIFFEL = (
    "The tower is 324 metres (1,063 ft) tall, about the same height as an 81-storey building, "
    "and the tallest structure in Paris."
)
SIMILARITY = {
    "inputs": {
        "source_sentence": "Machine learning is so easy.",
        "sentences": [
            "Deep learning is so straightforward.",
            "This is so difficult, like rocket science.",
            "I can't believe how much I struggled with this.",
        ],
    }
}
CASES = [
    Case(
        ROUTER + "zero_shot_classification_single_label__hf-inference__zero-shot-classification",
        "zero-shot-classification",
        {},
    ),
    Case(
        ROUTER + "zero_shot_classification_multi_label__hf-inference__zero-shot-classification",
        "zero-shot-classification",
        {},
    ),
    Case(LEGACY + "zero_shot_classification_single_label", "zero-shot-classification", {}),
    Case(LEGACY + "zero_shot_classification_multi_label", "zero-shot-classification", {}),
    Case(
        ROUTER + "text_classification__hf-inference__text-classification",
        "text-classification",
        {"text": "I like you"},
    ),
    Case(LEGACY + "text_classification", "text-classification", {"text": "I like you"}),
    Case(
        ROUTER + "token_classification__hf-inference__token-classification",
        "token-classification",
        {"text": "My name is Sarah Jessica Parker but you can call me Jessica"},
    ),
    Case(
        LEGACY + "token_classification",
        "token-classification",
        {"text": "My name is Sarah Jessica Parker but you can call me Jessica"},
    ),
    Case(
        ROUTER + "feature_extraction_with_transformers__hf-inference__feature-extraction",
        "feature-extraction",
        {"text": "Hi, who are you?"},
    ),
    Case(
        ROUTER + "feature_extraction_with_sentence_transformers__hf-inference__feature-extraction",
        "feature-extraction",
        {"text": "Hi, who are you?"},
    ),
    Case(LEGACY + "feature_extraction", "feature-extraction", {"text": "Hi, who are you?"}),
    Case(
        LEGACY + "feature_extraction_with_transformers",
        "feature-extraction",
        {"text": "Hi, who are you?"},
    ),
    Case(
        LEGACY + "feature_extraction_with_sentence_transformers",
        "feature-extraction",
        {"text": "Hi, who are you?"},
    ),
    Case(
        ROUTER + "sentence_similarity__hf-inference__sentence-similarity",
        "sentence-similarity",
        SIMILARITY,
    ),
    Case(
        LEGACY + "sentence_similarity",
        "sentence-similarity",
        SIMILARITY,
    ),
    Case(
        LEGACY + "question_answering",
        "question-answering",
        {"inputs": {"question": "What is the meaning of life?", "context": "42"}},
    ),
    Case(
        ROUTER + "summarization__hf-inference__summarization",
        "summarization",
        {"text": "The sky is blue, the tree is green."},
    ),
    Case(LEGACY + "summarization", "summarization", {"text": EIFFEL}),
    Case(ROUTER + "translation__hf-inference__translation", "translation", {"text": "Hello world"}),
    Case(
        ROUTER + "translation_with_source_and_target_language__hf-inference__translation",
        "translation",
        {"text": "Hello world", "parameters": {"src_lang": "en_XX", "tgt_lang": "fr_XX"}},
    ),
    Case(LEGACY + "translation", "translation", {"text": "Hello world"}),
    Case(
        LEGACY + "translation_with_source_and_target_language",
        "translation",
        {"text": "Hello world", "parameters": {"src_lang": "en_XX", "tgt_lang": "fr_XX"}},
    ),
    Case(LEGACY + "fill_mask", "fill-mask", {"text": "The goal of life is <mask>."}),
    Case(
        ROUTER + "chat_completion_no_stream__hf-inference__conversational",
        "text-generation",
        {"text": "What is deep learning?"},
    ),
    Case(
        LEGACY + "chat_completion_no_stream",
        "text-generation",
        {"text": "What is deep learning?", "parameters": {"max_new_tokens": 20}},
    ),
    Case(
        LEGACY + "chat_completion_with_non_tgi",
        "text-generation",
        {"text": "What is deep learning?"},
    ),
    Case(
        LEGACY + "chat_completion_with_response_format",
        "text-generation",
        {"text": "I saw a puppy a cat and a raccoon during my bike ride in the park."},
    ),
]
CLASSIFICATION = {"zero-shot-classification", "text-classification"}


def _run_inputs(case: Case, model: str, recorded_body: dict[str, Any]) -> dict[str, Any]:
    inputs = {"model": model, "task": case.task, **case.inputs}
    if case.task == "zero-shot-classification":
        parameters = dict(recorded_body["parameters"])
        inputs["text"] = recorded_body["inputs"]
        inputs["candidate_labels"] = parameters.pop("candidate_labels")
        inputs["parameters"] = parameters
    return inputs


def _route(task: str, model: str) -> tuple[str, str]:
    """The path the request goes to, and the prefix it is under (the router: none)."""
    if task in ("feature-extraction", "sentence-similarity"):
        return f"/models/{model}/pipeline/{task}", PREFIX
    if task == "text-generation":
        return CHAT, ""
    return f"/models/{model}", PREFIX


def _expected(case: Case, reply: Reply) -> Any:
    """What the recorded answer must become, worked out independently of the job's code."""
    body = json.loads(reply.body)
    match case.task:
        case "zero-shot-classification":
            pairs = zip(body["labels"], body["scores"], strict=True)
            return sorted(({"label": x, "score": s} for x, s in pairs), key=lambda r: -r["score"])
        case "text-classification":
            return sorted(body[0], key=lambda r: -r["score"])
        case "feature-extraction":
            return [body] if isinstance(body[0], float) else body[0]
        case "question-answering":
            return [body]
        case "summarization" | "translation":
            return body[0]
        case "text-generation":
            return {"generated_text": body["choices"][0]["message"]["content"]}
    return body


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_recorded_exchange_replays_to_its_envelope(case: Case, env, hf: FakeHF) -> None:
    model, reply, recorded_body = case.load()
    path, prefix = _route(case.task, model)
    hf.on(path, reply, prefix=prefix)

    envelope = invoke(_run_inputs(case, model, recorded_body)).reply

    assert envelope == {
        "success": True,
        "result": _expected(case, reply),
        "is_classification": case.task in CLASSIFICATION,
        "model": model,
        "error": None,
    }
    assert_valid(case.task, "output", envelope["result"])
    (sent,) = hf.seen(path, prefix)
    assert sent.headers["authorization"].startswith("Bearer ")
    assert_valid(
        "chat-completion" if case.task == "text-generation" else case.task, "input", sent.json
    )


AUTO_CASES = [
    c
    for c in CASES
    if c.task not in ("sentence-similarity", "question-answering", "zero-shot-classification")
]


@pytest.mark.parametrize("case", AUTO_CASES, ids=lambda c: c.id)
def test_task_is_recognized_from_the_answer_when_not_named(case: Case, env, hf: FakeHF) -> None:
    model, reply, recorded_body = case.load()
    hf.on(f"/models/{model}", reply)
    inputs = _run_inputs(case, model, recorded_body)
    del inputs["task"]
    inputs["candidate_labels"] = None  # drop the default run config's labels

    envelope = invoke(inputs).reply

    assert envelope["success"], envelope["error"]
    assert envelope["result"] == _expected(case, reply)
    assert envelope["is_classification"] == (case.task in CLASSIFICATION)
    assert_valid(case.task, "output", envelope["result"])
    (sent,) = hf.seen(f"/models/{model}")
    assert sent.json["inputs"] == inputs["text"]


def test_zero_shot_answers_in_both_shapes_give_the_same_envelope(env, hf: FakeHF) -> None:
    case = CASES[0]
    model, reply, recorded_body = case.load()
    old = json.loads(reply.body)
    new = [{"label": x, "score": s} for x, s in zip(old["labels"], old["scores"], strict=True)]
    new.reverse()  # the order on the wire must not matter
    inputs = _run_inputs(case, model, recorded_body)

    hf.on(f"/models/{model}", reply)
    from_old = invoke(inputs).reply
    hf.on(f"/models/{model}", Reply(200, new))
    from_new = invoke(inputs).reply

    assert from_old["success"] and from_old == from_new
    scores = [r["score"] for r in from_new["result"]]
    assert scores == sorted(scores, reverse=True)


def test_legacy_conversational_answer_is_read_as_text_generation(env, hf: FakeHF) -> None:
    exchange = recording(LEGACY + "conversational")["exchanges"][0]
    hf.on("/models/facebook/blenderbot-400M-distill", recorded_reply(exchange))

    envelope = invoke(
        {
            "model": "facebook/blenderbot-400M-distill",
            "text": "Hi, who are you?",
            "candidate_labels": None,
        }
    ).reply

    expected = json.loads(exchange["response"]["body"])["generated_text"]
    assert envelope["success"] and envelope["result"] == {"generated_text": expected}
    assert_valid("text-generation", "output", envelope["result"])


def test_every_task_name_the_inputs_accept_has_its_task():
    from function.inputs import TASK_NAMES
    from function.tasks import all_tasks, get_task

    assert {task.name for task in all_tasks()} == set(TASK_NAMES)
    assert all(get_task(name).name == name for name in TASK_NAMES)
