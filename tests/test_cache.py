"""The answer cache across runs (`cache`): a hit sends nothing, is marked in the record and
the batch summary, never in the envelope; only successes are kept; entries expire; a cache
that cannot be read is a miss."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.aws import client
from tests.conftest import invoke
from tests.fakehf import Reply

MNLI = "facebook/bart-large-mnli"
PATH = f"/models/{MNLI}"
LABELS = [{"label": "billing", "score": 0.9}, {"label": "shipping", "score": 0.1}]
RUN = {"model": MNLI, "text": "Refund not received", "candidate_labels": "billing, shipping"}


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(folder.glob("*.jsonl")) for line in p.open()]


def test_a_second_run_is_answered_from_the_cache_with_no_request(env, hf, tmp_path):
    hf.on(PATH, Reply(200, LABELS, {"x-compute-characters": "19"}))
    first = invoke({**RUN, "cache": "1h"}).reply
    second = invoke({**RUN, "cache": "1h"}).reply
    assert first == second and set(second) == {
        "success", "result", "is_classification", "model", "error",
    }  # fmt: skip
    assert len(hf.seen(PATH)) == 1
    hit, miss = records(tmp_path / "runs")[1], records(tmp_path / "runs")[0]
    assert (miss["cache_hit"], hit["cache_hit"]) == (False, True)
    assert hit["characters"] is None  # nothing was billed for it


def test_without_cache_every_run_sends_and_other_inputs_miss(env, hf):
    hf.on(PATH, Reply(200, LABELS))
    invoke(RUN)
    invoke(RUN)
    assert len(hf.seen(PATH)) == 2
    invoke({**RUN, "cache": "1h"})
    invoke({**RUN, "cache": "1h", "candidate_labels": "billing, other"})
    invoke({**RUN, "cache": "1h", "parameters": {"multi_label": True}})
    assert len(hf.seen(PATH)) == 5


def test_failures_are_not_kept_and_entries_expire(env, hf):
    hf.on(PATH, Reply(400, {"error": "bad"}), Reply(200, LABELS))
    assert not invoke({**RUN, "cache": "2s"}).reply["success"]
    assert invoke({**RUN, "cache": "2s"}).reply["success"]
    assert invoke({**RUN, "cache": "2s"}).reply["success"]
    assert len(hf.seen(PATH)) == 2  # the failure was not an answer to keep
    time.sleep(2.1)
    invoke({**RUN, "cache": "2s"})
    assert len(hf.seen(PATH)) == 3


def test_a_batch_counts_its_cache_hits(env, hf):
    hf.on(PATH, Reply(200, LABELS))
    items = [{"id": i, "text": f"ticket {i}"} for i in range(4)]
    batch = {"model": MNLI, "candidate_labels": "a, b", "items": items, "cache": "7d"}
    first = invoke(batch).reply
    second = invoke(batch).reply
    assert "cache_hits" not in first and second["cache_hits"] == 4
    assert len(hf.seen(PATH)) == 4
    assert [r["result"] for r in first["results"]] == [r["result"] for r in second["results"]]


def test_a_cache_that_cannot_be_read_is_a_miss(env, hf, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x")
    env.setenv("HF_CACHE_URI", str(blocked))
    hf.on(PATH, Reply(200, LABELS))
    assert invoke({**RUN, "cache": "1h"}).reply["success"]
    assert invoke({**RUN, "cache": "1h"}).reply["success"]
    assert len(hf.seen(PATH)) == 2
    broken = tmp_path / "cache"
    env.setenv("HF_CACHE_URI", str(broken))
    invoke({**RUN, "cache": "1h"})
    for entry in broken.rglob("*.json"):
        entry.write_text("{not json")
    assert invoke({**RUN, "cache": "1h"}).reply["success"]
    assert len(hf.seen(PATH)) == 4


def test_the_cache_on_s3(aws, env, hf):
    client("s3").create_bucket(Bucket="cachebucket")
    env.setenv("HF_CACHE_URI", "s3://cachebucket/cache/")
    hf.on(PATH, Reply(200, LABELS))
    run = {**RUN, "text": f"unique {time.time()}", "cache": "1d"}
    invoke(run)
    invoke(run)
    assert len(hf.seen(PATH)) == 1
    keys = client("s3").list_objects_v2(Bucket="cachebucket", Prefix="cache/")["Contents"]
    assert len(keys) == 1 and keys[0]["Key"].endswith(".json")


@pytest.mark.parametrize("value", ["forever", "0h", "400d", "7 weeks", 5])
def test_a_bad_lifetime_names_the_field(env, hf, value):
    reply = invoke({**RUN, "cache": value}).reply
    assert reply["error"].startswith("Invalid input: cache:"), reply["error"]
    assert hf.requests == []


def test_an_answer_the_task_cannot_read_is_not_kept(env, hf):
    hf.on(PATH, Reply(200, {"unexpected": "shape"}), Reply(200, LABELS))
    assert "does not have the shape" in invoke({**RUN, "cache": "1h"}).reply["error"]
    assert invoke({**RUN, "cache": "1h"}).reply["success"]
    assert invoke({**RUN, "cache": "1h"}).reply["success"]
    assert len(hf.seen(PATH)) == 2  # the unreadable 200 was sent again, the good one kept


def test_a_shorter_lifetime_does_not_take_an_older_answer(env, hf):
    hf.on(PATH, Reply(200, LABELS))
    invoke({**RUN, "cache": "7d"})
    time.sleep(1.1)
    invoke({**RUN, "cache": "1s"})  # stored 1.1 s ago: too old for this reader
    assert len(hf.seen(PATH)) == 2
    invoke({**RUN, "cache": "7d"})
    assert len(hf.seen(PATH)) == 2


@pytest.mark.parametrize(
    "entry",
    [
        '{"stored_at": 1e400, "body": []}',  # a moment that never comes
        '{"stored_at": NaN, "body": []}',
        '{"stored_at": %(now)s, "body": [{"label": "x", "score": NaN}]}',
        '{"stored_at": %(now)s, "body": {"another": "shape"}}',
        '{"stored_at": %(now)s}',
        '{"stored_at": %(future)s, "body": %(labels)s}',
        '{"stored_at": true, "body": %(labels)s}',
        "[1, 2]",
        '"text"',
    ],
)
def test_an_entry_that_is_not_a_fresh_answer_is_a_miss(env, hf, tmp_path, entry):
    hf.on(PATH, Reply(200, LABELS))
    first = invoke({**RUN, "cache": "1h"}).reply
    (kept,) = (tmp_path / "runs" / "cache").rglob("*.json")
    now = time.time()
    kept.write_text(entry % {"now": now, "future": now + 3600, "labels": json.dumps(LABELS)})
    reply = invoke({**RUN, "cache": "1h"}).reply
    assert reply["success"] and reply == first
    assert len(hf.seen(PATH)) == 2
    assert json.loads(kept.read_text())["body"] == LABELS  # the miss stored a good one


def test_an_entry_past_the_answers_size_limit_is_a_miss(env, hf, tmp_path):
    big = [{"label": "x" * 200_000, "score": 1.0}]
    hf.on(PATH, Reply(200, big))
    assert invoke({**RUN, "cache": "1h"}).reply["success"]
    env.setenv("HF_MAX_RESPONSE_BYTES", "100000")
    reply = invoke({**RUN, "cache": "1h"}).reply
    assert "over" in reply["error"] and len(hf.seen(PATH)) == 2  # sent again, and refused
