"""`budget`: a batch starts no new item once it has used that much (per run, or with what
its run config used today); the items not started go to the continuation, never lost, and
the summary says why. The per-day totals stay exact when runs overlap."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from function.budget import Budget
from function.runs import LocalSink, S3Sink, Used
from tests.aws import client
from tests.conftest import invoke
from tests.fakehf import Reply
from tests.test_providers import LLAMA, chat_answer

MNLI = "facebook/bart-large-mnli"
LABELS = [{"label": "billing", "score": 0.9}, {"label": "shipping", "score": 0.1}]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_batch_stops_starting_items_at_its_character_budget(env, hf, tmp_path, concurrency):
    hf.on(f"/models/{MNLI}", Reply(200, LABELS, {"x-compute-characters": "10"}))
    items = [{"id": i, "text": f"ticket {i}"} for i in range(20)]
    output = tmp_path / "out.jsonl"
    summary = invoke(
        {
            "model": MNLI,
            "candidate_labels": "billing, shipping",
            "items": items,
            "output_uri": str(output),
            "concurrency": concurrency,
            "budget": {"characters": 30},
        }
    ).reply
    done = [json.loads(x)["id"] for x in output.read_text().splitlines()]
    used = {"characters": 10 * len(done), "tokens": 0}
    assert summary["stopped"] == "budget"
    assert summary["budget"] == {"characters": 30, "per": "run", "used": used}
    rest = Path(summary["continuation"]).read_text().splitlines()
    continued = [json.loads(x)["id"] for x in rest]
    assert sorted(done + continued) == list(range(20))  # none lost, none twice
    assert 3 <= len(done) <= 3 + concurrency  # what was in flight at the budget finished
    assert summary["characters"] == 10 * len(done) >= 30
    assert len(hf.seen(f"/models/{MNLI}")) == len(done)


def test_a_budget_holds_at_the_default_concurrency(env, hf, tmp_path):
    """In flight: what is left of the budget over what an item costs, not 64 items."""
    hf.on(f"/models/{MNLI}", Reply(200, LABELS, {"x-compute-characters": "30"}, delay=0.02))
    items = [{"id": i, "text": f"ticket {i}"} for i in range(40)]
    batch = {"model": MNLI, "candidate_labels": "a, b", "items": items}
    summary = invoke({**batch, "budget": {"characters": 100}}).reply
    assert summary["stopped"] == "budget" and 4 <= summary["succeeded"] <= 5
    assert summary["succeeded"] + summary["continued"] == 40


def test_a_first_item_that_costs_nothing_does_not_open_the_window(env, hf, tmp_path):
    def answer(request):
        if request.json["inputs"] == "bad":
            return Reply(400, {"error": "bad input"})
        return Reply(200, LABELS, {"x-compute-characters": "30"}, delay=0.02)

    hf.on(f"/models/{MNLI}", answer)
    items = [{"id": 0, "text": "bad"}] + [{"id": i, "text": f"t{i}"} for i in range(1, 40)]
    batch = {"model": MNLI, "candidate_labels": "a, b", "items": items}
    summary = invoke({**batch, "budget": {"characters": 100}}).reply
    assert summary["stopped"] == "budget" and summary["succeeded"] <= 6, summary


def test_a_token_budget_counts_input_and_output_tokens(env, hf, tmp_path):
    hf.on_chat(Reply(200, chat_answer()))  # 12 + 34 tokens an answer
    items = [{"id": i, "text": f"question {i}"} for i in range(5)]
    summary = invoke(
        {
            "model": LLAMA,
            "task": "text-generation",
            "items": items,
            "output_uri": str(tmp_path / "o.jsonl"),
            "concurrency": 1,
            "budget": {"tokens": 100},
        }
    ).reply
    assert summary["succeeded"] == 3 and summary["continued"] == 2  # 46, 92, 138 tokens
    assert summary["stopped"] == "budget"


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({}, "expected characters or tokens"),
        ({"characters": 0}, "budget: characters"),
        ({"characters": 10, "per": "week"}, "budget: per"),
        ("lots", "budget"),
    ],
)
def test_a_bad_budget_names_the_field(env, hf, budget, message):
    reply = invoke({"model": MNLI, "items": ["a"], "budget": budget}).reply
    assert message in reply["error"], reply["error"]
    assert hf.requests == []


CHARGED = {"x-compute-characters": "10"}
TODAY = datetime.now(UTC).date().isoformat()


def daily_config(env, tmp_path, budget):
    configs = tmp_path / "configs"
    configs.mkdir(exist_ok=True)
    config = {"model": MNLI, "candidate_labels": "billing, shipping", "budget": budget}
    (configs / "tickets.json").write_text(json.dumps(config))
    env.setenv("RUN_CONFIG_DIR", str(configs))


def test_a_daily_budget_counts_what_the_run_config_used_today(env, hf, tmp_path):
    daily_config(env, tmp_path, {"characters": 50, "per": "day"})
    hf.on(f"/models/{MNLI}", Reply(200, LABELS, CHARGED))
    batch = {"run_config": "tickets", "concurrency": 1}
    first = invoke({**batch, "items": [f"a{i}" for i in range(3)]}).reply
    assert first["succeeded"] == 3 and "stopped" not in first  # 30 of 50
    second = invoke({**batch, "items": [f"b{i}" for i in range(5)]}).reply
    assert (second["succeeded"], second["continued"], second["stopped"]) == (2, 3, "budget")
    assert second["budget"]["used"] == {"characters": 50, "tokens": 0}
    third = invoke({**batch, "items": ["c0", "c1"]}).reply  # used up: nothing starts
    assert (third["succeeded"], third["continued"]) == (0, 2)
    single = invoke({"run_config": "tickets", "text": "one more"}).reply
    assert not single["success"] and single["error"].startswith("Budget reached: run config")
    assert "50 of 50 characters today" in single["error"]
    assert len(hf.seen(f"/models/{MNLI}")) == 5
    # The day's total is the records' sum, kept beside them; an event may lift the budget.
    total = json.loads((tmp_path / "runs" / "usage" / TODAY / "tickets.json").read_text())
    assert (total["characters"], total["runs"]) == (50, 2)
    assert invoke({"run_config": "tickets", "text": "x", "budget": None}).reply["success"]


def test_a_batch_item_cannot_bring_its_own_budget(env, hf, tmp_path):
    hf.on(f"/models/{MNLI}", Reply(200, LABELS))
    items = [{"text": "a"}, {"text": "b", "budget": {"characters": 1}}]
    reply = invoke({"model": MNLI, "candidate_labels": "x, y", "items": items}).reply
    assert reply["succeeded"] == 1 and reply["failed"] == 1
    assert reply["results"][1]["error"].startswith("Invalid input: budget: a batch has one")


def test_a_continuation_queued_at_the_deadline_keeps_what_is_left_of_the_budget(aws, env, hf):
    hf.on(f"/models/{MNLI}", Reply(200, LABELS, {**CHARGED}, delay=0.3))
    sqs = client("sqs")
    queue = sqs.create_queue(QueueName=f"budget-{datetime.now(UTC):%H%M%S%f}")["QueueUrl"]
    env.setenv("RUN_QUEUE_URL", queue)
    client("s3").create_bucket(Bucket="budgetbucket")
    batch = {
        "model": MNLI,
        "candidate_labels": "billing, shipping",
        "items": [f"t{i}" for i in range(80)],
        "output_uri": "s3://budgetbucket/out.jsonl",
        "concurrency": 4,
        "budget": {"characters": 5000, "tokens": 9},
    }
    first = invoke(batch, remaining_ms=4_000).reply
    assert first["continued"] > 0 and "stopped" in first and first["stopped"] != "budget"
    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    queued = json.loads(message["Body"])
    left = {"characters": 5000 - first["characters"], "tokens": 9, "per": "run"}
    assert queued["budget"] == left and queued["concurrency"] == 4
    assert queued["input_uri"] == first["continuation"]


def test_a_continuation_and_a_rest_share_what_is_left_of_the_budget(aws, env, hf, tmp_path):
    hf.on(f"/models/{MNLI}", Reply(200, LABELS, CHARGED, delay=0.3))
    sqs = client("sqs")
    queue = sqs.create_queue(QueueName=f"share-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    env.setenv("RUN_QUEUE_URL", queue)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": f"t{i}"}) + "\n" for i in range(200)))
    batch = {
        "model": MNLI,
        "candidate_labels": "a, b",
        "input_uri": str(source),
        "output_uri": str(tmp_path / "out.jsonl"),
        "concurrency": 4,
        "budget": {"characters": 1000},
    }
    first = invoke(batch, remaining_ms=4_000).reply
    assert first["continued"] > 0 and "queued" in first["rest"]
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    budgets = [json.loads(m["Body"])["budget"]["characters"] for m in messages]
    assert len(budgets) == 2 and sum(budgets) <= 1000 - first["characters"]


def test_budget_after_keeps_a_daily_budget_and_lessens_a_run_budget():
    run = Budget(characters=100, tokens=10)
    assert run.after(Used(40, 3)) == Budget(characters=60, tokens=7)
    assert run.after(Used(40, 3), among=2) == Budget(characters=30, tokens=3)
    day = Budget(characters=100, per="day")
    assert day.after(Used(40, 3)) is day and day.after(Used(40, 3), among=2) is day


AMOUNTS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=12)


@examples(max_examples=15, deadline=None)
@given(AMOUNTS)
def test_overlapping_runs_add_to_a_local_total_exactly(tmp_path_factory, amounts):
    sink = LocalSink(tmp_path_factory.mktemp("runs"))
    add_at_once(sink, amounts)
    assert sink.day_total(TODAY, "cfg") == (sum(a for a, _ in amounts), sum(b for _, b in amounts))


def test_overlapping_runs_add_to_an_s3_total_exactly(aws):
    client("s3").create_bucket(Bucket="totals")
    amounts = [(i, 2 * i) for i in range(1, 13)]
    add_at_once(S3Sink("totals", "runs/"), amounts)
    total = S3Sink("totals", "runs/").day_total(TODAY, "cfg")
    assert total == (sum(range(1, 13)), 2 * sum(range(1, 13)))
    body = client("s3").get_object(Bucket="totals", Key=f"runs/usage/{TODAY}/cfg.json")["Body"]
    assert json.loads(body.read())["runs"] == 12


def add_at_once(sink, amounts):
    start = threading.Barrier(len(amounts))
    failures = []

    def add(used):
        start.wait()
        try:
            sink.add_to_day(TODAY, "cfg", Used(*used))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            failures.append(exc)

    threads = [threading.Thread(target=add, args=(a,)) for a in amounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_damaged_total_counts_from_zero(tmp_path):
    sink = LocalSink(tmp_path)
    path = tmp_path / "usage" / TODAY / "cfg.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert sink.day_total(TODAY, "cfg") == (0, 0)
    sink.add_to_day(TODAY, "cfg", Used(5, 1))
    assert sink.day_total(TODAY, "cfg") == (5, 1)


@examples(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    costs=st.lists(st.integers(1, 50), min_size=1, max_size=25),
    limit=st.integers(1, 400),
    concurrency=st.sampled_from([1, 3]),
)
def test_a_budget_loses_no_item_and_stops_only_when_reached(
    env, hf, tmp_path, costs, limit, concurrency
):
    """Generated batches: every item ends once, in the output or the continuation; the batch
    stops only at the budget, and starts nothing past it but what was in flight."""
    output = tmp_path / f"out-{uuid.uuid4().hex}.jsonl"

    def charge(request):
        cost = int(request.json["inputs"].split()[1])
        return Reply(200, LABELS, {"x-compute-characters": str(cost)})

    hf.on(f"/models/{MNLI}", charge)
    items = [{"id": i, "text": f"item {c} {i}"} for i, c in enumerate(costs)]
    summary = invoke(
        {
            "model": MNLI,
            "candidate_labels": "a, b",
            "items": items,
            "output_uri": str(output),
            "concurrency": concurrency,
            "budget": {"characters": limit},
        }
    ).reply
    done = [json.loads(x)["id"] for x in output.read_text().splitlines()]
    continued = []
    if summary.get("continuation"):
        lines = Path(summary["continuation"]).read_text().splitlines()
        continued = [json.loads(x)["id"] for x in lines]
    assert sorted(done + continued) == list(range(len(costs)))  # none lost, none twice
    spent = sum(costs[i] for i in done)
    assert summary.get("characters", 0) == spent
    if continued:
        assert summary["stopped"] == "budget" and spent >= limit
        reached_at = next(n for n in range(1, len(costs) + 1) if sum(costs[:n]) >= limit)
        assert len(done) <= reached_at + concurrency - 1
    else:
        assert "stopped" not in summary and sum(costs[:-1]) < limit


@pytest.mark.parametrize(
    ("run_config", "name"),
    [
        ("tickets", "tickets"),
        ("configs/tickets.json", "tickets"),
        ("/x/team tickets.json", "team_tickets"),
        ("..", "__"),
        ("a.b", "a_b"),
        ("", None),
        (None, None),
    ],
)
def test_every_run_config_has_a_total_of_its_own_that_stays_in_its_folder(run_config, name):
    from function.runs import total_name

    assert total_name(run_config) == name
