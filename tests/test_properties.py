"""The promises as invariants, over generated cases (hypothesis).

1. No event ever raises, replies late, or replies in the wrong shape for its trigger, and no
   reply shows the token (`test_no_event_breaks_the_reply`, 1,000 examples; `make fuzz`:
   20,000).
2. Exactly once: every input id ends as exactly one output record or one continuation line
   at each step, and as exactly one record at the end, whatever the server does, however
   short the deadlines, wherever the batch is interrupted (`test_batches_are_exactly_once`,
   100 examples), and through the queue with continuations, parts and redeliveries
   (`test_queued_batches_are_exactly_once`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TOKEN, FakeContext
from tests.fakehf import FakeHF, Reply, Seen

pytestmark = pytest.mark.property

FUZZ = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
MODEL = "facebook/bart-large-mnli"
PATH = f"/models/{MODEL}"
SLOW = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


def examples(normal: int, fuzz: int) -> settings:
    return settings(
        max_examples=fuzz if FUZZ else normal,
        deadline=None,
        suppress_health_check=SLOW,
        derandomize=not FUZZ,  # make test: the same cases every run; make fuzz: new ones
    )


# -- generators ----------------------------------------------------------------------------------


class Nested(list):
    """A list `depth` lists deep, that a failing case prints as `nested(depth)`: printed
    whole, it would take hypothesis's printer past the recursion limit and hide the failure."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        depth, value = 0, self
        while isinstance(value, list) and value:
            depth, value = depth + 1, value[0]
        printer.text(f"nested({depth})")


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth - 1):
        value = [value]
    return Nested([value])


lone_surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
huge_ints = st.integers(4300, 6000).map(lambda n: 10**n)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats()
    | st.text(max_size=20)
    | lone_surrogates
)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
) | st.integers(60, 900).map(nested)

# Paths stay inside the test's folder (relative), or are fixed odd places.
places = st.sampled_from(
    [
        "in.jsonl",
        "out.jsonl",
        "out/",
        "sub/dir/out.jsonl",
        "s3://bucket/key.jsonl",
        "s3://bucket-only",
        "",
        "-",
        "/dev/zero",
        "/",
        ".",
        "..",
    ]
) | st.text("ab.", max_size=5)

alternates = st.sampled_from(
    [MODEL, "org/other", "org/other:groq", "bad id"]
) | st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "x/y:together"])},
    optional={
        "provider": st.sampled_from(["groq", "?", "local"]),
        "endpoint": st.sampled_from(["mine", "http://x"]),
    },
)
_PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/"
    "iZk9HQAAAABJRU5ErkJggg=="
)
MEDIA_SOURCES = [
    _PNG,
    _PNG[:40],
    f"data:image/png;base64,{_PNG}",
    "data:image/png,raw",
    "s3://uploads/missing.png",
    "s3://",
    "https://127.0.0.1/x.png",
    "https://169.254.169.254/latest/meta-data/",
    "https://[::1]/x.png",
    "http://example.com/x.png",
    "https://user:pw@example.com/x.png",
    "/etc/passwd",
    "file:///etc/passwd",
    "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=",
]
sensible = {
    "model": st.sampled_from([MODEL, "org/other", "../admin", "a b", "x" * 300]),
    "text": st.text(max_size=30) | st.lists(st.text(max_size=10), max_size=5),
    "candidate_labels": st.sampled_from(["a, b", ["a", "b"], [], ",", None]),
    "task": st.sampled_from(
        [
            "zero-shot-classification",
            "text-classification",
            "image-classification",
            "zero-shot-image-classification",
            "automatic-speech-recognition",
            "text-to-image",
            "nope",
            None,
        ]
    ),
    "parameters": st.dictionaries(st.sampled_from(["multi_label", "top_k", "x"]), json_values),
    "inputs": st.fixed_dictionaries({}, optional={"question": st.text(), "context": st.text()}),
    "wait_for_model": st.booleans(),
    "run_config": st.sampled_from(["default", "nope", "../etc/passwd", "/dev/zero"]),
    "items": st.lists(
        json_values | st.fixed_dictionaries({"text": st.text(max_size=10)}), max_size=6
    ),
    "input_uri": places,
    "output_uri": places,
    "concurrency": st.integers(-2, 2000),
    "rate": st.floats() | st.integers(-1, 5),
    "batch_size": st.integers(-1, 5000),
    "part": json_values
    | st.fixed_dictionaries({"bytes": st.lists(st.integers(-5, 50), max_size=3)}),
    "fan_out": st.booleans(),
    "chunk_size": st.integers(-1, 10),
    "id": json_values,
    "unknown_field": json_values,
    # Where a model runs and chat inputs (issue 8); in this process (issue 9: nothing cached).
    "provider": st.sampled_from(
        ["auto", "groq", "fastest", "hf-inference", "gro q", "a/../b", "local", "LOCAL"]
    ),
    "endpoint": st.sampled_from(["mine", "nope", "https://evil.example", "a b"]),
    "system": st.text(max_size=10),
    "messages": st.lists(
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["user", "assistant", "system", "robot"]),
                "content": st.text(max_size=5),
            }
        ),
        max_size=3,
    ),
    "fallback": st.lists(alternates, max_size=3),
    "compare": st.lists(alternates, max_size=3),
    # Images and sounds (issue 10), from every kind of source, good and bad.
    "image": st.sampled_from(MEDIA_SOURCES) | st.text(max_size=20),
    "audio": st.sampled_from(MEDIA_SOURCES) | st.text(max_size=20),
}
run_fields = st.fixed_dictionaries(
    {}, optional={k: v | json_values if k != "text" else v for k, v in sensible.items()}
)


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value)
    except (ValueError, RecursionError):
        return "{"


bodies = (
    run_fields.map(_dumps)
    | st.text(max_size=40)
    | st.sampled_from(["[" * 5000 + "]" * 5000, "1" * 5000, "NaN", '"\\ud800"', "", "{}"])
)
sqs_message = st.fixed_dictionaries(
    {
        "eventSource": st.just("aws:sqs"),
        "messageId": st.uuids().map(str) | st.text(max_size=5),
        "body": bodies | json_values,
    }
)
# An SQS event: at least one message, among records that may be anything at all.
sqs_records = st.tuples(sqs_message, st.lists(sqs_message | json_values, max_size=5)).flatmap(
    lambda pair: st.permutations([pair[0], *pair[1]])
)
http_events = st.fixed_dictionaries(
    {
        "requestContext": st.just({"http": {"method": "POST"}}),
        "rawPath": st.just("/"),
        "body": bodies
        | st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode())
        | json_values,
        "isBase64Encoded": st.booleans(),
    },
    optional={
        "queryStringParameters": st.dictionaries(st.text(max_size=8), json_values, max_size=3)
    },
)
eventbridge_events = st.fixed_dictionaries(
    {
        "detail-type": st.sampled_from(["Scheduled Event", "Custom"]),
        "source": st.just("aws.events"),
        "detail": run_fields | json_values,
    }
)
s3_keys = (
    st.sampled_from(["uploads/a.png", "uploads/b+c%20.txt", "runs/x.jsonl", ""])
    | st.text(max_size=12)
    | json_values
)
s3_events = st.fixed_dictionaries(
    {
        "source": st.just("aws.s3"),
        "detail-type": st.sampled_from(["Object Created", "Object Deleted"]),
        "detail": st.fixed_dictionaries(
            {
                "bucket": st.fixed_dictionaries({"name": st.sampled_from(["uploads", ""])}),
                "object": st.fixed_dictionaries({"key": s3_keys}),
            }
        )
        | json_values,
    }
) | st.fixed_dictionaries(
    {
        "Records": st.lists(
            st.fixed_dictionaries(
                {
                    "eventSource": st.just("aws:s3"),
                    "eventName": st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete"]),
                    "s3": st.fixed_dictionaries(
                        {
                            "bucket": st.fixed_dictionaries({"name": st.just("uploads")}),
                            "object": st.fixed_dictionaries({"key": s3_keys}),
                        }
                    )
                    | json_values,
                }
            ),
            min_size=1,
            max_size=3,
        )
    }
)
events = st.one_of(
    st.tuples(st.just("s3"), s3_events),
    st.tuples(
        st.just("sqs"),
        st.fixed_dictionaries(
            {
                "Records": st.lists(
                    s3_events.map(
                        lambda e: {"eventSource": "aws:sqs", "messageId": "s3", "body": _dumps(e)}
                    ),
                    min_size=1,
                    max_size=2,
                )
            }
        ),
    ),
    st.tuples(
        st.just("sqs"),
        st.fixed_dictionaries({"Records": sqs_records}),
    ),
    st.tuples(st.just("http"), http_events),
    st.tuples(st.just("plain"), eventbridge_events),
    st.tuples(st.just("plain"), run_fields),
    st.tuples(st.just("plain"), json_values),
)


# -- 1. no event breaks the reply ----------------------------------------------------------------


@pytest.fixture
def everywhere(env, aws, hf, tmp_path, monkeypatch):
    """The handler against the fake HF server and a moto server, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    env.setenv("HF_DEADLINE_MARGIN", "0.3")
    env.setenv("HF_REQUEST_TIMEOUT", "0.5")
    env.setenv("HF_MAX_RETRIES", "1")
    calls = Counter()

    def answer(request: Seen) -> Reply:
        calls["n"] += 1
        if calls["n"] % 97 == 0:
            return Reply(503, {"error": "loading", "estimated_time": 0.1})
        if calls["n"] % 89 == 0:
            return Reply(hang=True)
        return Reply(
            200,
            [
                {"label": "a", "score": 0.9},
                {"label": TOKEN, "score": 0.1},
                {"label": OWN_KEY, "score": 0},
            ],
        )

    hf.on(PATH, answer)
    hf.on_chat(answer)  # an answer of no chat shape: a clear failure, never a crash
    hf.on("/endpoints/mine", answer, prefix="")
    env.setenv(
        "HF_ENDPOINTS",
        json.dumps({"mine": {"url": hf.base_url + "/endpoints/mine", "token_env": "MINE_KEY"}}),
    )
    env.setenv("MINE_KEY", OWN_KEY)
    env.setenv("S3_TRIGGERS", json.dumps({"uploads/": "default"}))
    return hf


OWN_KEY = "mine_own_key_must_never_leak_0123456789"
REMAINING_MS = 1500
REPLY_BY_S = REMAINING_MS / 1000 - 0.3  # the remaining time less HF_DEADLINE_MARGIN


@examples(1000, 20000)
@given(tagged=events)
def test_no_event_breaks_the_reply(everywhere, tagged):
    from handler import lambda_handler

    kind, event = tagged
    started = time.monotonic()
    reply = lambda_handler(event, FakeContext(REMAINING_MS))
    elapsed = time.monotonic() - started
    assert elapsed < REPLY_BY_S + 0.15, f"replied after {elapsed:.2f} s"
    text = json.dumps(reply)
    assert TOKEN not in text and OWN_KEY not in text
    if kind == "sqs":
        assert list(reply) == ["batchItemFailures"]
        ids = {r.get("messageId") for r in event["Records"] if isinstance(r, dict)}
        for failure in reply["batchItemFailures"]:
            assert list(failure) == ["itemIdentifier"]
            assert failure["itemIdentifier"] in ids | {""}
    elif kind == "http":
        assert set(reply) == {"statusCode", "headers", "body"}
        assert reply["statusCode"] in (200, 400, 500, 502, 504)
        assert isinstance(json.loads(reply["body"]), dict)
    elif kind == "s3" and "results" in reply:  # an S3 notification of several objects
        for one in reply["results"]:
            assert set(one) == {"success", "result", "is_classification", "model", "error"}
    else:
        assert isinstance(reply, dict)
        if "success" in reply:
            assert set(reply) == {"success", "result", "is_classification", "model", "error"}
            assert reply["success"] or (reply["result"] is None and reply["error"])
        else:
            assert "total" in reply  # a batch's summary (or a fan-out's, or a comparison's)


# -- 2. exactly once -----------------------------------------------------------------------------

BEHAVIOURS = ["ok", "ok", "ok", "429", "503", "500", "reset", "hang", "trickle", "404"]


def faulty_server(hf: FakeHF, schedules: dict[str, list[str]]) -> None:
    """Each text has its own list of behaviours, one per attempt (then ok)."""
    attempts: Counter[str] = Counter()

    def answer(request: Seen) -> Reply:
        text = request.json["inputs"]
        attempt = attempts[text]
        attempts[text] += 1
        plan = schedules.get(text, [])
        behaviour = plan[attempt] if attempt < len(plan) else "ok"
        ok = Reply(200, [{"label": text, "score": 1.0}])
        return {
            "ok": ok,
            "429": Reply(429, {"error": "slow down"}, {"Retry-After": "0"}),
            "503": Reply(503, {"error": "Model is currently loading", "estimated_time": 0.05}),
            "500": Reply(500, {"error": "boom"}),
            "reset": Reply(reset=True),
            "hang": Reply(hang=True),
            "trickle": Reply(200, ok.body, trickle=0.01),
            "404": Reply(404, {"error": "Model not found"}),
        }[behaviour]

    hf.on(PATH, answer)


@st.composite
def batch_inputs(draw) -> tuple[list[bytes], list[Any], dict[str, list[str]]]:
    """JSONL lines (good items with and without ids, and malformed lines), the id each line's
    item must end under, and each text's fault schedule."""
    lines, ids, schedules = [], [], {}
    for position in range(draw(st.integers(0, 24))):
        kind = draw(st.sampled_from(["id", "id", "plain", "text", "bad"]))
        text = f"text {position}"
        if kind == "bad":
            bad = draw(
                st.sampled_from(
                    [
                        b"{not json",
                        b"\xff\xfe\x00",
                        b"[" * 200 + b"]" * 200,
                        b"1" * 5000,
                        b"[1, 2]",
                        b"NaN",
                    ]
                )
            )
            lines.append(bad)
            ids.append(("bad", position))
            continue
        schedules[text] = draw(st.lists(st.sampled_from(BEHAVIOURS), max_size=3))
        if kind == "id":
            lines.append(json.dumps({"id": f"i{position}", "text": text}).encode())
            ids.append(f"i{position}")
        elif kind == "plain":
            lines.append(json.dumps({"text": text}).encode())
            ids.append(position)
        else:
            lines.append(json.dumps(text).encode())
            ids.append(position)
        if draw(st.booleans()) and draw(st.booleans()):
            lines.append(b"   ")  # blank lines are not items
    return lines, ids, schedules


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def expected_id(entry: Any) -> Any:
    return entry[1] if isinstance(entry, tuple) else entry


def check_records(records: list[dict[str, Any]], ids: list[Any]) -> None:
    bad = {e[1] for e in ids if isinstance(e, tuple)}
    for record in records:
        if record["id"] in bad and isinstance(record["id"], int):
            assert record["success"] is False and record["error"].startswith("line ")


@pytest.fixture
def faults(env, hf, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env.setenv("HF_REQUEST_TIMEOUT", "0.3")
    env.setenv("HF_MAX_RETRIES", "2")
    env.setenv("HF_BACKOFF_BASE", "0.01")
    env.setenv("HF_BACKOFF_MAX", "0.05")
    return hf


def run_file_batch(source: Path, output: Path, budget: float, interrupt_after: float | None):
    """One batch as the CLI runs it (the file plan, the lifecycle), stopped by the deadline
    or, like Ctrl-C does, by `stop("interrupted")` after `interrupt_after` seconds."""
    from function.batchfields import BatchFields
    from function.lifecycle import cli_invocation, handle
    from function.settings import load_settings
    from function.storage import continuation_uri, file_plan

    async def main():
        def on_start(engine):
            if interrupt_after is not None:
                asyncio.get_running_loop().call_later(interrupt_after, engine.stop, "interrupted")

        plan = file_plan(
            load_settings(),
            {},
            BatchFields(input_uri=str(source), concurrency=8),
            str(source),
            str(output),
            continuation_uri(str(output)),
            on_start=on_start,
        )
        return await handle(cli_invocation("cli", {}), timeout=budget, plan=plan)

    return asyncio.run(main()).reply


@examples(100, 2000)
@given(
    case=batch_inputs(),
    budgets=st.lists(st.sampled_from([0.6, 1.0, 2.0]), min_size=1, max_size=4),
    interrupts=st.lists(st.none() | st.floats(0.0, 0.5), min_size=4, max_size=4),
)
def test_batches_are_exactly_once(faults, tmp_path, case, budgets, interrupts):
    lines, ids, schedules = case
    faulty_server(faults, schedules)
    folder = tmp_path / f"run-{time.monotonic_ns()}"
    folder.mkdir()
    source = folder / "in.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in lines))
    want = sorted(map(str, (expected_id(e) for e in ids)))
    done: list[dict[str, Any]] = []
    step = 0
    while True:
        output = folder / f"out{step}.jsonl"
        budget = budgets[step] if step < len(budgets) else 30.0  # then let it finish
        interrupt = interrupts[step] if step < len(interrupts) else None
        summary = run_file_batch(source, output, budget, interrupt)
        assert "total" in summary, summary
        written = read_jsonl(output)
        # Why it failed, as the summary says: the first failed record of the output.
        failed = [r for r in written if not r["success"]]
        first = summary.get("first_failure")
        said = (first["id"], first["error"]) if first else None
        assert said == ((failed[0]["id"], failed[0]["error"]) if failed else None), said
        done += written
        continued = read_jsonl(Path(str(output).removesuffix(".jsonl") + ".continuation.jsonl"))
        # At each step: every id exactly once across the outputs and the continuation.
        assert sorted(str(r["id"]) for r in done + continued) == want
        assert summary.get("continued", 0) == len(continued)
        if not continued:
            break
        assert all("id" in line for line in continued)
        source = folder / f"in{step + 1}.jsonl"
        (Path(str(output).removesuffix(".jsonl") + ".continuation.jsonl")).rename(source)
        step += 1
        assert step < 12, "the batch does not converge"
    assert sorted(str(r["id"]) for r in done) == want
    check_records(done, ids)


# -- 3. exactly once through the queue -------------------------------------------------------------


@pytest.fixture
def queue(faults, aws, monkeypatch):
    from tests.aws import client

    sqs = client("sqs")
    url = sqs.create_queue(QueueName=f"work-{time.monotonic_ns()}")["QueueUrl"]
    monkeypatch.setenv("RUN_QUEUE_URL", url)
    return sqs, url, faults


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


@examples(40, 600)
@given(
    case=batch_inputs(),
    deadlines=st.lists(st.sampled_from([1200, 1800, 3000]), min_size=1, max_size=6),
    chunk=st.none() | st.integers(1, 8),
)
def test_queued_batches_are_exactly_once(queue, tmp_path, case, deadlines, chunk):
    """A batch event (or a fan-out) in AWS: the unfinished work goes back on the queue as
    continuations and parts, messages that fail go back too, and the workers drain it."""
    from handler import lambda_handler

    sqs, url, hf = queue
    lines, ids, schedules = case
    faulty_server(hf, schedules)
    folder = tmp_path / f"q-{time.monotonic_ns()}"
    folder.mkdir()
    source = folder / "in.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in lines))
    first = {"input_uri": str(source), "output_uri": str(folder / "out.jsonl"), "concurrency": 4}
    if chunk:
        first = {**first, "fan_out": True, "chunk_size": chunk, "output_uri": f"{folder}/out/"}
    reply = lambda_handler(first, FakeContext(deadlines[0]))
    if reply.get("success") is False and "before the deadline" in str(reply.get("error")):
        # The invocation itself ran out of time (a queue slow to take a fan-out's parts on
        # a loaded machine): its caller invokes it again. A part queued twice writes the
        # same part's files again, so no record is doubled.
        lambda_handler(first, FakeContext(30_000))
    step = 1
    while True:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", [])
        if not messages:
            break
        remaining = deadlines[step] if step < len(deadlines) else 30_000
        reply = lambda_handler(sqs_event(messages), FakeContext(remaining))
        again = {f["itemIdentifier"] for f in reply["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in again:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        step += 1
        assert step < 60, "the queue does not drain"
    outputs = [p for p in folder.rglob("*.jsonl") if p != source and "continuation" not in p.name]
    records = [r for path in outputs for r in read_jsonl(path)]
    want = sorted(map(str, (expected_id(e) for e in ids)))
    assert sorted(str(r["id"]) for r in records) == want
    check_records(records, ids)
