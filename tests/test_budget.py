"""`budget` (per run): a batch starts no new item once its items have used that much; the
items not started go to the continuation, never lost, and the summary says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    assert summary["stopped"] == "budget" and summary["budget"] == {"characters": 30, "per": "run"}
    done = [json.loads(x)["id"] for x in output.read_text().splitlines()]
    rest = Path(summary["continuation"]).read_text().splitlines()
    continued = [json.loads(x)["id"] for x in rest]
    assert sorted(done + continued) == list(range(20))  # none lost, none twice
    assert 3 <= len(done) <= 3 + concurrency  # what was in flight at the budget finished
    assert summary["characters"] == 10 * len(done) >= 30
    assert len(hf.seen(f"/models/{MNLI}")) == len(done)


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
        ({"characters": 0}, "budget.characters"),
        ({"characters": 10, "per": "week"}, "budget.per"),
        ("lots", "budget"),
    ],
)
def test_a_bad_budget_names_the_field(env, hf, budget, message):
    reply = invoke({"model": MNLI, "items": ["a"], "budget": budget}).reply
    assert message in reply["error"], reply["error"]
    assert hf.requests == []
