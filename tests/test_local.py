"""provider: local: the same envelope from a model run in this process, with no API, no
token and no hub (HF_HUB_OFFLINE=1 and a cache of the tests' own: see tests/localmodels.py)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from function.errors import UpstreamTimeoutError
from tests.conftest import invoke, run_cli
from tests.fakehf import REFERENCE_DIR, Reply
from tests.localmodels import MINILM, TINY, snapshot
from tests.schemas import assert_valid
from tests.test_edges import stored

RECORDED = REFERENCE_DIR / "recorded-responses"


@pytest.fixture
def local(env, local_models, monkeypatch):
    """The job's environment with no token: a local run needs none."""
    from function import local as backend

    env.delenv("HUGGINGFACE_API_KEY")
    backend.MODELS.clear()
    loads: list[tuple[str, str]] = []
    real_load = backend.load

    def counted(model_id, task, settings):
        loads.append((model_id, task))
        return real_load(model_id, task, settings)

    monkeypatch.setattr(backend, "load", counted)
    yield loads
    # What a test left running at a model (its run stopped waiting) ends here, not in the
    # next test, nor at the interpreter's exit, where torch in a thread aborts the process.
    for loading in list(backend.MODELS._models.values()):
        try:
            worker = loading.result(timeout=120).worker
        except Exception:
            continue
        done: Future[None] = Future()
        worker.submit(lambda: None, done)
        done.result(timeout=120)
    backend.MODELS.clear()


def recorded(name: str) -> tuple[dict, object]:
    """A recorded exchange's request body and answer body."""
    exchange = json.loads((RECORDED / name).read_text())["exchanges"][0]
    request, answer = exchange["request"]["body"], exchange["response"]["body"]
    return (
        json.loads(request) if isinstance(request, str) else request,
        json.loads(answer) if isinstance(answer, str) else answer,
    )


def run(**fields) -> dict:
    return invoke({"provider": "local", **fields}, remaining_ms=60_000).reply


# -- fidelity: the real model against the live API's recorded answers ------------------------------


def test_feature_extraction_matches_the_recorded_api_vector(local, hf):
    sent, expected = recorded(
        "legacy-api-inference__InferenceClientVCRTest.test_feature_extraction_with_sentence_"
        "transformers.json"
    )
    text = sent["inputs"]
    envelope = run(model=MINILM, task="feature-extraction", text=text)
    assert envelope["success"], envelope["error"]
    (vector,) = envelope["result"]
    assert len(vector) == len(expected) == 384
    dot = sum(a * b for a, b in zip(vector, expected, strict=True))
    cosine = dot / math.sqrt(sum(a * a for a in vector) * sum(b * b for b in expected))
    assert cosine >= 0.9999
    assert max(abs(a - b) for a, b in zip(vector, expected, strict=True)) <= 1e-4
    assert_valid("feature-extraction", "output", envelope["result"])
    assert hf.requests == []


def test_sentence_similarity_matches_the_recorded_api_scores(local, hf):
    sent, expected = recorded(
        "router__TestInferenceClient.test_sentence_similarity__hf-inference__sentence-"
        "similarity.json"
    )
    inputs = {"source_sentence": sent["source_sentence"], "sentences": sent["sentences"]}
    envelope = run(model=MINILM, task="sentence-similarity", inputs=inputs)
    assert envelope["success"], envelope["error"]
    assert len(envelope["result"]) == len(expected)
    assert all(abs(a - b) <= 1e-4 for a, b in zip(envelope["result"], expected, strict=True))
    assert_valid("sentence-similarity", "output", envelope["result"])


# -- every task family, through its real pipeline -------------------------------------------

CASES = {
    "text-classification": ({"text": "my parcel is late"}, True),
    "zero-shot-classification": (
        {"text": "my parcel is late", "candidate_labels": "billing, shipping"},
        True,
    ),
    "token-classification": ({"text": "hello world who are you"}, False),
    "question-answering": (
        {"inputs": {"question": "what is the capital", "context": "paris is in france"}},
        False,
    ),
    "fill-mask": ({"text": "my parcel is [MASK]"}, False),
    "feature-extraction": ({"text": "hello world"}, False),
    "summarization": ({"text": "my parcel is late"}, False),
    "translation": ({"text": "hello world"}, False),
    "text-generation": ({"text": "who are you", "system": "answer", "max_tokens": 4}, False),
}


@pytest.mark.parametrize("task", sorted(CASES))
def test_every_task_runs_in_process_into_the_same_envelope(local, hf, tmp_path, task):
    fields, is_classification = CASES[task]
    fields = {"candidate_labels": None, **fields}  # not the default run config's labels
    if "max_tokens" in fields:
        fields["parameters"] = {"max_tokens": fields.pop("max_tokens")}
    envelope = run(model=TINY[task], task=task, **fields)
    assert envelope["success"], envelope["error"]
    assert envelope["is_classification"] is is_classification
    assert envelope["model"] == TINY[task]
    assert_valid(task, "output", envelope["result"])
    assert hf.requests == []  # no API, no token
    (record,) = stored(tmp_path)
    assert record["where"] == "local"
    if task == "text-generation":
        assert record["prompt_tokens"] > 0


def _close(a, b) -> bool:
    """The same answer, numbers to within float noise (a batch pads its texts)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-4)
    return a == b


LIST_CASES = [
    (t, TINY[t]) for t in sorted(CASES) if "text" in CASES[t][0] and t != "text-generation"
] + [("feature-extraction", MINILM)]  # a sentence model: `encode`, not a pipeline


@pytest.mark.parametrize(("task", "model"), LIST_CASES)
def test_a_batch_of_texts_of_every_length_gets_each_text_s_own_answer(local, hf, task, model):
    """Items run together, several to a forward pass and in order of tokens: each still
    gets the answer a run of its text alone gets. The last two are longest in characters
    and shortest in tokens: one long word is one token (the tiny models' words) or a few."""
    fields = {"candidate_labels": None, **CASES[task][0]}
    text = fields.pop("text")
    texts = ["now " * k + text for k in (3, 0, 6, 1, 4)]
    texts += [f"{'x' * 60}{k} {text}" for k in (1, 2)]
    summary = invoke(
        {"provider": "local", "model": model, "task": task, **fields, "batch_size": 2}
        | {"items": [{"id": i, "text": t} for i, t in enumerate(texts)]},
        remaining_ms=60_000,
    ).reply
    assert summary["succeeded"] == len(texts), summary
    for record, one in zip(summary["results"], texts, strict=True):
        assert_valid(task, "output", record["result"])
        alone = run(model=model, task=task, text=one, **fields)
        assert _close(record["result"], alone["result"]), (one, record["result"], alone["result"])


@pytest.mark.parametrize(
    ("task", "model"),
    [("text-classification", TINY["text-classification"]), ("feature-extraction", MINILM)],
)
def test_forward_passes_take_a_call_s_texts_in_order_of_tokens(local, hf, monkeypatch, task, model):
    """A batch pads its texts to its longest, and characters tell tokens apart badly: the
    texts of a call go to the model shortest first in tokens, not in characters."""
    from function import local as backend

    texts = ["a b c d e f g h i j k l", "x" * 30, "now a b c", "y" * 40, "now", "z" * 50]
    run(model=model, task=task, text="warm")
    loaded = backend.MODELS.loaded(model, task)
    assert loaded is not None
    lengths = dict(zip(texts, loaded.pipeline.tokenizer(texts)["input_ids"], strict=True))
    tokens = {text: len(ids) for text, ids in lengths.items()}
    assert sorted(texts, key=len) != sorted(texts, key=tokens.__getitem__)  # they disagree
    passes: list[list[str]] = []
    real = loaded.pipeline.encode if loaded.sentence_transformer else loaded.pipeline.preprocess

    def seen(given, *args, **options):  # a text at a time (pipelines), or a pass's texts
        passes.append([given] if isinstance(given, str) else list(given))
        return real(given, *args, **options)

    name = "encode" if loaded.sentence_transformer else "preprocess"
    monkeypatch.setattr(loaded.pipeline, name, seen)
    answers = loaded.answer({"inputs": texts}, 60.0, 2)
    sent = [text for texts_ in passes for text in texts_]
    assert sent == sorted(texts, key=tokens.__getitem__), sent
    assert len(answers) == len(texts)
    for text, answer in zip(texts, answers, strict=True):  # each answer is its own text's
        alone = loaded.answer({"inputs": text}, 60.0, 2)
        assert _close(answer, alone), text


def test_texts_whose_tokens_cannot_be_counted_keep_their_order():
    """Ordering saves padding; it never fails a call: a tokenizer that cannot be called
    (static embeddings') or counts nothing leaves the texts as they came."""
    from function import local as backend

    texts = ["a b c", "a", "a b"]

    def counts_nothing(texts, **options):
        return {"input_ids": [[1]] * len(texts)}

    def refuses(texts, **options):
        raise TypeError("return_length is not an option here")

    for tokenizer in (None, object(), counts_nothing, refuses):
        assert backend._token_order(tokenizer, texts, 512) == [0, 1, 2]
    assert backend._token_order(lambda t, **_: {"length": [3, 1, 2]}, texts, 512) == [1, 2, 0]


def test_a_text_is_counted_from_no_more_than_its_model_reads():
    """A 900 KB text is not tokenized whole to be cut at 256 tokens (that doubled the
    time of a call of long texts): the tokenizer is given what the model can read."""
    from function import local as backend

    given: list[str] = []

    def tokenizer(texts, **options):
        given.extend(texts)
        return {"length": [min(len(t.split()), options["max_length"]) for t in texts]}

    texts = ["word " * 200_000, "a few words", "word " * 100]
    assert backend._token_order(tokenizer, texts, 256) == [1, 2, 0]
    assert max(len(text) for text in given) <= 256 * backend.TOKEN_CHARS


def test_a_chat_answer_has_the_openai_shape_the_router_gives(local, hf):
    envelope = run(
        model=TINY["text-generation"],
        messages=[{"role": "user", "content": "who are you"}],
        parameters={"max_new_tokens": 3, "seed": 1},
    )
    assert envelope["success"], envelope["error"]
    assert isinstance(envelope["result"]["generated_text"], str)


# -- failures ---------------------------------------------------------------------------------


def test_a_model_not_in_the_cache_says_how_to_fetch_it(local, hf):
    envelope = run(model="nobody/not-cached", task="text-classification", text="x")
    assert envelope["success"] is False
    assert "'nobody/not-cached' is not in the Hugging Face cache" in envelope["error"]
    assert "HF_HUB_OFFLINE" in envelope["error"]
    # The command fetches into the cache the run reads, also from a shell that is offline.
    cache = os.environ["HF_HUB_CACHE"]
    assert (
        f"HF_HUB_CACHE={cache} HF_HUB_OFFLINE=0 hf download nobody/not-cached" in envelope["error"]
    )


def test_items_sharing_one_failed_load_each_name_only_their_own_chain(local, hf):
    """One model's load fails once for every item that asked for it: each item's error
    names its own alternates, not the ones of the items before it."""
    event = {
        "provider": "local",
        "model": "nobody/a",
        "fallback": ["nobody/b"],
        "task": "text-classification",
        "candidate_labels": None,
        "items": [{"id": i, "text": f"text {i}"} for i in range(4)],
    }
    summary = invoke(event, remaining_ms=60_000).reply
    errors = [r["error"] for r in summary["results"]]
    assert summary["failed"] == 4 and len(set(errors)) == 1, errors
    assert errors[0].count("All 2 models failed") == 1
    assert errors[0].count("'nobody/a' is not in the Hugging Face cache") == 1


def test_a_loaded_model_with_no_time_left_is_late_to_answer_not_to_load(local, hf):
    """A run that comes with no time left to a model already loaded does not blame the
    load."""
    from function.client import Call, Deadline
    from function.local import LOCAL, post_json
    from function.settings import load_settings

    model = TINY["text-classification"]
    assert run(model=model, task="text-classification", text="warm", candidate_labels=None)[
        "success"
    ]
    call = Call(f"{LOCAL}/models/{model}/pipeline/text-classification", {"inputs": "x"}, model)
    with pytest.raises(UpstreamTimeoutError) as raised:
        asyncio.run(post_json(call, load_settings(), Deadline(0)))
    assert raised.value.out_of_time
    assert "did not answer before the deadline" in raised.value.message


def test_a_damaged_model_folder_is_a_clear_failure(local, hf, local_models):
    folder = snapshot(local_models, "broken/model")
    (folder / "config.json").write_text("{not json")
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    envelope = run(model="broken/model", task="text-classification", text="x")
    assert envelope["success"] is False
    assert "'broken/model'" in envelope["error"] and "could not be loaded" in envelope["error"]
    assert "hf download broken/model" in envelope["error"]


def test_a_model_too_large_for_the_memory_setting_is_refused_before_loading(local, hf, env):
    env.setenv("HF_LOCAL_MAX_MODEL_MB", "10")
    envelope = run(model=MINILM, task="feature-extraction", text="x")
    assert envelope["success"] is False
    assert "too large" in envelope["error"] and "HF_LOCAL_MAX_MODEL_MB (10 MB)" in envelope["error"]


def test_loading_counts_against_the_deadline_and_the_model_stays_loaded(local, hf, monkeypatch):
    from function import local as backend

    release = threading.Event()
    real_load = backend.load

    def slow(model_id, task, settings):
        release.wait(10)
        return real_load(model_id, task, settings)

    monkeypatch.setattr(backend, "load", slow)
    fields = {"provider": "local", "model": MINILM, "task": "feature-extraction", "text": "x"}
    invoked = invoke(fields, remaining_ms=2000)
    assert invoked.reply["success"] is False
    assert "did not finish loading before the deadline" in invoked.reply["error"]
    assert invoked.elapsed < 2.0
    release.set()
    assert invoke(fields, remaining_ms=60_000).reply["success"]  # the same load, finished


def test_a_model_loads_once_and_the_cache_keeps_at_most_the_set_number(local, hf, env):
    from function import local as backend

    env.setenv("HF_LOCAL_MAX_MODELS", "1")
    for _ in range(2):
        assert run(model=TINY["fill-mask"], task="fill-mask", text="my [MASK]")["success"]
    assert local == [(TINY["fill-mask"], "fill-mask")]
    assert run(model=TINY["text-classification"], task="text-classification", text="x")["success"]
    assert len(backend.MODELS._models) == 1
    assert run(model=TINY["fill-mask"], task="fill-mask", text="my [MASK]")["success"]
    assert len(local) == 3  # evicted, then loaded again


def test_a_batch_shares_one_model_and_runs_its_texts_by_length(local, hf, monkeypatch):
    from function import local as backend

    calls: list[tuple[list[str], int]] = []  # the texts of a call, and texts a forward pass
    classify = backend.ANSWERS["text-classification"]

    def counted(model, payload, seconds, batch):
        inputs = payload["inputs"]
        calls.append((inputs if isinstance(inputs, list) else [inputs], batch))
        return classify(model, payload, seconds, batch)

    monkeypatch.setitem(backend.ANSWERS, "text-classification", counted)
    # Lengths out of order: each call holds texts of about the same length.
    items = [{"id": i, "text": "late " * (1 + i * 7 % 11) + str(i)} for i in range(70)]
    event = {
        "provider": "local",
        "model": TINY["text-classification"],
        "task": "text-classification",
        "candidate_labels": None,
        "items": items,
        "batch_size": 4,
    }
    summary = invoke(event, remaining_ms=60_000).reply
    assert summary["succeeded"] == 70, summary
    assert [r["id"] for r in summary["results"]] == list(range(70))
    sent = [t for texts, _ in calls for t in texts]
    assert sorted(sent) == sorted(i["text"] for i in items)  # each text once
    assert {b for _, b in calls} == {4} and max(len(texts) for texts, _ in calls) <= 4 * 4
    for texts, _ in calls:
        assert [len(t) for t in texts] == sorted(len(t) for t in texts)
    # Each answer is its own text's: a single run of a text gives the same labels.
    one = run(model=TINY["text-classification"], task="text-classification", text=items[5]["text"])
    assert summary["results"][5]["result"] == one["result"]
    assert local == [(TINY["text-classification"], "text-classification")]


def test_a_large_batch_size_still_answers_texts_before_the_deadline(local, hf, monkeypatch):
    """A call holds what the model runs in a few seconds, not the whole batch_size: with
    1,024 a batch used to send every text as one call that outlasted the deadline, answer
    none, and continue them all, run after run."""
    import time

    from function import local as backend

    classify = backend.ANSWERS["text-classification"]

    def slow(model, payload, seconds, batch):
        texts = payload["inputs"] if isinstance(payload["inputs"], list) else [payload["inputs"]]
        time.sleep(0.002 * sum(len(t) for t in texts))  # 0.1 s a text of 50
        return classify(model, payload, seconds, batch)

    monkeypatch.setitem(backend.ANSWERS, "text-classification", slow)
    event = {
        "provider": "local",
        "model": TINY["text-classification"],
        "task": "text-classification",
        "candidate_labels": None,
        "items": [{"id": i, "text": f"{i:03d} " + "x" * 46} for i in range(60)],
        "batch_size": 1024,
    }
    assert run(model=TINY["text-classification"], task="text-classification", text="x")["success"]
    summary = invoke(event, remaining_ms=4000).reply
    assert summary["succeeded"] > 0 and summary["continued"] > 0, summary
    assert summary["succeeded"] + summary["continued"] == 60


def test_a_failing_api_falls_back_to_the_model_in_process(local, hf, env):
    env.setenv("HUGGINGFACE_API_KEY", "hf_fallbackToken0123456789abcdef")
    env.setenv("HF_MAX_RETRIES", "0")
    hf.on(f"/models/{MINILM}/pipeline/feature-extraction", Reply(500, {"error": "down"}))
    fields = {
        "model": MINILM,
        "task": "feature-extraction",
        "text": "Hi, who are you?",
        "fallback": [{"provider": "local"}],
    }
    envelope = invoke(fields, remaining_ms=60_000).reply
    assert envelope["success"], envelope["error"]
    assert len(envelope["result"][0]) == 384
    assert len(hf.requests) == 1


@pytest.mark.parametrize(
    "task, fields, expected",
    [
        ("text-generation", {"text": "hi", "parameters": {"max_tokens": 10**9}}, "max_tokens"),
        (
            "summarization",
            {"text": "hi", "parameters": {"generate_parameters": {"num_beams": 1000}}},
            "generate_parameters.num_beams: expected a whole number from 0 to 8",
        ),
        (
            "summarization",
            {"text": "hi", "parameters": {"generate_parameters": {"device": "cuda"}}},
            "generate_parameters.device is not used by provider local",
        ),
    ],
)
def test_generation_cannot_be_asked_for_more_than_a_run_can_give(local, hf, task, fields, expected):
    envelope = run(model=TINY[task], task=task, candidate_labels=None, **fields)
    assert envelope["success"] is False
    assert envelope["error"].startswith("Invalid input: parameters.")
    assert expected in envelope["error"]


def test_a_model_that_cannot_run_here_moves_a_fallback_on(local, hf):
    fields = {"model": "nobody/not-cached", "task": "text-classification", "text": "x"}
    fallback = [{"model": TINY["text-classification"], "provider": "local"}]
    envelope = run(**fields, candidate_labels=None, fallback=fallback)
    assert envelope["success"], envelope["error"]
    assert envelope["model"] == TINY["text-classification"]


@pytest.mark.parametrize(
    "model, task, fields, expected",
    [
        (MINILM, "text-classification", {"text": "x"}, "has no text-classification head"),
        (MINILM, "zero-shot-classification", {"text": "x", "candidate_labels": "a, b"}, "head"),
        (
            TINY["text-classification"],
            "zero-shot-classification",
            {"text": "x", "candidate_labels": "a, b"},
            "not a natural-language-inference model",
        ),
        (TINY["text-classification"], "summarization", {"text": "x"}, "no summarization head"),
        (TINY["fill-mask"], "text-generation", {"text": "x"}, "no text-generation head"),
    ],
)
def test_a_task_the_model_has_no_head_for_is_refused_not_answered_with_noise(
    local, hf, model, task, fields, expected
):
    envelope = run(model=model, task=task, **{"candidate_labels": None, **fields})
    assert envelope["success"] is False
    assert expected in envelope["error"], envelope["error"]


def test_a_causal_model_without_a_chat_template_says_so(local, hf, local_models):
    import shutil

    plain = snapshot(local_models, "tiny/plain-lm")
    if not (plain / "config.json").exists():
        source = snapshot(local_models, TINY["text-generation"])
        shutil.copytree(source, plain, dirs_exist_ok=True)
        config = json.loads((plain / "tokenizer_config.json").read_text())
        config.pop("chat_template", None)
        (plain / "tokenizer_config.json").write_text(json.dumps(config))
        (plain / "chat_template.jinja").unlink(missing_ok=True)
    envelope = run(model="tiny/plain-lm", task="text-generation", text="hi")
    assert envelope["success"] is False
    assert "has no chat template" in envelope["error"], envelope["error"]


@pytest.mark.parametrize(
    "fields",
    [
        {"fallback": [{"model": TINY["text-classification"]}]},  # local, as the run
        {"compare": [TINY["text-classification"], "nobody/not-cached"]},
    ],
)
def test_no_token_is_needed_when_every_alternate_runs_here(local, hf, env, fields):
    env.delenv("HUGGINGFACE_API_KEY", raising=False)
    env.setenv("HUGGINGFACE_API_ENDPOINT", "https://router.huggingface.co/hf-inference")
    primary = "nobody/not-cached" if "fallback" in fields else TINY["text-classification"]
    envelope = run(model=primary, task="text-classification", text="x", **fields)
    assert "No Hugging Face token" not in json.dumps(envelope)
    assert envelope.get("success") or envelope.get("succeeded") == 1, envelope
    assert hf.requests == []


def test_provider_local_needs_the_task_named(local, hf):
    envelope = run(model=MINILM, text="x", candidate_labels=None)
    assert envelope["success"] is False
    assert "task: provider 'local' needs the task named (--task" in envelope["error"]


def test_the_cli_runs_a_model_locally_with_no_token(local_models, tmp_path: Path):
    done = run_cli(
        "run",
        "--provider",
        "local",
        "--model",
        MINILM,
        "--task",
        "sentence-similarity",
        "--inputs",
        json.dumps({"source_sentence": "a parcel", "sentences": ["a parcel", "the weather"]}),
        env={},
    )
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout)["result"]
    assert scores[0] > 0.99 and scores[1] < scores[0]


def test_a_local_batch_interrupted_while_its_model_runs_exits_130_with_nothing_lost(
    local_models, tmp_path: Path
):
    """Ctrl-C while torch computes a chunk in its thread: the summary, the records and the
    continuation are written, and the process exits 130 (torch's teardown aborted it: 134)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    texts = [f"ticket {i}: " + "my parcel is late again " * 40 for i in range(3000)]
    source.write_text("".join(json.dumps(t) + "\n" for t in texts))
    command = [sys.executable, "-m", "function", "batch", "--input", str(source)]
    command += ["--output", str(output), "--provider", "local", "--task", "feature-extraction"]
    command += ["--model", MINILM, "--label", "null", "--batch-size", "8"]
    env = {k: v for k, v in os.environ.items() if k != "HUGGINGFACE_API_KEY"}
    env["RESULTS_URI"] = str(tmp_path / "runs")
    process = subprocess.Popen(
        command,
        cwd=Path(__file__).parent.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    while "progress" not in process.stderr.readline():  # the model has answered a chunk
        assert process.poll() is None, process.stderr.read()
    time.sleep(0.5)  # inside the next chunk's forward passes
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    summary = json.loads(stdout.splitlines()[-1])
    continued = Path(summary["continuation"]).read_text().splitlines()
    written = output.read_text().splitlines()
    assert len(written) + len(continued) == len(texts) and continued
    ids = [json.loads(line)["id"] for line in written + continued]
    assert sorted(ids) == list(range(len(texts)))


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["batch", "--input", "-", "--output", "{tmp}/out.jsonl"],
        ["compare", "--text", "hi", "--model", "a/b", "--model", "c/d"],
    ],
)
def test_without_a_token_the_envelope_stays_and_stderr_points_to_run_local(command, tmp_path):
    command = [part.format(tmp=tmp_path) for part in command]
    done = run_cli(*command, env={}, stdin='"hi"\n')
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"].startswith("No Hugging Face token")
    hints = [line for line in done.stderr.splitlines() if "make run-local" in line]
    assert len(hints) == 1 and "--provider local" in hints[0]


# -- what an attacker tried ---------------------------------------------------------------


def test_a_pipeline_that_overruns_the_deadline_does_not_hold_the_reply(local, hf, monkeypatch):
    import time

    from function import local as backend

    monkeypatch.setitem(backend.ANSWERS, "fill-mask", lambda *_: time.sleep(8))
    fields = {"provider": "local", "model": TINY["fill-mask"], "task": "fill-mask"}
    invoked = invoke({**fields, "text": "my [MASK]"}, remaining_ms=3000)
    assert invoked.reply["success"] is False
    assert "did not answer before the deadline" in invoked.reply["error"]
    assert invoked.elapsed < 3.0  # asyncio.run did not wait for the pipeline's thread


def test_two_models_loading_at_once_both_load(local, hf):
    items = [
        {"id": i, "model": TINY[task], "task": task, "text": "my parcel is late"}
        for i, task in enumerate(["text-classification", "token-classification"] * 3)
    ]
    summary = invoke(
        {"provider": "local", "candidate_labels": None, "items": items}, remaining_ms=60_000
    ).reply
    assert summary["succeeded"] == 6, summary
    assert sorted(set(local)) == sorted(
        [
            (TINY["text-classification"], "text-classification"),
            (TINY["token-classification"], "token-classification"),
        ]
    )


def test_one_text_a_pipeline_fails_on_fails_alone_in_its_chunk(local, hf):
    texts = [f"my parcel {i} is [MASK]" for i in range(7)] + ["no mask in this one"]
    items = [{"id": i, "text": t} for i, t in enumerate(texts)]
    summary = invoke(
        {
            "provider": "local",
            "model": TINY["fill-mask"],
            "task": "fill-mask",
            "candidate_labels": None,
            "items": items,
            "batch_size": 8,
        },
        remaining_ms=60_000,
    ).reply
    assert (summary["succeeded"], summary["failed"]) == (7, 1), summary
    (failed,) = [r for r in summary["results"] if not r["success"]]
    assert failed["id"] == 7 and "fill-mask pipeline" in failed["error"]


def test_a_model_whose_files_hold_too_few_weights_is_refused_before_loading(
    local, hf, local_models
):
    import shutil

    folder = snapshot(local_models, "hollow/model")
    source = snapshot(local_models, TINY["text-classification"])
    shutil.copytree(source, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config.update(num_hidden_layers=12, hidden_size=512, intermediate_size=2048)
    (folder / "config.json").write_text(json.dumps(config))
    envelope = run(
        model="hollow/model", task="text-classification", text="x", candidate_labels=None
    )
    assert envelope["success"] is False
    assert "is damaged: its files hold" in envelope["error"], envelope["error"]


def test_a_sentence_model_naming_code_of_its_own_is_refused(local, hf, local_models, tmp_path):
    import shutil

    from tests.localmodels import lay_minilm

    folder = snapshot(local_models, "evil/sentence-model")
    shutil.copytree(lay_minilm(local_models), folder, dirs_exist_ok=True, symlinks=True)
    (folder / "modules.json").unlink()
    modules = [{"idx": 0, "name": "0", "path": "", "type": "evilmod.EvilPooling"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    marker = tmp_path / "ran"
    (folder / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    envelope = run(model="evil/sentence-model", task="feature-extraction", text="x")
    assert envelope["success"] is False
    assert "not sentence-transformers' own" in envelope["error"]
    assert not marker.exists()


def test_generation_options_that_would_run_code_are_refused(local, hf):
    options = {"custom_generate": "evil/gen", "trust_remote_code": True}
    envelope = run(
        model=TINY["summarization"],
        task="summarization",
        text="my parcel",
        candidate_labels=None,
        parameters={"generate_parameters": options},
    )
    assert envelope["success"] is False
    assert "is not used by provider local" in envelope["error"]


def test_a_model_that_leaves_the_cache_leaves_memory(local, hf, env):
    """Loaded models are kept out of the garbage collector's sight (gc.freeze), and a model
    that leaves the cache comes back into it: its cycles are collected, not kept forever."""
    import gc
    import weakref

    from function import local as backend

    env.setenv("HF_LOCAL_MAX_MODELS", "1")
    assert run(model=MINILM, task="feature-extraction", text="hi")["success"]
    (loading,) = backend.MODELS._models.values()
    gone = weakref.ref(loading.result().pipeline)  # a SentenceTransformer: it holds cycles
    del loading
    assert run(model=TINY["text-classification"], task="text-classification", text="x")["success"]
    gc.collect()
    assert gone() is None


@settings(max_examples=60, deadline=None)
@given(
    texts=st.integers(1, 300),
    width=st.integers(1, 768),
    entities=st.lists(st.integers(0, 40), min_size=1, max_size=300),
    labels=st.lists(
        st.text(st.characters(categories=["L", "N", "Zs"]), min_size=1, max_size=30),
        min_size=1,
        max_size=8,
    ),
)
def test_a_local_answer_is_counted_at_about_the_size_of_its_json(texts, width, labels, entities):
    """A batch bounds the answers it keeps (the coalescer's cache, pending items) by their
    counted size: a call's list of embeddings or of label scores counts about what its JSON
    weighs, however many texts it holds. Long lists of vectors counted 64 bytes a vector
    kept 20,000 embeddings (240 MB at 20,000 items)."""
    from function import local as backend

    vectors = [[(t * width + i + 1) / 7.3 for i in range(width)] for t in range(texts)]
    scores = [[{"label": label, "score": 1 / (t + 2)} for label in labels] for t in range(texts)]
    entity = {"entity_group": "PER", "score": 0.33, "word": "a", "start": 0, "end": 1}
    found = [[entity] * count for count in entities]  # a call's texts: none to many each
    for body in (vectors, scores, found):
        weight = len(json.dumps(body, ensure_ascii=False))
        assert weight / 2 <= backend._size(body) <= weight * 2, (texts, width, labels)


@pytest.mark.parametrize(
    ("task", "parameters", "named"),
    [
        ("text-classification", {"top_k": "x"}, "parameters.top_k"),
        ("text-classification", {"top_k": 1.5}, "parameters.top_k"),
        ("text-classification", {"top_k": 0}, "parameters.top_k"),
        ("text-classification", {"function_to_apply": "bogus"}, "parameters.function_to_apply"),
        ("token-classification", {"aggregation_strategy": "most"}, "parameters.aggregation"),
        ("token-classification", {"ignore_labels": "O"}, "parameters.ignore_labels"),
        ("token-classification", {"stride": -1}, "parameters.stride"),
        ("fill-mask", {"targets": 3}, "parameters.targets"),
        ("fill-mask", {"top_k": "2"}, "parameters.top_k"),  # strict: the pipeline gets "2"
        ("text-classification", {"top_k": 1.0}, "parameters.top_k"),
        ("text-classification", {"top_k": True}, "parameters.top_k"),
        ("zero-shot-classification", {"multi_label": "false"}, "parameters.multi_label"),
    ],
)
def test_a_wrong_parameter_is_invalid_input_naming_it(local, hf, task, parameters, named):
    text = "my [MASK]" if task == "fill-mask" else "hello"
    labels = ["a", "b"] if task == "zero-shot-classification" else None
    envelope = run(
        model=TINY[task], task=task, text=text, parameters=parameters, candidate_labels=labels
    )
    assert not envelope["success"]
    assert envelope["error"].startswith(f"Invalid input: {named}"), envelope["error"]


def test_a_token_in_the_input_is_masked_in_a_local_answer_and_error(local, hf, env):
    """As an API answer that echoes the token is masked, so is the model's here: a label
    the caller gave, or a value an error repeats (upper-cased)."""
    token = "hf_SecretToken0123456789abcdefABCD"
    env.setenv("HUGGINGFACE_API_KEY", token)
    envelope = run(
        model=TINY["zero-shot-classification"],
        task="zero-shot-classification",
        text="hello",
        candidate_labels=[token, token.upper(), "x" + token.lower()],
    )
    shown = json.dumps(envelope)
    assert envelope["success"] and "secret" not in shown.lower(), shown
    assert shown.count("***") == 3  # the labels, masked whatever their case
    envelope = run(model=token, task="fill-mask", text="my [MASK]")  # the token as a model id
    assert not envelope["success"] and "secret" not in json.dumps(envelope).lower()
    from function.redact import redact

    assert "SECRET" not in redact(f"KeyError: '{token.upper()}'")
