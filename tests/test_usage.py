"""`hf-run-job usage`: the records' numbers, summed per group, add up exactly; the cost
estimate follows the price table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from function.usage import DEFAULT_PRICES, cost, price_table, usage
from tests.conftest import TOKEN, invoke, run_cli
from tests.fakehf import Reply
from tests.test_providers import LLAMA, chat_answer

MNLI = "facebook/bart-large-mnli"
LABELS = [{"label": "billing", "score": 0.9}, {"label": "shipping", "score": 0.1}]
CHARGED = {"x-compute-characters": "17", "x-compute-time": "0.5", "x-compute-type": "cpu"}


def records_in(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.open()]


def test_usage_adds_up_to_the_records_it_read(env, hf, tmp_path):
    results = tmp_path / "runs"
    hf.on(f"/models/{MNLI}", Reply(200, LABELS, CHARGED))
    hf.on_chat(Reply(200, chat_answer()))
    for text in ("my parcel is late", "refund please"):
        assert invoke({"model": MNLI, "text": text, "candidate_labels": "billing, shipping"}).reply[
            "success"
        ]
    assert invoke({"model": LLAMA, "task": "text-generation", "text": "Hi"}).reply["success"]
    hf.on("/models/bad/model", Reply(404, {"error": "no"}))
    assert not invoke({"model": "bad/model", "text": "x", "task": "text-classification"}).reply[
        "success"
    ]
    items = [{"text": f"ticket {i}"} for i in range(5)]
    batch = invoke({"model": MNLI, "candidate_labels": "billing, shipping", "items": items}).reply
    assert batch["succeeded"] == 5

    environment = {"RESULTS_URI": str(results)}
    done = run_cli("usage", "--json", "--by", "model", env=environment)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    records = records_in(results)
    total = report["total"]
    # Counted from the records by hand: 4 single runs and 1 batch of 5 items.
    assert total["runs"] == len({r["run_id"] for r in records}) == 5
    assert total["items"] == 4 + 5
    assert (total["successes"], total["failures"]) == (3 + 5, 1)
    assert total["characters"] == sum(r["characters"] or 0 for r in records) == 17 * 7
    assert total["input_tokens"] == 12 and total["output_tokens"] == 34
    assert total["compute_s"] == pytest.approx(sum(r["compute_time_s"] or 0 for r in records))
    assert total["compute_s"] == pytest.approx(0.5 * 7)
    # Groups add up to the total, and the cost follows the defaults.
    groups = report["groups"]
    assert set(groups) == {MNLI, LLAMA, "bad/model"}
    for name in ("items", "successes", "failures", "characters", "input_tokens"):
        assert sum(g[name] for g in groups.values()) == total[name]
    rates = DEFAULT_PRICES
    cpu = rates["compute_per_hour"]["cpu"]
    assert groups[MNLI]["cost_usd"] == pytest.approx(3.5 * cpu / 3600, abs=1e-9)
    tokens = rates["tokens_per_million"]
    expected = (12 * tokens["input"] + 34 * tokens["output"]) / 1e6
    assert groups[LLAMA]["cost_usd"] == pytest.approx(expected, abs=1e-6)


def test_usage_by_day_with_since_and_until_and_a_price_of_your_own(tmp_path):
    results = tmp_path / "runs"
    results.mkdir()
    days = {"2026-11-28": 1, "2026-11-29": 2, "2026-11-30": 3}
    for day, count in days.items():
        lines = [
            {
                "run_id": f"{day.replace('-', '')}T000000000Z-{i:08d}",
                "started_at": f"{day}T00:00:00.000Z",
                "model": "m",
                "success": True,
                "characters": 10,
                "compute_time_s": 3600.0,
                "compute_type": "gpu",
                "where": "hf-inference",
            }
            for i in range(count)
        ]
        (results / f"{day}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    environment = {"RESULTS_URI": str(results), "HF_PRICES": '{"compute_per_hour": {"gpu": 2}}'}
    done = run_cli(
        "usage", "--json", "--since", "2026-11-29", "--until", "2026-11-29", env=environment
    )
    report = json.loads(done.stdout)
    assert list(report["groups"]) == ["2026-11-29"]
    assert report["total"]["items"] == 2 and report["total"]["cost_usd"] == 4.0
    table = run_cli("usage", env=environment)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["day", "runs", "items"]
    assert lines[-1].split()[0] == "total" and "$12.000000" in lines[-1]


def test_a_batch_on_a_cpu_and_a_gpu_is_priced_per_hardware(env, hf, tmp_path):
    gpu = {"x-compute-time": "2", "x-compute-type": "gpu"}
    hf.on(f"/models/{MNLI}", Reply(200, LABELS, CHARGED), Reply(200, LABELS, gpu))
    items = [{"text": f"ticket {i}"} for i in range(3)]
    batch = {"model": MNLI, "candidate_labels": "billing, shipping", "items": items}
    assert invoke({**batch, "cache": "1h"}).reply["succeeded"] == 3
    again = invoke({**batch, "cache": "1h"}).reply  # all three from the cache: no hardware
    assert again["cache_hits"] == 3 and "compute_time_s_by_type" not in again
    first = records_in(tmp_path / "runs")[0]
    assert first["summary"]["compute_time_s_by_type"] == {"cpu": 0.5, "gpu": 4.0}
    done = run_cli("usage", "--json", env={"RESULTS_URI": str(tmp_path / "runs")})
    rates = DEFAULT_PRICES["compute_per_hour"]
    total = json.loads(done.stdout)["total"]
    assert total["cost_usd"] == pytest.approx((0.5 * rates["cpu"] + 4 * rates["gpu"]) / 3600)
    assert (total["items"], total["cache_hits"], total["compute_s"]) == (6, 3, 4.5)


def test_hardware_is_priced_as_the_api_names_it():
    prices = price_table({"compute_per_hour": {"2-a10-g": 3.0}})
    rates = prices["compute_per_hour"]
    hour = {"compute_time_s": 3600.0, "where": "hf-inference"}
    assert cost({**hour, "compute_type": "cpu"}, prices) == rates["cpu"]
    assert cost({**hour, "compute_type": "1-a10-g"}, prices) == rates["gpu"]
    assert cost({**hour, "compute_type": "8-nvidia-h100-80gb-hbm3"}, prices) == rates["gpu"]
    assert cost({**hour, "compute_type": "2-a10-g"}, prices) == 3.0  # the table's own price
    assert cost({**hour, "compute_type": "cache"}, prices) == 0  # the API's own cache
    assert cost({**hour}, prices) == rates["cpu"]


def test_local_and_endpoint_runs_cost_nothing():
    prices = price_table({})
    base = {"compute_time_s": 100.0, "prompt_tokens": 10**6}
    assert cost({**base, "where": "local"}, prices) == 0
    assert cost({**base, "where": "endpoint:mine"}, prices) == 0
    assert cost({**base, "compute_type": "local"}, prices) == 0


RECORDS = st.lists(
    st.fixed_dictionaries(
        {
            "run_id": st.sampled_from(["r1", "r2", "r3"]),
            "started_at": st.sampled_from(["2026-11-30T01:00:00Z", "2026-12-01T02:00:00Z"]),
            "model": st.sampled_from(["a", "b", None]),
            "run_config": st.sampled_from(["default", None]),
            "where": st.sampled_from(["hf-inference", "router:groq", "local", None]),
            "success": st.booleans() | st.none(),
            "characters": st.integers(0, 10**6) | st.none(),
            "prompt_tokens": st.integers(0, 10**5) | st.none(),
            "completion_tokens": st.integers(0, 10**5) | st.none(),
            "compute_time_s": st.floats(0, 100) | st.none(),
        },
        optional={
            "kind": st.just("batch"),
            "summary": st.fixed_dictionaries(
                {"total": st.integers(0, 50), "succeeded": st.integers(0, 50)}
            ),
        },
    ),
    max_size=30,
)


@examples(max_examples=200, deadline=None)
@given(RECORDS, st.sampled_from(["day", "model", "run-config", "provider"]))
def test_every_grouping_adds_up_to_the_same_total(records, by):
    prices = price_table({})
    groups, total = usage([records], by, prices)
    for name in ("items", "successes", "failures", "characters", "input_tokens", "output_tokens"):
        assert sum(getattr(g, name) for g in groups.values()) == getattr(total, name)
    assert sum(g.cost_usd for g in groups.values()) == pytest.approx(total.cost_usd)
    assert total.runs == len({r["run_id"] for r in records})
    assert total.characters == sum(r["characters"] or 0 for r in records)


def test_the_token_never_shows_in_usage(env, hf, tmp_path):
    hf.on(f"/models/{MNLI}", Reply(200, LABELS, CHARGED))
    invoke({"model": MNLI, "text": "x", "candidate_labels": "a, b"})
    done = run_cli("usage", "--json", env={"RESULTS_URI": str(tmp_path / "runs")})
    assert TOKEN not in done.stdout + done.stderr


def test_usage_skips_lines_that_are_not_records(tmp_path):
    results = tmp_path / "runs"
    results.mkdir()
    good = {"run_id": "r1", "started_at": "2026-11-30T00:00:00Z", "model": "m", "success": True}
    lines = ["[]", "null", "42", '"text"', "{broken", json.dumps(good)]
    (results / "2026-11-30.jsonl").write_text("\n".join(lines) + "\n")
    done = run_cli("usage", "--json", env={"RESULTS_URI": str(results)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total"]["items"] == 1


def test_usage_on_s3_reads_records_not_batch_outputs_beside_them(aws, env, hf):
    from tests.aws import client

    s3 = client("s3")
    s3.create_bucket(Bucket="usage-sink")
    for key in list(s3.list_objects_v2(Bucket="usage-sink").get("Contents", [])):
        s3.delete_object(Bucket="usage-sink", Key=key["Key"])
    env.setenv("RESULTS_URI", "s3://usage-sink/runs/")  # BATCHES_URI: runs/batches/
    hf.on(f"/models/{MNLI}", Reply(200, LABELS, CHARGED))
    summary = invoke({"model": MNLI, "candidate_labels": "a, b", "text": ["x", "y"]}).reply
    assert summary["succeeded"] == 2
    s3.put_object(Bucket="usage-sink", Key="runs/batches/other.jsonl", Body=b'{"id": 1}\n')
    from function.runs import open_sink
    from function.usage import price_table, usage

    _, total = usage(open_sink("s3://usage-sink/runs/").runs(), "day", price_table({}))
    assert (total.runs, total.items) == (1, 2)


def test_a_batch_sends_its_billed_characters_and_failures_by_kind_as_metrics(env, hf, capfd):
    """The dashboard's widgets count batches too, not only single runs."""

    def answer(request):
        if request.json["inputs"] == "broken":
            return Reply(404, {"error": "Model not found"})
        return Reply(200, LABELS, {"x-compute-characters": "5"})

    hf.on(f"/models/{MNLI}", answer)
    items = ["a", "b", "broken"]
    capfd.readouterr()
    invoke(
        {
            "model": MNLI,
            "candidate_labels": "x, y",
            "items": items,
            "task": "zero-shot-classification",
        }
    )
    emitted = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"_aws"' in line]
    values: dict[str, float] = {}
    for blob in emitted:
        for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            name = metric["Name"] + (f":{blob['ErrorKind']}" if "ErrorKind" in blob else "")
            values[name] = values.get(name, 0) + sum(blob[metric["Name"]])
    assert values["Runs"] == 3 and values["Failures"] == 1
    assert values["BilledCharacters"] == 10
    assert values["FailuresByKind:not_found"] == 1


def test_a_key_a_server_echoes_as_its_hardware_is_not_kept():
    """x-compute-type is kept for pricing only when it is a short name, never a key the job
    knows (an endpoint's own lowercase key would pass the name's shape)."""
    import httpx

    from function.client import Answer, _usage
    from function.redact import remember

    key = "vllm-secret-key-0123456789"
    remember(key)

    def hardware_of(value: str) -> str | None:
        headers = httpx.Headers({"x-compute-type": value})
        return _usage(Answer(200, headers, b"")).compute_type

    assert hardware_of(key) is None
    assert hardware_of("1-a10-g") == "1-a10-g" and hardware_of("cpu") == "cpu"
    assert hardware_of("Hf_SomeMixedCaseToken") is None
