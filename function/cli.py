"""`hf-run-job` (and `python -m function`): run the job from a terminal or a cron line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from function.envelope import Outcome

if TYPE_CHECKING:
    from function.runs import Sink

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

EPILOG = """\
examples:
  hf-run-job run                                   # the default run config
  hf-run-job run --text "Refund not received" --label billing --label shipping
  hf-run-job run --model distilbert/distilbert-base-uncased-finetuned-sst-2-english \\
      --text "I love it" --label null              # drop the config's labels: model's own task
  hf-run-job run --config my_job --param multi_label=true
  hf-run-job run --event events/scheduled-event.json  # run the Lambda handler on a saved event
  hf-run-job history --failed --since 2026-11-01   # recent runs from RESULTS_URI
  hf-run-job show 20261123T084755123Z-1a2b3c4d     # one run's envelopes

Prints the envelope {success, result, is_classification, model, error} as JSON on stdout.
Exit status: 0 success, 1 failure envelope, 2 usage error.
Environment: HUGGINGFACE_API_KEY (or HF_TOKEN), HUGGINGFACE_API_ENDPOINT, RUN_CONFIG.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-run-job",
        description="Run Hugging Face inference as a scheduled job and print the envelope.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log to stderr (-vv: debug)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run one inference (the run config, overridden by these flags)",
        description="Run one inference: the run config, overridden by the flags given.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    _add_run_flags(run)
    run.add_argument(
        "--event",
        metavar="FILE",
        type=Path,
        help="run the Lambda handler on a saved event (JSON); other flags are ignored",
    )
    batch = commands.add_parser(
        "batch",
        help="run many items from a JSONL file, in input order",
        description=(
            "Run every item of a JSONL file (a line per item: an object of run inputs with an "
            "optional id, or a JSON string as the text) over the run config and these flags."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=BATCH_EPILOG,
    )
    batch.add_argument(
        "--input",
        metavar="FILE.jsonl",
        type=Path,
        required=True,
        help="the items, a JSON value per line",
    )
    batch.add_argument(
        "--output",
        metavar="FILE.jsonl",
        type=Path,
        help="where the records go (default: stdout, before the summary)",
    )
    _add_run_flags(batch)
    batch.add_argument(
        "--concurrency",
        metavar="N",
        type=_positive_int,
        help="at most N requests in flight (default: found by probing, up to 64)",
    )
    batch.add_argument(
        "--rate", metavar="R", type=float, help="at most R requests started per second"
    )
    batch.add_argument(
        "--batch-size",
        metavar="N",
        type=_positive_int,
        default=32,
        help="texts per feature-extraction request (default 32)",
    )
    history = commands.add_parser(
        "history",
        help="list recent runs from the results sink (RESULTS_URI)",
        description="List recent runs, newest first, from RESULTS_URI (a directory or s3://).",
    )
    history.add_argument(
        "--limit", metavar="N", type=_positive_int, default=20, help="how many runs (default 20)"
    )
    history.add_argument("--failed", action="store_true", help="only runs with a failure")
    history.add_argument(
        "--since",
        metavar="DATE",
        type=date.fromisoformat,
        help="only runs on or after this day (YYYY-MM-DD, UTC)",
    )
    history.add_argument("--results", metavar="URI", help="the sink (default: $RESULTS_URI, runs/)")
    show = commands.add_parser(
        "show", help="print one run's envelopes", description="Print one run's records as JSON."
    )
    show.add_argument("run_id", metavar="RUN_ID", help="as listed by 'history'")
    show.add_argument("--results", metavar="URI", help="the sink (default: $RESULTS_URI, runs/)")
    return parser


BATCH_EPILOG = """\
examples:
  hf-run-job batch --input tickets.jsonl --output labels.jsonl --label "billing, shipping"
  hf-run-job batch --input texts.jsonl --task feature-extraction \\
      --model sentence-transformers/all-MiniLM-L6-v2 --label null --batch-size 64

Each item yields one record, in input order: {success, result, is_classification, model,
error, id}. The last line on stdout is the summary {total, succeeded, failed, output,
elapsed_s, items_per_s}. Items not started before --timeout are written, as they came, to
OUTPUT.continuation.jsonl: run that file as the next batch. Progress goes to stderr.
Exit status: 0 every item succeeded, 1 some failed or were continued, 2 usage error.
"""


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="NAME|PATH",
        help="run config name in run_config/, or a path (default: $RUN_CONFIG, else 'default')",
    )
    parser.add_argument("--model", metavar="M", help="model id, e.g. facebook/bart-large-mnli")
    parser.add_argument("--text", metavar="T", help="the input text")
    parser.add_argument(
        "--label",
        metavar="L",
        action="append",
        dest="labels",
        help="a candidate label (repeat; or one comma-separated list; 'null' drops "
        "the run config's labels)",
    )
    parser.add_argument(
        "--task",
        metavar="T",
        help="the task, e.g. text-classification (default: "
        "inferred from the inputs, else from the model's answer)",
    )
    parser.add_argument(
        "--param",
        metavar="KEY=JSON",
        action="append",
        default=[],
        help="a request parameter, e.g. multi_label=true or top_k=3 (repeatable)",
    )
    parser.add_argument(
        "--inputs",
        metavar="JSON",
        help='structured inputs, e.g. \'{"question": "...", "context": "..."}\'',
    )
    wait = parser.add_mutually_exclusive_group()
    wait.add_argument(
        "--wait",
        dest="wait_for_model",
        action="store_true",
        default=None,
        help="wait for a cold model to load (the default)",
    )
    wait.add_argument(
        "--no-wait",
        dest="wait_for_model",
        action="store_false",
        help="fail at once if the model is loading",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        help="the run's deadline in seconds (run: $HF_DEFAULT_BUDGET, 60 s; batch: none)",
    )


def overrides_from_args(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name in ("model", "text", "task", "wait_for_model"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.config:
        overrides["run_config"] = args.config
    if args.labels:
        overrides["candidate_labels"] = None if args.labels == ["null"] else ",".join(args.labels)
    if args.param:
        parameters: dict[str, Any] = {}
        for item in args.param:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                parser.error(f"--param expects KEY=JSON, got {item!r}")
            parameters[key] = _json_or_text(raw)
        overrides["parameters"] = parameters
    if args.inputs is not None:
        try:
            overrides["inputs"] = json.loads(args.inputs)
        except json.JSONDecodeError as exc:
            parser.error(f"--inputs is not valid JSON: {exc}")
    return overrides


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "batch":
        return _batch(args, parser)
    if args.command == "history":
        return _history(args)
    if args.command == "show":
        return _show(args)
    if args.event is not None:
        return _run_event(args.event, parser)
    return _run(overrides_from_args(args, parser), args.timeout)


def _run(overrides: dict[str, Any], timeout: float | None) -> int:
    from function.client import Deadline
    from function.errors import ConfigError
    from function.job import run_once
    from function.runs import Run
    from function.settings import load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        outcome = Outcome.failed(exc, model=None)
    else:
        deadline = Deadline(timeout if timeout is not None else settings.default_budget_s)
        run = Run("cli", datetime.now(UTC))
        outcome = asyncio.run(run_once(overrides, run, settings, deadline))
    _print(outcome.envelope)
    return EXIT_OK if outcome.success else EXIT_FAILED


def _run_event(path: Path, parser: argparse.ArgumentParser) -> int:
    # EMF metrics are for CloudWatch: on a terminal they would mix with the reply on stdout.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    from handler import lambda_handler

    try:
        event = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        parser.error(f"--event: cannot read {path}: {exc.strerror}")
    except json.JSONDecodeError as exc:
        parser.error(f"--event: {path} is not valid JSON: {exc}")
    reply = lambda_handler(event, None)
    _print(reply)
    envelope = (
        json.loads(reply["body"]) if isinstance(reply, dict) and "statusCode" in reply else reply
    )
    return EXIT_OK if isinstance(envelope, dict) and envelope.get("success") else EXIT_FAILED


def _batch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from function.batch import (
        DEFAULT_MAX_CONCURRENCY,
        BatchOptions,
        JsonlWriter,
        continuation_uri,
        items_from_jsonl,
        open_batch_session,
        run_batch,
    )
    from function.client import Deadline
    from function.errors import ConfigError
    from function.settings import load_settings

    if not args.input.is_file():
        parser.error(f"--input: no such file {args.input}")
    shared = overrides_from_args(args, parser)
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.stderr.write(exc.message + "\n")
        return EXIT_FAILED
    with args.input.open(encoding="utf-8") as lines:
        total = sum(1 for line in lines if line.strip())
    output = JsonlWriter(args.output) if args.output else JsonlWriter(stream=sys.stdout)
    continuation = JsonlWriter(Path(continuation_uri(str(args.output or args.input))))
    cap = args.concurrency or DEFAULT_MAX_CONCURRENCY
    deadline = Deadline(args.timeout if args.timeout is not None else float("inf"))
    progress = Progress(total)

    async def main() -> dict[str, Any]:
        async with open_batch_session(
            settings, deadline, concurrency=cap, rate=args.rate, batch_size=args.batch_size
        ) as session:
            with args.input.open(encoding="utf-8") as lines:
                summary = await run_batch(
                    shared,
                    items_from_jsonl(lines),
                    session,
                    output,
                    continuation,
                    BatchOptions(batch_size=args.batch_size),
                    progress.update,
                )
        summary.output = str(args.output) if args.output else "stdout"
        if summary.continued:
            summary.continuation = str(continuation.path)
        return summary.as_dict()

    try:
        result = asyncio.run(main())
    finally:
        output.close()
        continuation.close()
        progress.close()
    sys.stdout.write(json.dumps(result) + "\n")
    every_item_ok = result["succeeded"] == result["total"]
    return EXIT_OK if every_item_ok else EXIT_FAILED


class Progress:
    """A bar on a terminal; a line every few seconds otherwise (logs, CI)."""

    EVERY_S = 5.0

    def __init__(self, total: int, stream: Any = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = self.last = time.monotonic()
        self.shown = -1

    def update(self, done: int, succeeded: int, failed: int) -> None:
        now = time.monotonic()
        if done == self.shown or (
            now - self.last < (0.2 if self.tty else self.EVERY_S) and done < self.total
        ):
            return
        self.last, self.shown = now, done
        rate = done / (now - self.started) if now > self.started else 0.0
        share = done / self.total if self.total else 1.0
        counts = f"{done}/{self.total} ({share:.0%}) {succeeded} ok {failed} failed {rate:.0f}/s"
        if self.tty:
            bar = "#" * int(share * 30)
            self.stream.write(f"\r[{bar:<30}] {counts}")
        else:
            self.stream.write(f"progress: {counts}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.shown >= 0:
            self.stream.write("\n")


def _sink(uri: str | None) -> Sink:
    from function.runs import open_sink
    from function.settings import load_settings

    return open_sink(uri or load_settings().results_uri)


def _history(args: argparse.Namespace) -> int:
    runs = []
    for records in _sink(args.results).runs(since=args.since):
        if args.failed and all(r.get("success") for r in records):
            continue
        runs.append(records)
        if len(runs) >= args.limit:
            break
    rows = [_history_row(records) for records in runs]
    header = ("TIME (UTC)", "RUN ID", "TRIGGER", "MODEL", "SUCCESS", "DURATION", "CHARACTERS")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        line = "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip() + "\n")
    if not rows:
        sys.stderr.write("No runs found.\n")
    return EXIT_OK


def _history_row(records: list[dict[str, Any]]) -> tuple[str, ...]:
    first = records[0]
    models = sorted({str(r.get("model")) for r in records})
    succeeded = sum(1 for r in records if r.get("success"))
    success = ("yes" if succeeded else "no") if len(records) == 1 else f"{succeeded}/{len(records)}"
    characters = [r["characters"] for r in records if isinstance(r.get("characters"), int)]
    duration = max(int(r.get("duration_ms") or 0) for r in records)
    return (
        str(first.get("started_at", ""))[:19].replace("T", " "),
        str(first.get("run_id", "")),
        str(first.get("trigger", "")),
        models[0] if len(models) == 1 else f"{len(models)} models",
        success,
        f"{duration / 1000:.2f} s",
        str(sum(characters)) if characters else "-",
    )


def _show(args: argparse.Namespace) -> int:
    records = _sink(args.results).run(args.run_id)
    if not records:
        sys.stderr.write(f"No run {args.run_id!r} in the results sink.\n")
        return EXIT_FAILED
    first = records[0]
    _print(
        {
            "run_id": first["run_id"],
            "trigger": first.get("trigger"),
            "run_config": first.get("run_config"),
            "started_at": first.get("started_at"),
            "ended_at": max(str(r.get("ended_at")) for r in records),
            "envelopes": [r["envelope"] for r in records],
        }
    )
    return EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _print(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
