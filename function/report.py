"""`hf-run-job report`: one self-contained HTML page of what the runs found and cost, from
the run records (`function.runs`). It opens offline: the charts are SVG drawn on the server
by pygal and written into the page, with no script or style fetched from anywhere.

Why server-side SVG: the page needs no JavaScript to show its numbers (it renders the same
in a mail client's preview, a locked-down browser or a screenshot), it stays small (tens of
kilobytes, not a 200 kB chart library inlined in every copy), and the scheduled Lambda that
rewrites it (`REPORT_URI`) needs only a small pure-Python package. Each bar carries its
number as text, so the page reads without hovering.

What it shows, for the runs since a day: runs over time (successes against failures),
failures by kind, latency p50 / p95 per model, characters and tokens per day, cache hits,
the label distribution over time per classification run config, and the last failures with
their errors. A batch's record counts the items it ran and their failures by kind; its
items' own labels and errors are in its output, not here.
"""

from __future__ import annotations

import html
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from function.envelope import count, seconds
from function.settings import page_location
from function.usage import price_table, usage

if TYPE_CHECKING:
    from function.runs import Sink
    from function.settings import Settings

LAST_FAILURES = 20
OUTCOMES = ("#2e7d32", "#c62828")  # successes green, failures red
PALETTE = ("#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#9e9d24", "#5d4037", "#ad1457", "#546e7a")
TOP_LABELS = 8  # a run config's most frequent labels; the others are summed as "other"
TOP_MODELS = 20  # the latency chart's models: those with the most runs
TOP_CONFIGS = 12  # label charts: the classification run configs with the most runs


def facts(
    runs: Iterable[list[dict[str, Any]]], prices: dict[str, Any], since: date | None = None
) -> dict[str, Any]:
    """The numbers the page shows, from the runs' records (newest run first)."""
    first = since.isoformat() if since else ""
    runs = [kept for records in runs if (kept := [r for r in records if _day(r) >= first])]
    per_day, total = usage(runs, "day", prices)
    records = [r for records in reversed(runs) for r in records]  # oldest first
    singles = [r for r in records if r.get("kind") != "batch"]
    return {
        "days": list(per_day),
        "per_day": {day: totals.as_dict() for day, totals in per_day.items()},
        "total": total.as_dict(),
        "failures_by_kind": _failure_kinds(records),
        "latency": _latency(singles),
        "labels": _labels(singles),
        "last_failures": [
            _failure_row(r) for r in reversed(singles) if r.get("success") is not True
        ][:LAST_FAILURES],
    }


def _day(record: dict[str, Any]) -> str:
    return str(record.get("started_at") or "")[:10]


def _failure_kinds(records: list[dict[str, Any]]) -> dict[str, int]:
    kinds: Counter[str] = Counter()
    for record in records:
        summary = record.get("summary")
        if record.get("kind") == "batch" and isinstance(summary, dict):
            by_kind = summary.get("failed_by_kind")
            if not isinstance(by_kind, dict):  # a record from before batches said their kinds
                by_kind = {"batch items": summary.get("failed")}
            for kind, failed in by_kind.items():
                kinds[str(kind)] += count(failed) or 0
        elif record.get("success") is not True:
            kinds[str(record.get("error_kind") or "unknown")] += 1
    return {kind: n for kind, n in kinds.most_common() if n}


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile: a value that was measured."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _latency(singles: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    durations: dict[str, list[float]] = defaultdict(list)
    for record in singles:  # runs that sent a request (not refused, not from the cache)
        duration = seconds(record.get("duration_ms"))
        sent = count(record.get("attempts")) and not record.get("cache_hit")
        if duration is not None and sent:
            durations[str(record.get("model") or "-")].append(duration)
    busiest = sorted(durations, key=lambda m: -len(durations[m]))[:TOP_MODELS]
    return {
        model: {"runs": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95)}
        for model, v in sorted(durations.items())
        if model in busiest
    }


def top_label(envelope: Any) -> str | None:
    """The label a classification run found: the one with the highest score."""
    if not isinstance(envelope, dict) or not envelope.get("is_classification"):
        return None
    result = envelope.get("result")
    scored = [
        r
        for r in (result if isinstance(result, list) else [])
        if isinstance(r, dict)
        and isinstance(r.get("label"), str)
        and isinstance(r.get("score"), int | float)
    ]
    return max(scored, key=lambda r: r["score"])["label"] if scored else None


def _labels(singles: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """run config -> day -> label -> runs that found it (classification runs only)."""
    found: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for record in singles:
        label = top_label(record.get("envelope")) if record.get("success") else None
        if label is not None:
            found[str(record.get("run_config") or "-")][_day(record)][label] += 1

    def runs(config: str) -> int:
        return sum(sum(counts.values()) for counts in found[config].values())

    busiest = sorted(found, key=lambda c: -runs(c))[:TOP_CONFIGS]
    return {
        config: {day: dict(counts) for day, counts in sorted(found[config].items())}
        for config in sorted(busiest)
    }


def _failure_row(record: dict[str, Any]) -> dict[str, Any]:
    envelope = record.get("envelope") if isinstance(record.get("envelope"), dict) else {}
    return {
        "started_at": record.get("started_at"),
        "run_config": record.get("run_config"),
        "model": record.get("model"),
        "error_kind": record.get("error_kind"),
        "error": envelope.get("error"),  # type: ignore[union-attr]
        "run_id": record.get("run_id"),
    }


def write_report(sink: Sink, settings: Settings, target: str, since: date | None = None) -> str:
    """The page of the records since a day, written to a file or S3; where it went. Blocking:
    the Lambda runs it in a thread."""
    return put_page(page_of(sink, settings, since), target, settings)


def page_of(sink: Sink, settings: Settings, since: date | None = None) -> bytes:
    """Read the records since a day (default: REPORT_DAYS back) and make the page."""
    since = since or (datetime.now(UTC) - timedelta(days=settings.report_days - 1)).date()
    page = render(facts(sink.runs(since=since), price_table(settings.prices), since), since)
    return page.encode("utf-8")


def put_page(data: bytes, target: str, settings: Settings) -> str:
    """The page to a file, or to S3 as a private object; where it went."""
    target = page_location(target)
    if target.startswith("s3://"):
        from function.aws import aws_client

        bucket, _, key = target.removeprefix("s3://").partition("/")
        aws_client("s3", settings.aws_timeout_s).put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType="text/html; charset=utf-8",
            CacheControl="no-cache",
        )
        return target
    from pathlib import Path

    path = Path(target.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def presign(target: str, settings: Settings, expires_s: int) -> str:
    """A link to the page on S3 that works for `expires_s` seconds."""
    from function.aws import aws_client

    bucket, _, key = page_location(target).removeprefix("s3://").partition("/")
    s3 = aws_client("s3", settings.aws_timeout_s)
    try:
        s3.head_object(Bucket=bucket, Key=key)  # a link to nothing helps nobody: say so now
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            raise FileNotFoundError(
                "no page there yet: a scheduled run writes it, or `report --out` does"
            ) from None
        raise
    url: str = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
    )
    return url


# --- the page ------------------------------------------------------------------------------


def render(numbers: dict[str, Any], since: date | None = None) -> str:
    """The page: the numbers as charts and tables, in one HTML document."""
    days = numbers["days"]
    per_day = numbers["per_day"]
    total = numbers["total"]
    kinds = numbers["failures_by_kind"]
    sections = [
        _section(
            "runs",
            "Runs over time",
            "Items per day: successes against failures (a batch counts its items).",
            _bars(
                days,
                {n: [per_day[d][n] for d in days] for n in ("successes", "failures")},
                colors=OUTCOMES,
            ),
        ),
        _section(
            "failure-kinds",
            "Failures by kind",
            "Failed items by error kind.",
            _bars(list(kinds), {"failures": list(kinds.values())}, colors=OUTCOMES[1:]),
        ),
        _section(
            "latency",
            "Latency per model",
            "Milliseconds from start to envelope, p50 and p95 (single runs that sent a request).",
            _bars(
                list(numbers["latency"]),
                {
                    "p50 ms": [v["p50"] for v in numbers["latency"].values()],
                    "p95 ms": [v["p95"] for v in numbers["latency"].values()],
                },
                stacked=False,
                horizontal=True,
            ),
        ),
        _section(
            "usage",
            "Characters and tokens per day",
            "What hf-inference billed (characters) and what the providers counted (tokens).",
            _bars(
                days,
                {
                    "characters": [per_day[d]["characters"] for d in days],
                    "input tokens": [per_day[d]["input_tokens"] for d in days],
                    "output tokens": [per_day[d]["output_tokens"] for d in days],
                },
                stacked=False,
            ),
        ),
        _section(
            "cache",
            "Cache hits",
            "Items answered from the cache across runs (no request sent) against the others.",
            _bars(
                days,
                {
                    "cache hits": [per_day[d]["cache_hits"] for d in days],
                    "other items": [per_day[d]["items"] - per_day[d]["cache_hits"] for d in days],
                },
                colors=(OUTCOMES[0], "#9e9e9e"),
            ),
        ),
        *(
            _section(
                f"labels-{config}",
                f"Labels found: {config}",
                "What the classification runs of this run config found, per day (top label).",
                _bars(list(by_day), _label_series(by_day)),
            )
            for config, by_day in numbers["labels"].items()
        ),
        _section("last-failures", "Last failures", "The newest first.", _failures(numbers)),
    ]
    period = f"since {since.isoformat()}" if since else "all records"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = "".join(
        f"<div><b>{html.escape(value)}</b><span>{html.escape(name)}</span></div>"
        for name, value in (
            ("runs", f"{total['runs']:,}"),
            ("items", f"{total['items']:,}"),
            ("successes", f"{total['successes']:,}"),
            ("failures", f"{total['failures']:,}"),
            ("characters", f"{total['characters']:,}"),
            ("tokens", f"{total['input_tokens'] + total['output_tokens']:,}"),
            ("cache hits", f"{total['cache_hits']:,}"),
            ("estimated cost", f"${total['cost_usd']:,.6f}"),
        )
    )
    return PAGE.format(
        period=html.escape(period),
        generated=generated,
        summary=summary,
        sections="\n".join(sections),
    )


def _label_series(by_day: dict[str, dict[str, int]]) -> dict[str, list[int]]:
    overall: Counter[str] = Counter()
    for counts in by_day.values():
        overall.update(counts)
    top = [label for label, _ in overall.most_common(TOP_LABELS)]
    series = {label: [by_day[d].get(label, 0) for d in by_day] for label in top}
    others = [sum(n for label, n in by_day[d].items() if label not in top) for d in by_day]
    if any(others):
        series["other"] = others
    return series


def _bars(
    x_labels: list[str],
    series: dict[str, list[Any]],
    *,
    stacked: bool = True,
    horizontal: bool = False,
    colors: tuple[str, ...] = PALETTE,
) -> str:
    """A bar chart as inline SVG, each bar labelled with its number; or a line saying there
    is nothing to draw."""
    if not x_labels:
        return '<p class="empty">Nothing in this period.</p>'
    import pygal
    from pygal.style import Style

    kind = {
        (True, False): pygal.StackedBar,
        (False, False): pygal.Bar,
        (False, True): pygal.HorizontalBar,
        (True, True): pygal.HorizontalStackedBar,
    }[(stacked, horizontal)]
    chart = kind(
        js=[],  # nothing fetched: no tooltips script from a CDN
        disable_xml_declaration=True,
        width=900,
        height=320 if not horizontal else 120 + 40 * len(x_labels),
        print_values=True,
        print_zeroes=False,
        legend_at_bottom=True,
        truncate_label=-1,
        x_label_rotation=0 if len(x_labels) < 8 else 30,
        style=Style(
            background="transparent",
            plot_background="transparent",
            font_family="system-ui, sans-serif",
            colors=colors,
            value_font_size=11,
            label_font_size=12,
            legend_font_size=12,
        ),
    )
    chart.x_labels = x_labels
    for name, values in series.items():
        chart.add(name, values)
    return chart.render(is_unicode=True)


def _failures(numbers: dict[str, Any]) -> str:
    rows = numbers["last_failures"]
    if not rows:
        return '<p class="empty">No failures in this period.</p>'
    cells = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(row[k] if row[k] is not None else '-'))}</td>"
            for k in ("started_at", "run_config", "model", "error_kind", "error")
        )
        + "</tr>"
        for row in rows
    )
    return (
        "<table><thead><tr><th>started (UTC)</th><th>run config</th><th>model</th>"
        f"<th>kind</th><th>error</th></tr></thead><tbody>{cells}</tbody></table>"
    )


def _section(name: str, title: str, note: str, body: str) -> str:
    return (
        f'<section id="{html.escape(name)}"><h2>{html.escape(title)}</h2>'
        f'<p class="note">{html.escape(note)}</p>{body}</section>'
    )


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>hf-run-job report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 960px; color: #222; }}
h1 {{ margin-bottom: 0.2rem; }}
.meta {{ color: #666; margin-top: 0; }}
.summary {{ display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1.5rem 0; }}
.summary div {{ border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 0.9rem; }}
.summary b {{ display: block; font-size: 1.3rem; }}
.summary span {{ color: #666; font-size: 0.85rem; }}
section {{ margin: 2.2rem 0; }}
.note {{ color: #666; margin-top: -0.6rem; }}
.empty {{ color: #888; font-style: italic; }}
svg {{ max-width: 100%; height: auto; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.9rem; }}
th, td {{ text-align: left; border-bottom: 1px solid #eee; padding: 0.35rem 0.5rem; }}
td {{ vertical-align: top; }}
td:last-child {{ word-break: break-word; }}
</style>
</head>
<body>
<h1>hf-run-job report</h1>
<p class="meta">Run records, {period}. Generated {generated}. Costs are estimates from the
price table (HF_PRICES).</p>
<div class="summary">{summary}</div>
{sections}
</body>
</html>
"""
