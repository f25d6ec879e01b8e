"""Batches: every input item accounted for exactly once, whatever the server does."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from function.batch import items_from_jsonl, items_from_list
from function.batchfields import BatchFields
from function.client import Deadline
from function.lifecycle import Lifecycle
from function.runs import Run
from function.settings import load_settings
from function.storage import BatchPlan, ListWriter
from function.triggers import Request
from tests.conftest import TOKEN, invoke, run_cli
from tests.fakehf import FakeHF, Reply, Seen

MODEL = "facebook/bart-large-mnli"
PATH = f"/models/{MODEL}"


def labels_for(request: Seen) -> Reply:
    """A zero-shot answer that names the text it classified (to check records match)."""
    text = request.json["inputs"]
    return Reply(200, [{"label": text, "score": 0.9}, {"label": "other", "score": 0.1}])


async def lines_of(texts):
    """Lines as an input file gives them."""
    from function.batch import Line

    for number, text in enumerate(texts, 1):
        yield Line(number, text.encode() + b"\n", None, len(text) + 1)


def batch(
    items,
    *,
    budget: float = 30.0,
    cap: int = 64,
    batch_size: int = 32,
    shared=None,
    window: int = 1024,
):
    """Run a batch in-process through the lifecycle; returns (summary, records, continuation)."""

    async def main():
        settings = load_settings()
        lifecycle = Lifecycle(settings, Deadline(budget), Run("direct", datetime.now(UTC)))
        output, continuation = ListWriter(), ListWriter()

        async def open_items():
            return items

        options = BatchFields(items=[], concurrency=cap, batch_size=batch_size)
        plan = BatchPlan(
            shared or {}, options, open_items, output, continuation, "memory", window=window
        )
        (done,) = await lifecycle.run([Request({})], plan)
        return done.body, output.values, continuation.values

    return asyncio.run(main())


def test_every_item_once_in_input_order_through_a_storm_of_faults(env, hf):
    env.setenv("HF_MAX_RETRIES", "8")
    calls = {"n": 0}

    def flaky(request: Seen) -> Reply:
        calls["n"] += 1
        n = calls["n"]
        if n % 7 == 0:
            return Reply(429, {"error": "slow down"}, {"Retry-After": "0.05"})
        if n % 11 == 0:
            return Reply(503, {"error": "Model is currently loading", "estimated_time": 0.1})
        if n % 13 == 0:
            return Reply(reset=True)
        if n % 17 == 0:
            return Reply(502, "<html>bad gateway</html>", {"Content-Type": "text/html"})
        return labels_for(request)

    hf.on(PATH, flaky)
    lines = [json.dumps({"id": f"t{i}", "text": f"text {i}"}) for i in range(400)]
    lines.insert(100, "{not json")
    lines.insert(200, json.dumps(["not", "an", "object"]))

    summary, records, continued = batch(items_from_jsonl(lines_of(lines)))

    assert continued == []
    assert [r["id"] for r in records] == [
        *[f"t{i}" for i in range(100)],
        100,
        *[f"t{i}" for i in range(100, 199)],
        200,
        *[f"t{i}" for i in range(199, 400)],
    ]
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (402, 400, 2)
    for record in records:
        if record["success"]:
            assert record["result"][0]["label"] == record["id"].replace("t", "text ")
    assert records[100]["error"].startswith("line 101: not valid JSON")
    assert records[200]["error"] == "line 201: expected an object of run inputs or a text"


def test_identical_requests_are_sent_once(env, hf):
    hf.on(PATH, labels_for)
    items = [{"text": f"text {i % 50}"} for i in range(500)]
    summary, records, _ = batch(items_from_list(items))
    assert summary["succeeded"] == 500
    assert len(hf.requests) == 50
    assert all(r["result"][0]["label"] == items[r["id"]]["text"] for r in records)


def test_failures_are_records_not_lost_lines(env, hf):
    env.setenv("HF_MAX_RETRIES", "1")
    hf.on(PATH, labels_for)
    hf.on("/models/org/broken", Reply(500, {"error": "boom"}))
    items = [
        {"text": "fine"},
        {"model": "org/broken", "text": "x"},
        {"model": "../x"},
        {"candidate_labels": []},
        "plain text item",
        42,
    ]
    _summary, records, _ = batch(items_from_list(items))
    assert [r["id"] for r in records] == [0, 1, 2, 3, 4, 5]
    assert [r["success"] for r in records] == [True, False, False, False, True, False]
    assert "HTTP 500" in records[1]["error"]
    assert records[5]["error"] == "items[5]: expected an object of run inputs or a text"


def test_shared_fields_apply_to_every_item_and_items_override_them(env, hf):
    hf.on(PATH, labels_for)
    _summary, _records, _ = batch(
        items_from_list([{"text": "a"}, {"text": "b", "parameters": {"multi_label": True}}]),
        shared={"candidate_labels": "x, y", "parameters": {"hypothesis_template": "It is {}."}},
    )
    sent = sorted((r.json for r in hf.requests), key=lambda b: b["inputs"])
    assert sent[0]["parameters"] == {
        "hypothesis_template": "It is {}.",
        "candidate_labels": ["x", "y"],
    }
    assert sent[1]["parameters"]["multi_label"] is True


def test_deadline_splits_the_input_into_output_and_continuation(env, hf):
    hf.on(PATH, lambda request: Reply(200, labels_for(request).body, delay=0.2))
    items = [{"id": i, "text": f"t{i}"} for i in range(200)]
    summary, records, continued = batch(items_from_list(items), budget=3.0, cap=4, window=64)
    # Nothing lost, nothing twice: the records and the continuation cover the input, each
    # in input order, and the continuation holds the items as they came in.
    written, rest = [r["id"] for r in records], [c["id"] for c in continued]
    assert sorted(written + rest) == list(range(200))
    assert written == sorted(written) and rest == sorted(rest)
    assert continued and records
    assert continued == [items[i] for i in rest]
    assert summary["continued"] == len(continued)
    assert all(r["success"] for r in records)


def test_adaptive_concurrency_finds_an_unknown_cap_and_loses_nothing(env, hf):
    capped = FakeHF(latency=0.05, max_in_flight=8).start()
    try:
        env.setenv("HUGGINGFACE_API_ENDPOINT", capped.endpoint)
        env.setenv("HF_MAX_RETRIES", "10")
        capped.on(PATH, labels_for)
        items = [{"text": f"t{i}"} for i in range(300)]
        summary, records, _ = batch(items_from_list(items), cap=64)
    finally:
        capped.stop()
    assert summary["succeeded"] == 300
    assert [r["id"] for r in records] == list(range(300))
    assert capped.refused > 0  # it did hit the cap...
    assert capped.refused < 40  # ...and then stayed near it instead of hammering


def test_an_item_waiting_out_a_retry_after_does_not_stall_the_items_behind_it(env, hf):
    # Records go out in input order, so item 0 (told to come back in 1 s) holds every record
    # after it. The items behind it still run, beyond the window, while it waits.
    first = {"refused": False}

    def answer(request: Seen) -> Reply:
        if request.json["inputs"] == "t0" and not first["refused"]:
            first["refused"] = True
            return Reply(429, {"error": "slow down"}, {"Retry-After": "1"})
        return labels_for(request)

    hf.on(PATH, answer)
    items = [{"id": i, "text": f"t{i}"} for i in range(40)]
    summary, records, _ = batch(items_from_list(items), cap=4, window=8)
    assert summary["succeeded"] == 40
    assert [r["id"] for r in records] == list(range(40))
    texts = [r.json["inputs"] for r in hf.requests]
    retried_at = len(texts) - 1 - texts[::-1].index("t0")
    assert retried_at > 8, texts  # more than a window of items ran while t0 waited


@pytest.mark.parametrize("many", [False, True], ids=["single run", "batch"])
def test_requests_go_through_the_proxy_of_the_environment(env, hf, many):
    # The endpoint's host does not resolve: only the proxy (the fake server) can answer.
    env.setenv("HUGGINGFACE_API_ENDPOINT", "http://hf-api.invalid/hf-inference")
    env.setenv("HTTP_PROXY", hf.base_url)
    env.delenv("NO_PROXY", raising=False)
    env.delenv("no_proxy", raising=False)
    hf.on(PATH, labels_for)
    if many:
        summary, records, _ = batch(items_from_list([{"text": f"t{i}"} for i in range(5)]))
        assert summary["succeeded"] == 5, records
    else:
        reply = invoke({"model": MODEL, "text": "t0", "candidate_labels": "a, b"}).reply
        assert reply["success"], reply
    assert hf.requests and {r.headers["host"] for r in hf.requests} == {"hf-api.invalid"}


def test_feature_extraction_texts_go_in_chunks(env, hf):
    model = "sentence-transformers/all-MiniLM-L6-v2"
    path = f"/models/{model}/pipeline/feature-extraction"

    def embed(request: Seen) -> Reply:
        texts = request.json["inputs"]
        assert isinstance(texts, list)
        return Reply(200, [[float(len(t)), 1.0, 2.0] for t in texts])

    hf.on(path, embed)
    items = [{"text": "x" * (i + 1)} for i in range(100)]
    summary, records, _ = batch(
        items_from_list(items),
        batch_size=32,
        shared={"model": model, "task": "feature-extraction", "candidate_labels": None},
    )
    assert summary["succeeded"] == 100
    assert len(hf.requests) == 4
    assert max(len(r.json["inputs"]) for r in hf.requests) == 32
    assert [r["result"] for r in records] == [[[float(i + 1), 1.0, 2.0]] for i in range(100)]


def cli(*args, hf, **extra):
    return run_cli(
        *args, env={"HUGGINGFACE_API_ENDPOINT": hf.endpoint, "HUGGINGFACE_API_KEY": TOKEN, **extra}
    )


def test_cli_batch_streams_records_then_the_summary(hf, tmp_path: Path):
    hf.on(PATH, labels_for)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": f"t{i}"}) + "\n" for i in range(30)))
    done = cli("batch", "--input", str(source), "--concurrency", "4", hf=hf)
    assert done.returncode == 0, done.stderr
    *records, summary = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in records] == list(range(30))
    assert summary["total"] == 30 and summary["succeeded"] == 30
    assert set(summary) >= {"total", "succeeded", "failed", "output", "elapsed_s", "items_per_s"}
    assert "progress: 30/30 (100%) 30 ok 0 failed" in done.stderr
    assert hf.peak_in_flight <= 4


def test_cli_batch_to_a_file_with_a_continuation(hf, tmp_path: Path):
    hf.on(PATH, lambda request: Reply(200, labels_for(request).body, delay=0.3))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(f"text {i}") + "\n" for i in range(60)))
    done = cli(
        "batch",
        "--input",
        str(source),
        "--output",
        str(out),
        "--concurrency",
        "2",
        "--timeout",
        "3",
        hf=hf,
    )
    assert done.returncode == 1
    summary = json.loads(done.stdout.splitlines()[-1])
    continuation = tmp_path / "out.continuation.jsonl"
    assert summary["continuation"] == str(continuation)
    written = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    rest = [json.loads(line) for line in continuation.read_text().splitlines()]
    assert rest and written
    # Items without an id keep their position (as their id) in the continuation.
    assert all(line["text"] == f"text {line['id']}" for line in rest)
    assert sorted(written + [line["id"] for line in rest]) == list(range(60))
    # The way on, as a command: the same options, the continuation in, an output beside.
    (going_on,) = [line for line in done.stderr.splitlines() if line.startswith("To go on: ")]
    assert going_on.endswith(
        f"--concurrency 2 --timeout 3 --input {continuation} --output {tmp_path / 'out.rest.jsonl'}"
    )


def test_a_cli_batch_that_answered_nothing_by_its_timeout_says_so(hf, tmp_path: Path):
    """A --timeout that all goes on waiting (a local model's load, a slow API) answers
    nothing: stderr says why, and the command that goes on leaves that --timeout out (with
    it, the command would do the same again)."""
    hf.on(PATH, lambda request: Reply(200, labels_for(request).body, delay=3))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(f"text {i}") + "\n" for i in range(5)))
    done = cli("batch", "--input", str(source), "--output", str(out), "--timeout", "1", hf=hf)
    assert done.returncode == 1
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["succeeded"] == 0 and summary["continued"] == 5
    assert "No item succeeded within --timeout 1 s" in done.stderr, done.stderr
    (going_on,) = [line for line in done.stderr.splitlines() if line.startswith("To go on: ")]
    assert "--timeout" not in going_on and going_on.endswith(
        f"--input {tmp_path / 'out.continuation.jsonl'} --output {tmp_path / 'out.rest.jsonl'}"
    )


def test_a_cli_batch_whose_items_all_fail_says_why_once(hf, tmp_path: Path):
    """0 ok and N failed is not an answer: stderr names the first failed item in the input
    (not the first to fail) and its error, once, with no control character; the summary
    carries it. A batch with one success does not say so."""
    error = "Model not found \x1b[2J\x1b]0;owned\x07"  # escape sequences: never run

    def answer(request: Seen) -> Reply:
        delay = 0.5 if request.json["inputs"] == "text 0" else 0.0  # the first fails last
        return Reply(404, {"error": error}, delay=delay)

    hf.on(PATH, answer)
    source = tmp_path / "in.jsonl"
    lines = [json.dumps("text 0"), "{not json", *(json.dumps(f"text {i}") for i in range(2, 30))]
    source.write_text("".join(line + "\n" for line in lines))
    done = cli("batch", "--input", str(source), "--output", str(tmp_path / "out.jsonl"), hf=hf)
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["failed"] == 30 and summary["failed_by_kind"]["not_found"] == 29
    first = summary["first_failure"]
    assert first["id"] == 0 and "not found" in first["error"].lower(), summary
    said = [line for line in done.stderr.splitlines() if line.startswith("No item succeeded")]
    assert len(said) == 1 and said[0].startswith("No item succeeded (30 failed). The first in")
    assert ", id 0: " in said[0] and "\x1b" not in done.stderr and "\x07" not in done.stderr
    hf.on(PATH, lambda r: labels_for(r) if r.json["inputs"] == "text 0" else Reply(404, {}))
    some = cli("batch", "--input", str(source), "--output", str(tmp_path / "o2.jsonl"), hf=hf)
    assert json.loads(some.stdout.splitlines()[-1])["succeeded"] == 1
    assert "No item succeeded" not in some.stderr


@pytest.mark.parametrize("id_", [TOKEN, [TOKEN], {"k": TOKEN}, [{"deep": [f"x {TOKEN} y"]}]])
def test_a_token_given_as_an_id_never_shows_in_a_record_or_the_reply(env, hf, id_):
    hf.on(PATH, labels_for)
    reply = invoke({"items": [{"id": id_, "text": "a"}, {"id": "plain", "text": "b"}]}).reply
    assert reply["succeeded"] == 2, reply
    assert TOKEN not in json.dumps(reply)
    assert [r["id"] for r in reply["results"]][1] == "plain"


def test_cli_batch_rate_cap(hf, tmp_path: Path):
    hf.on(PATH, labels_for)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(f"t{i}") + "\n" for i in range(20)))
    done = cli("batch", "--input", str(source), "--rate", "10", hf=hf)
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["succeeded"] == 20
    assert summary["elapsed_s"] >= 1.5  # 20 requests at 10/s


@pytest.mark.parametrize("args", [["batch"], ["batch", "--input", "nope.jsonl"]])
def test_cli_batch_usage_errors(hf, args):
    assert cli(*args, hf=hf).returncode == 2


# -- batches through the Lambda handler --------------------------------------------------------


def test_handler_answers_a_small_batch_inline(env, hf):
    hf.on(PATH, labels_for)
    summary = invoke({"text": ["a", "b", "a"], "candidate_labels": "x, y"}).reply
    assert (summary["total"], summary["succeeded"], summary["output"]) == (3, 3, None)
    assert [r["id"] for r in summary["results"]] == [0, 1, 2]
    assert [r["result"][0]["label"] for r in summary["results"]] == ["a", "b", "a"]
    assert len(hf.requests) == 2  # "a" twice: sent once


def test_handler_batch_from_a_file_to_a_file(env, hf, tmp_path):
    hf.on(PATH, labels_for)
    source, out = tmp_path / "in.jsonl", tmp_path / "out" / "records.jsonl"
    source.write_text(
        "".join(json.dumps({"id": f"x{i}", "text": f"t{i}"}) + "\n" for i in range(150))
    )
    summary = invoke(
        {"input_uri": str(source), "output_uri": str(out), "concurrency": 8}, remaining_ms=30_000
    ).reply
    assert summary["succeeded"] == 150 and summary["output"] == str(out)
    assert "results" not in summary
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == [f"x{i}" for i in range(150)]


def test_handler_batch_without_output_goes_under_the_results(env, hf, tmp_path):
    hf.on(PATH, labels_for)
    items = [{"text": f"t{i}"} for i in range(101)]
    summary = invoke({"items": items}, remaining_ms=30_000).reply
    assert summary["output"].startswith(str(tmp_path / "runs" / "batches"))
    assert len(Path(summary["output"]).read_text().splitlines()) == 101


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"items": "nope"}, "items: Input should be a valid list"),
        (
            {"items": [], "concurrency": 0},
            "concurrency: Input should be greater than or equal to 1",
        ),
        ({"items": [], "rate": "fast"}, "rate: Input should be a valid number"),
        ({"items": [], "rate": 0}, "rate: Input should be greater than 0"),
        ({"input_uri": "/no/such/file.jsonl"}, "input_uri: cannot read /no/such/file.jsonl"),
        ({"input_uri": "s3://bucket-only"}, "expected s3://bucket/key"),
    ],
)
def test_handler_batch_input_errors(env, hf, event, message):
    envelope = invoke(event).reply
    assert envelope["success"] is False and message in envelope["error"]


def test_an_item_naming_a_run_config_starts_from_it_and_a_missing_one_fails_alone(
    env, hf, tmp_path
):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "default.json").write_text(json.dumps({"model": MODEL, "candidate_labels": "d"}))
    (configs / "other.json").write_text(
        json.dumps({"model": "org/other", "candidate_labels": "x, y"})
    )
    env.setenv("RUN_CONFIG_DIR", str(configs))
    hf.on(PATH, labels_for)
    hf.on("/models/org/other", labels_for)
    items = [
        {"id": 0, "text": "a"},
        {"id": 1, "text": "b", "run_config": "other"},
        {"id": 2, "text": "c", "run_config": "nosuch"},
    ]
    _summary, records, _ = batch(items_from_list(items))
    assert [r["model"] for r in records[:2]] == [MODEL, "org/other"]
    assert [r["success"] for r in records] == [True, True, False]
    assert "no run config named 'nosuch'" in records[2]["error"]
    (other,) = hf.seen("/models/org/other")
    assert other.json["parameters"]["candidate_labels"] == ["x", "y"]


def test_what_a_batch_cost_is_counted_once_per_request(env, hf):
    def billed(request: Seen) -> Reply:
        reply = labels_for(request)
        return Reply(200, reply.body, {"x-compute-characters": str(len(request.body))})

    hf.on(PATH, billed)
    items = [{"text": f"t{i % 3}"} for i in range(30)]  # 3 texts, each 10 times
    summary, _records, _ = batch(items_from_list(items))
    assert len(hf.requests) == 3
    assert summary["characters"] == sum(len(r.body) for r in hf.requests)

    model = "sentence-transformers/all-MiniLM-L6-v2"
    path = f"/models/{model}/pipeline/feature-extraction"
    hf.requests.clear()
    hf.on(
        path,
        lambda request: Reply(
            200,
            [[1.0] for _ in request.json["inputs"]],
            {"x-compute-characters": str(sum(len(t) for t in request.json["inputs"]))},
        ),
    )
    texts = ["x" * (i + 1) for i in range(20)]
    summary, _records, _ = batch(
        items_from_list([{"text": t} for t in texts]),
        batch_size=8,
        shared={"model": model, "task": "feature-extraction", "candidate_labels": None},
    )
    assert summary["characters"] == sum(len(t) for t in texts)  # not 8 times over


def test_answers_waiting_behind_a_stuck_item_stay_within_the_byte_budget():
    """Item 100 is stuck; the others finish with big answers. Once answers have come back,
    no new item starts while the answers waiting, and those the running items will bring
    (at the average size so far), pass PENDING_BYTES."""
    from function.batch import PENDING_BYTES, BatchRun
    from function.envelope import Outcome, success_envelope

    size = PENDING_BYTES // 10
    peak = {"bytes": 0}

    async def main():
        release = asyncio.Event()

        async def run_item(item):
            if item.id == 100:
                await release.wait()
            else:
                await asyncio.sleep(0)  # no timers: the same order under any load
            peak["bytes"] = max(peak["bytes"], engine._pending_bytes)
            if engine._pending_bytes > 2 * PENDING_BYTES or item.id == 299:
                release.set()
            return Outcome(success_envelope([], is_classification=False, model="m"), size=size)

        engine = BatchRun(run_item, ListWriter(), ListWriter(), stop_at=Deadline(30), window=64)
        asyncio.get_running_loop().call_later(1.0, release.set)  # whatever happens
        summary = await engine.run(items_from_list([{"text": f"t{i}"} for i in range(300)]))
        return summary

    summary = asyncio.run(main())
    assert summary.succeeded == 300
    assert peak["bytes"] <= PENDING_BYTES + size  # it used to reach a window's worth


def test_the_first_items_run_while_the_rest_of_the_window_starts():
    """A big window does not hold the first items back until it has started them all: they
    (and a model's first call) are under way after the first few dozen starts."""
    from function.batch import BatchRun
    from function.envelope import Outcome, success_envelope

    started_before_first = []

    async def main():
        async def run_item(item):
            if not started_before_first:
                started_before_first.append(engine.summary.total)
            await asyncio.sleep(0)
            return Outcome(success_envelope([], is_classification=False, model="m"))

        engine = BatchRun(run_item, ListWriter(), ListWriter(), stop_at=Deadline(30), window=1024)
        return await engine.run(items_from_list([{"text": f"t{i}"} for i in range(1000)]))

    summary = asyncio.run(main())
    assert summary.succeeded == 1000
    assert started_before_first[0] <= 100  # it used to be the whole window, 1,000


@pytest.mark.parametrize(
    "under", ["runs/2026-01-01.jsonl", "runs/usage/x/default.json", "runs/cache/ab.json"]
)
def test_an_event_cannot_write_over_what_the_job_keeps(env, hf, tmp_path, under):
    """Records, usage totals and cached answers are the job's: an output_uri there is refused
    before anything is written; BATCHES_URI, under RESULTS_URI, is where outputs go."""
    hf.on("/models/facebook/bart-large-mnli", Reply(200, [{"label": "a", "score": 1.0}]))
    target = tmp_path / under
    reply = invoke({"items": ["a"], "output_uri": str(target)}).reply
    assert reply["error"].startswith("output_uri:") and "where the job keeps" in reply["error"]
    assert not target.exists() and hf.requests == []
    fine = invoke({"items": ["a"], "output_uri": str(tmp_path / "runs" / "batches" / "o.jsonl")})
    assert fine.reply["succeeded"] == 1


def test_an_item_brings_its_own_input_not_the_run_config_s(env, hf):
    """The run config's text is for its single runs: an item without a text fails, naming
    it, instead of classifying the config's sentence; a text shared by the batch applies."""
    hf.on(PATH, labels_for)
    items = [{"id": "no text"}, {"id": "t", "text": "a"}, {"id": "blank", "text": " \n"}]
    _summary, records, _ = batch(items_from_list(items))
    assert [r["success"] for r in records] == [False, True, False]
    assert records[0]["error"].startswith("Invalid input: text is required")
    assert records[2]["error"] == "Invalid input: text: expected some text, got only whitespace"
    assert [r.json["inputs"] for r in hf.requests] == ["a"]
    _summary, records, _ = batch(
        items_from_list([{"model": MODEL}, {"model": MODEL, "text": "b"}]), shared={"text": "s"}
    )
    assert [r["success"] for r in records] == [True, True]
    assert sorted(r.json["inputs"] for r in hf.requests[1:]) == ["b", "s"]


def test_progress_counts_the_items_that_finished_not_only_those_written_in_order():
    """A local model runs its texts by length: a long first text holds back the writing
    in input order, but the progress counts what is done."""
    import io

    from function.batch import BatchRun
    from function.cli import Progress
    from function.envelope import Outcome, success_envelope

    lines = io.StringIO()

    async def main():
        release = asyncio.Event()

        async def run_item(item):
            if item.id == 0:
                await release.wait()
            return Outcome(success_envelope([], is_classification=False, model="m"))

        progress = Progress(total=50, stream=lines)
        progress.EVERY_S = 0.0
        engine = BatchRun(
            run_item, ListWriter(), ListWriter(), stop_at=Deadline(30), progress=progress.update
        )
        asyncio.get_running_loop().call_later(0.2, release.set)
        return await engine.run(items_from_list([{"text": f"t{i}"} for i in range(50)]))

    summary = asyncio.run(main())
    assert summary.succeeded == 50
    shown = lines.getvalue().splitlines()
    assert any(line.startswith("progress: 49/50 (98%) 49 ok") for line in shown), shown
