"""`hf-run-job report`: one self-contained page, checked in a real browser (headless
Chromium): it loads with nothing fetched and no console error, its charts are drawn, and
they show the numbers of the records the test wrote. On S3 a scheduled run rewrites it, and
`--presign` gives a link that serves it."""

from __future__ import annotations

import io
import itertools
import json
import re
from collections import Counter
from pathlib import Path

import httpx
from PIL import Image

from function.report import percentile, top_label
from tests.aws import AWS_ENV, client
from tests.browser import load
from tests.conftest import invoke, load_event, run_cli
from tests.fakehf import Reply

SST2 = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
MNLI = "facebook/bart-large-mnli"
ZERO_SHOT = [{"label": "billing", "score": 0.9}, {"label": "shipping", "score": 0.1}]

SECTIONS = """Object.fromEntries(Array.from(document.querySelectorAll('section')).map(s => [
  s.id,
  {
    drawn: Array.from(s.querySelectorAll('svg')).map(g => g.getBoundingClientRect().width),
    bars: s.querySelectorAll('rect.rect').length,
    values: Array.from(s.querySelectorAll('desc.value')).map(d => Number(d.textContent)),
    text: s.innerText,
  },
]))"""


def records_in(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.open()]


def write_runs(env, hf, tmp_path) -> list[dict]:
    """Runs of every kind the page shows, through the handler: their records."""
    configs = tmp_path / "configs"
    configs.mkdir()
    config = {"model": SST2, "task": "text-classification", "text": "fine"}
    (configs / "sentiment.json").write_text(json.dumps(config))
    env.setenv("RUN_CONFIG_DIR", str(configs))
    moods = itertools.cycle(["POSITIVE", "POSITIVE", "NEGATIVE"])

    def classify(request):
        mood = next(moods)
        other = "NEGATIVE" if mood == "POSITIVE" else "POSITIVE"
        body = [[{"label": mood, "score": 0.8}, {"label": other, "score": 0.2}]]
        return Reply(200, body, {"x-compute-characters": "4"})

    hf.on(f"/models/{SST2}", classify)
    for i in range(6):
        assert invoke({"run_config": "sentiment", "text": f"review {i}"}).reply["success"]
    hf.on("/models/gone/model", Reply(404, {"error": "Model not found"}))
    invoke({"run_config": "sentiment", "model": "gone/model"})
    invoke({"run_config": "sentiment", "text": ""})  # invalid input
    hf.on(f"/models/{MNLI}", Reply(200, ZERO_SHOT, {"x-compute-characters": "7"}))
    tickets = {"model": MNLI, "candidate_labels": "billing, shipping", "run_config": "sentiment"}
    assert invoke({**tickets, "items": ["a", "b", "c"]}).reply["succeeded"] == 3
    assert invoke({**tickets, "text": "refund", "cache": "1h"}).reply["success"]
    assert invoke({**tickets, "text": "refund", "cache": "1h"}).reply["success"]  # a hit
    return records_in(tmp_path / "runs")


def test_the_report_page_in_a_real_browser(env, hf, tmp_path):
    records = write_runs(env, hf, tmp_path)
    page = tmp_path / "report.html"
    done = run_cli("report", "--out", str(page), env={"RESULTS_URI": str(tmp_path / "runs")})
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    # Self-contained: no address to fetch anything from, and a policy that forbids it.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text)
    assert "default-src 'none'" in text

    loaded = load(page, SECTIONS)
    assert loaded.problems == []  # no console error, no exception, nothing blocked
    sections = loaded.values
    (tmp_path / "report.png").write_bytes(loaded.screenshot)
    charts = [name for name in sections if name != "last-failures"]
    for name in charts:  # every chart drawn at a real size, with bars in it
        assert sections[name]["drawn"] and min(sections[name]["drawn"]) > 300, name
        assert sections[name]["bars"] > 0, name

    # The numbers, counted from the records by hand.
    singles = [r for r in records if r.get("kind") != "batch"]
    (batch,) = [r for r in records if r.get("kind") == "batch"]
    successes = sum(r["success"] for r in singles) + batch["summary"]["succeeded"]
    failures = sum(not r["success"] for r in singles)
    assert (successes, failures) == (6 + 1 + 1 + 3, 2)
    assert nonzero(sections["runs"]["values"]) == sorted([successes, failures])
    kinds = Counter(r["error_kind"] for r in singles if not r["success"])
    assert kinds == {"not_found": 1, "invalid_input": 1}
    assert nonzero(sections["failure-kinds"]["values"]) == sorted(kinds.values())
    characters = sum(r["characters"] or 0 for r in records)
    assert characters == 6 * 4 + 3 * 7 + 7  # the cache hit billed nothing
    assert characters in sections["usage"]["values"]
    assert nonzero(sections["cache"]["values"]) == sorted([1, len(singles) + 3 - 1])
    labels = Counter(top_label(r["envelope"]) for r in singles if r["success"])
    assert labels == {"POSITIVE": 4, "NEGATIVE": 2, "billing": 2}
    assert nonzero(sections["labels-sentiment"]["values"]) == sorted(labels.values())
    durations = [r["duration_ms"] for r in singles if r["model"] == SST2]
    p50, p95 = percentile(durations, 50), percentile(durations, 95)
    assert p50 in sections["latency"]["values"] and p95 in sections["latency"]["values"]
    assert "Model not found" in sections["last-failures"]["text"]
    assert "text: String should have at least 1 character" in sections["last-failures"]["text"]

    # What the screenshot shows: the page, with green and red bars on it.
    image = Image.open(io.BytesIO(loaded.screenshot)).convert("RGB")
    assert image.width > 1000 and image.height > 2000
    pixels = list(image.get_flattened_data())
    green = sum(g > r + 40 and g > b + 40 for r, g, b in pixels)
    red = sum(r > g + 60 and r > b + 60 for r, g, b in pixels)
    assert green > 5000 and red > 1000, (green, red)


def nonzero(values: list[float]) -> list[float]:
    return sorted(v for v in values if v)


def test_the_browser_check_sees_a_broken_page(tmp_path):
    """The check above can fail: a console error and a blocked fetch are both reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!doctype html><meta http-equiv="Content-Security-Policy" content="default-src \'none\'">'
        '<img src="http://127.0.0.1:9/x.png"><p>x</p>'
    )
    loaded = load(page, "document.querySelectorAll('p').length")
    assert loaded.values == 1 and loaded.problems, loaded.problems


def test_an_empty_sink_gives_a_page_that_says_so(tmp_path):
    page = tmp_path / "empty.html"
    done = run_cli("report", "--out", str(page), env={"RESULTS_URI": str(tmp_path / "none")})
    assert done.returncode == 0, done.stderr
    assert page.read_text().count("Nothing in this period.") == 5


def test_a_scheduled_run_rewrites_the_page_on_s3_and_presign_serves_it(aws, env, hf):
    s3 = client("s3")
    s3.create_bucket(Bucket="reports")
    env.setenv("RESULTS_URI", "s3://reports/runs/")
    env.setenv("REPORT_URI", "S3://reports//report/")  # one spelling: report/index.html
    hf.on(f"/models/{MNLI}", Reply(200, ZERO_SHOT))
    assert invoke(load_event("scheduled-event.json")).reply["success"]
    page = s3.get_object(Bucket="reports", Key="report/index.html")
    assert page["ContentType"].startswith("text/html")
    assert "<svg" in page["Body"].read().decode()
    invoke({"model": MNLI, "text": "not scheduled", "candidate_labels": "a, b"})
    first = s3.head_object(Bucket="reports", Key="report/index.html")["LastModified"]
    assert first == page["LastModified"]  # only scheduled runs rewrite it

    environment = {
        **AWS_ENV,
        "AWS_ENDPOINT_URL": aws,
        "REPORT_URI": "s3://reports/report/index.html",
    }
    done = run_cli("report", "--presign", "--expires", "600", env=environment)
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip()
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in link and "X-Amz-Expires=600" in link
    served = httpx.get(link)
    assert served.status_code == 200 and "hf-run-job report" in served.text
    assert httpx.get(link.split("?")[0]).status_code == 403  # private without the signature


def test_presign_needs_the_page_on_s3(tmp_path):
    done = run_cli("report", "--presign", env={"RESULTS_URI": str(tmp_path)})
    assert done.returncode == 2
    assert "--presign needs the page on S3" in done.stderr


def test_odd_and_damaged_records_break_neither_the_report_nor_usage(tmp_path):
    """Hand-edited or damaged lines: skipped, or their odd numbers counted as nothing."""
    results = tmp_path / "runs"
    results.mkdir()
    day = "2026-11-30"
    base = {"run_id": f"{day.replace('-', '')}T000000000Z-1", "started_at": f"{day}T00:00:00Z"}
    odd = [
        {**base, "duration_ms": 1e308, "characters": 10**400, "compute_type": ["gpu"]},
        {**base, "compute_time_s": -5, "prompt_tokens": 1.5, "model": {"not": "a name"}},
        {**base, "envelope": "not an object", "success": False, "error_kind": 7},
        {**base, "kind": "batch", "summary": {"succeeded": "many", "failed": -1}},
        {"started_at": f"{day}T00:00:00Z"},  # no run id
    ]
    lines = [json.dumps(r) for r in odd]
    lines += ['{"run_id": "x", "duration_ms": NaN}', "[" * 5000 + "]" * 5000, "9" * 5000]
    (results / f"{day}.jsonl").write_text("\n".join(lines) + "\n")
    with (results / f"{day}.jsonl").open("ab") as file:
        file.write(b'{"run_id": "x\xff", "started_at": "2026-11-30T00:00:00Z"}\n')  # not UTF-8
    environment = {"RESULTS_URI": str(results)}
    page = tmp_path / "odd.html"
    done = run_cli("report", "--since", day, "--out", str(page), env=environment)
    assert done.returncode == 0, done.stderr
    assert "hf-run-job report" in page.read_text()
    spent = run_cli("usage", "--json", env=environment)
    assert spent.returncode == 0, spent.stderr
    total = json.loads(spent.stdout)["total"]
    assert (total["characters"], total["input_tokens"], total["compute_s"]) == (0, 0, 0)
    assert run_cli("history", env=environment).returncode == 0


def test_text_from_the_records_cannot_run_in_the_page(tmp_path):
    """Labels, models, run configs and errors come from events and servers: escaped."""
    evil = '</script><script>console.error("ran")</script><img src=x onerror=console.error(1)>'
    results = tmp_path / "runs"
    results.mkdir()
    day = "2026-11-30"
    base = {"started_at": f"{day}T00:00:00Z", "model": evil, "run_config": evil, "attempts": 1}
    found = {"is_classification": True, "result": [{"label": evil, "score": 1.0}]}
    records = [
        {**base, "run_id": "r1", "success": True, "duration_ms": 5, "envelope": found},
        {**base, "run_id": "r2", "success": False, "error_kind": evil, "envelope": {"error": evil}},
    ]
    (results / f"{day}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    page = tmp_path / "evil.html"
    done = run_cli("report", "--since", day, "--out", str(page), env={"RESULTS_URI": str(results)})
    assert done.returncode == 0, done.stderr
    loaded = load(page, "document.querySelectorAll('img').length")
    assert loaded.problems == [] and loaded.values == 0
    assert "<img src=x" not in page.read_text()
