"""`hf-run-job` (and `python -m function`): run the job from a terminal or a cron line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from function.runs import Sink

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
log = logging.getLogger("function.cli")

EPILOG = """\
examples:
  hf-run-job run                                   # the default run config
  hf-run-job run --text "Refund not received" --label billing --label shipping
  hf-run-job run --model distilbert/distilbert-base-uncased-finetuned-sst-2-english \\
      --text "I love it" --label null              # drop the config's labels: model's own task
  hf-run-job run --config my_job --param multi_label=true
  hf-run-job run --model meta-llama/Llama-3.1-8B-Instruct --provider groq \\
      --system "Answer in one sentence." --text "What is deep learning?"
  hf-run-job run --provider local --model sentence-transformers/all-MiniLM-L6-v2 \\
      --task feature-extraction --text "Hi"   # in this process: no token (needs [local])
  hf-run-job compare --text "Refund not received" --model facebook/bart-large-mnli \\
      --model MoritzLaurer/deberta-v3-base-zeroshot-v2.0
  hf-run-job run --task image-classification --model google/vit-base-patch16-224 \\
      --image photo.jpg                              # or s3://..., https://..., base64
  hf-run-job run --task automatic-speech-recognition --model openai/whisper-large-v3 \\
      --audio call.wav
  hf-run-job run --task text-to-image --model black-forest-labs/FLUX.1-schnell \\
      --text "a red fox" --out fox.png
  hf-run-job run --event events/scheduled-event.json  # run the Lambda handler on a saved event
  hf-run-job run --config tickets --cache 7d      # answer from earlier runs' answers
  hf-run-job history --failed --since 2026-11-01   # recent runs from RESULTS_URI
  hf-run-job show 20261123T084755123Z-1a2b3c4d     # one run's envelopes
  hf-run-job usage --by model --since 2026-11-01   # what the runs used and cost
  hf-run-job report --out report.html              # an HTML page of the runs (offline)
  hf-run-job report --presign                      # a link to REPORT_URI's page on S3

Prints the envelope {success, result, is_classification, model, error} as JSON on stdout.
Exit status: 0 success, 1 failure envelope, 2 usage error. With --event: 0 when every run
(or batch item, or SQS message) succeeded, else 1.
Environment: HUGGINGFACE_API_KEY (or HF_TOKEN), HUGGINGFACE_API_ENDPOINT,
HUGGINGFACE_ROUTER_URL (text-generation), HF_ENDPOINTS (named endpoints), HF_BILL_TO,
RUN_CONFIG, RESULTS_URI (run records; default: runs/ beside run_config/).
Cache, usage and report: HF_CACHE_URI, HF_PRICES, REPORT_URI, REPORT_DAYS.
Budgets: `budget` in a run config or an event, e.g. {"characters": 100000, "per": "day"}.
Images and audio: HF_MEDIA_MAX_BYTES (10 MiB); S3 uploads: S3_TRIGGERS.
provider: local: HF_HOME / HF_HUB_CACHE (the model cache), HF_HUB_OFFLINE,
HF_LOCAL_MAX_MODELS, HF_LOCAL_MAX_MODEL_MB.
"""


def build_parser() -> argparse.ArgumentParser:
    # -v is accepted before and after the subcommand (each parser counts its own; summed).
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log to stderr (-vv: debug)",
    )
    # The commands that read run records read them from one place.
    records = argparse.ArgumentParser(add_help=False)
    records.add_argument("--results", metavar="URI", help="the sink (default: $RESULTS_URI, runs/)")
    parser = argparse.ArgumentParser(
        prog="hf-run-job",
        description="Run Hugging Face inference as a scheduled job and print the envelope.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        parents=[verbose],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        parents=[verbose],
        help="run one inference (the run config, overridden by these flags)",
        description="Run one inference: the run config, overridden by the flags given.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    _add_run_flags(run)
    run.add_argument(
        "--fallback",
        metavar="M",
        action="append",
        help="a model to try when the one before it fails in a way another could fix "
        "(not served, loading, overloaded, out of credits); repeat, in order",
    )
    run.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        help="text-to-image: also save the picture here (it is stored beside the run "
        "records either way)",
    )
    run.add_argument(
        "--event",
        metavar="FILE",
        type=Path,
        help="run the Lambda handler on a saved event (JSON), as it is: no other run flags",
    )
    batch = commands.add_parser(
        "batch",
        parents=[verbose],
        allow_abbrev=False,  # the continuation's command drops options by their full names
        help="run many items from a JSONL or CSV file (or stdin), in input order",
        description=(
            "Run every item of a JSONL file (a line per item: an object of run inputs with an "
            "optional id, or a JSON string as the text) or of a CSV file (--text-column) over "
            "the run config and these flags."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=BATCH_EPILOG,
    )
    batch.add_argument(
        "--input",
        metavar="FILE",
        required=True,
        help="the items: a JSONL file (a JSON value per line), a CSV file, or - for stdin",
    )
    batch.add_argument(
        "--output",
        metavar="FILE.jsonl",
        help="where the records go (default: stdout, before the summary)",
    )
    batch.add_argument(
        "--continuation",
        metavar="FILE.jsonl",
        help="where unfinished items go (default: OUTPUT.continuation.jsonl, else "
        "INPUT.continuation.jsonl, else stdin.continuation.jsonl)",
    )
    batch.add_argument(
        "--text-column",
        metavar="NAME",
        help="read the input as CSV with a header row; this column is each item's text "
        "(the default for a .csv file: 'text'). Other columns are ignored, except --id-column",
    )
    batch.add_argument(
        "--id-column",
        metavar="NAME",
        help="the CSV column holding each item's id (default: 'id' when the file has one, "
        "else the row's 0-based position)",
    )
    _add_run_flags(batch)
    batch.add_argument(
        "--concurrency",
        metavar="N",
        type=_up_to_1024,
        help="at most N requests in flight (default: found by probing, up to 64)",
    )
    batch.add_argument(
        "--rate",
        metavar="R",
        type=_positive_number,
        help="at most R requests started per second (a positive number)",
    )
    batch.add_argument(
        "--batch-size",
        metavar="N",
        type=_up_to_1024,
        default=32,
        help="texts per feature-extraction request, and with --provider local per "
        "pipeline call (default 32, at most 1024)",
    )
    compare = commands.add_parser(
        "compare",
        parents=[verbose],
        help="run the same input on several models or providers at once, side by side",
        description=(
            "Run the same input (the run config, overridden by these flags) on every --model "
            "at once and print a table: model, success, the top label and score or the start "
            "of the text, latency and usage."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=COMPARE_EPILOG,
    )
    _add_run_flags(compare, models=True)
    compare.add_argument(
        "--json", action="store_true", help="print the records as JSON lines instead"
    )
    history = commands.add_parser(
        "history",
        parents=[verbose, records],
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
        type=_day,
        help="only runs on or after this day (YYYY-MM-DD, UTC)",
    )
    spent = commands.add_parser(
        "usage",
        parents=[verbose, records],
        help="what the runs used and cost, per day, model, run config or provider",
        description=(
            "Sum the run records in RESULTS_URI (a directory or s3://) per group: runs, items, "
            "successes, failures, characters, input and output tokens, compute seconds, cache "
            "hits and an estimated cost (prices: HF_PRICES over documented defaults)."
        ),
    )
    spent.add_argument("--since", metavar="DATE", type=_day, help="from this day (YYYY-MM-DD, UTC)")
    spent.add_argument("--until", metavar="DATE", type=_day, help="to this day, included")
    spent.add_argument(
        "--by", choices=("day", "model", "run-config", "provider"), default="day",
        help="the groups (default: day)",
    )  # fmt: skip
    spent.add_argument("--json", action="store_true", help="JSON: the groups, the total, prices")
    page = commands.add_parser(
        "report",
        parents=[verbose, records],
        help="write an HTML page of what the runs found and cost",
        description=(
            "Write one self-contained HTML page (it opens offline) from the run records in "
            "RESULTS_URI: runs over time, failures by kind, latency per model, characters "
            "and tokens per day, cache hits, labels found per classification run config, "
            "and the last failures. --presign prints a time-limited link to the page on S3."
        ),
    )
    page.add_argument(
        "--since",
        metavar="DATE",
        type=_day,
        help="from this day (YYYY-MM-DD, UTC; default: REPORT_DAYS days back, 14)",
    )
    page.add_argument(
        "--out",
        metavar="PATH",
        help="a file or s3://bucket/key (default: report.html; REPORT_URI when set)",
    )
    page.add_argument(
        "--presign",
        action="store_true",
        help="print a link to the page on S3 that works for --expires seconds: the page "
        "--out writes, else the one at REPORT_URI (which scheduled runs rewrite; then "
        "nothing is written)",
    )
    page.add_argument(
        "--expires",
        metavar="SECONDS",
        type=_positive_int,
        default=3600,
        help="how long a --presign link works (default 3600, at most 604800: 7 days)",
    )
    show = commands.add_parser(
        "show",
        parents=[verbose, records],
        help="print one run's envelopes",
        description="Print one run's records as JSON.",
    )
    show.add_argument("run_id", metavar="RUN_ID", help="as listed by 'history'")
    fetch = commands.add_parser(
        "fetch-models",
        parents=[verbose],
        help="download the models that run configs run locally (provider: local)",
        description="Put into the Hugging Face cache (HF_HOME / HF_HUB_CACHE) every model that "
        "the run configs run in this process (provider: local, their fallbacks included), as "
        "the container image does at build time. With HF_HUB_OFFLINE=1 it only checks that "
        "they are there. Exit status 1 if one is missing.",
    )
    fetch.add_argument(
        "--config",
        metavar="NAME",
        action="append",
        help="a run config (repeat; default: every one in the run config folder)",
    )
    return parser


BATCH_EPILOG = """\
examples:
  hf-run-job batch --input tickets.jsonl --output labels.jsonl --label "billing, shipping"
  hf-run-job batch --input tickets.csv --text-column body --output labels.jsonl
  cat texts.jsonl | hf-run-job batch --input - --task feature-extraction \\
      --model sentence-transformers/all-MiniLM-L6-v2 --label null --batch-size 64

Each item yields one record, in input order: {success, result, is_classification, model,
error, id} (id: the item's, else its 0-based position). The last line on stdout is the
summary {total, succeeded, failed, output, elapsed_s, items_per_s}. Items not finished
before --timeout, or when Ctrl-C / SIGTERM stops the batch, are written with their ids to
the continuation file: run it as the next batch, with the same options and another
--output. Progress goes to stderr. Exit status: 0 every item succeeded, 1 some failed or
were continued, 2 usage error, 130 interrupted (143 on SIGTERM).
"""


COMPARE_EPILOG = """\
examples:
  hf-run-job compare --text "Refund not received" \\
      --model facebook/bart-large-mnli --model MoritzLaurer/deberta-v3-base-zeroshot-v2.0
  hf-run-job compare --task text-generation --text "What is deep learning?" \\
      --model meta-llama/Llama-3.1-8B-Instruct:groq \\
      --model meta-llama/Llama-3.1-8B-Instruct:together

Exit status: 0 every model succeeded, 1 one or more failed, 2 usage error.
"""


def _add_run_flags(parser: argparse.ArgumentParser, *, models: bool = False) -> None:
    parser.add_argument(
        "--config",
        metavar="NAME|PATH",
        help="run config name in run_config/, or a path (default: $RUN_CONFIG, else 'default')",
    )
    if models:
        parser.add_argument(
            "--model",
            metavar="M",
            action="append",
            dest="models",
            required=True,
            help="a model to compare (repeat): an id, or id:provider such as "
            "meta-llama/Llama-3.1-8B-Instruct:groq",
        )
    else:
        parser.add_argument("--model", metavar="M", help="model id, e.g. facebook/bart-large-mnli")
    parser.add_argument("--text", metavar="T", help="the input text")
    parser.add_argument(
        "--image",
        metavar="SRC",
        help="the image of an image task: a file, s3://bucket/key, an https:// URL, a data: "
        "URL or base64",
    )
    parser.add_argument(
        "--audio",
        metavar="SRC",
        help="the sound of an audio task (automatic-speech-recognition, audio-classification): "
        "a file, s3://bucket/key, an https:// URL, a data: URL or base64",
    )
    parser.add_argument(
        "--provider",
        metavar="P",
        help="local: run the model in this process (any text task; no token; needs the [local] "
        "extra). text-generation: the router's provider (groq, together, ...), a policy "
        "(fastest, cheapest), or auto (the default: your order on huggingface.co)",
    )
    parser.add_argument(
        "--endpoint",
        metavar="NAME",
        help="run on a named endpoint (one of HF_ENDPOINTS)",
    )
    parser.add_argument("--system", metavar="S", help="text-generation: a system prompt")
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
        help="the task, e.g. text-classification or image-classification (default: "
        "inferred from the inputs, else from the model's answer; an --image or --audio run "
        "names its task)",
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
    parser.add_argument(
        "--cache",
        metavar="LIFETIME",
        type=_lifetime,
        help='answer from the answers of earlier runs this recent: "1h", "7d" (default: off); '
        "a hit sends no request",
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
        help="the run's deadline in seconds (run: $HF_DEFAULT_BUDGET, 60 s; batch: none)",
        type=_positive_number,
    )


def overrides_from_args(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    names = ("model", "text", "image", "audio", "task", "wait_for_model", "provider", "endpoint")
    for name in (*names, "system", "cache"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "fallback", None):
        overrides["fallback"] = args.fallback
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
    from function import jsontext

    try:
        jsontext.check(overrides)  # held to the rules events are (e.g. undecodable bytes)
    except ValueError as exc:
        parser.error(f"the arguments are {exc}")
    return overrides


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def main(argv: list[str] | None = None) -> int:
    from function.errors import ConfigError

    try:
        return _main(argv)
    except KeyboardInterrupt:  # before a batch could take the signal over
        sys.stderr.write("Interrupted.\n")
        return EXIT_INTERRUPTED
    except ConfigError as exc:  # a setting (HF_PRICES, REPORT_DAYS, ...) that cannot be used
        sys.stderr.write(f"hf-run-job: {exc.message}\n")
        return EXIT_USAGE
    except SinkError as exc:
        sys.stderr.write(f"hf-run-job: {exc}\n")
        return EXIT_FAILED


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(getattr(args, "verbose", 0))
    if args.command == "batch":
        return _batch(args, parser, sys.argv[1:] if argv is None else argv)
    if args.command == "compare":
        return _compare(args, parser)
    if args.command == "history":
        return _history(args)
    if args.command == "usage":
        return _usage(args, parser)
    if args.command == "report":
        return _report(args, parser)
    if args.command == "show":
        return _show(args)
    if args.command == "fetch-models":
        return _fetch_models(args.config)
    if args.event is not None:
        given = overrides_from_args(args, parser)
        if given or args.timeout is not None:
            parser.error("--event runs the saved event as it is; other run flags do not apply")
        return _run_event(args.event, parser, getattr(args, "verbose", 0))
    if args.out is not None and args.task not in (None, "text-to-image"):
        parser.error("--out saves a text-to-image picture; the task is " + repr(args.task))
    return _run(overrides_from_args(args, parser), args.timeout, args.out)


def _fetch_models(names: list[str] | None) -> int:
    from function import local
    from function.errors import RunJobError
    from function.inputs import local_models
    from function.settings import load_settings

    try:
        settings = load_settings()
        wanted = local_models(settings, names)
    except RunJobError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    missing = 0
    for model_id in wanted:
        try:
            folder = local.files(model_id, settings)
        except RunJobError as exc:
            missing += 1
            print(f"missing  {model_id}: {exc.message}")
            continue
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"ok       {model_id}  {size / 1024 / 1024:,.1f} MB  {folder}")
    if not wanted:
        print("No run config runs a model locally (provider: local).")
    return EXIT_FAILED if missing else EXIT_OK


def _configure_logging(verbosity: int) -> None:
    from function.redact import RedactingHandler

    handler = RedactingHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=_level(verbosity), handlers=[handler])


def _level(verbosity: int) -> int:
    return [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]


def _run(overrides: dict[str, Any], timeout: float | None, out: Path | None = None) -> int:
    from function.lifecycle import cli_invocation, handle

    handled = asyncio.run(handle(cli_invocation("cli", overrides), timeout=timeout))
    _print(handled.reply)
    result = handled.reply.get("result") if isinstance(handled.reply, dict) else None
    if out is not None and isinstance(result, dict) and isinstance(result.get("image"), str):
        return _save_picture(result["image"], out)
    if out is not None and handled.ok:
        print("--out: the run made no picture (--out is for text-to-image)", file=sys.stderr)
        return EXIT_FAILED
    _token_hint(handled.reply)
    return EXIT_OK if handled.ok else EXIT_FAILED


def _token_hint(reply: Any) -> None:
    """After a failure for want of a token, one line on stderr: a model can run here."""
    from function.backends import NO_TOKEN

    error = reply.get("error") if isinstance(reply, dict) else None
    if isinstance(error, str) and error.startswith(NO_TOKEN):
        print(
            "No token? A model can run in this process instead: --provider local (a demo: "
            "`make run-local`).",
            file=sys.stderr,
        )


def _save_picture(uri: str, out: Path) -> int:
    """Copy a stored picture (a file, or an S3 object) to `out`."""
    from function.settings import load_settings
    from function.storage import s3_location

    bucket, key = s3_location(uri)
    try:
        if bucket is None:
            data = Path(uri).read_bytes()
        else:
            from function.aws import aws_client

            s3 = aws_client("s3", load_settings().aws_timeout_s)
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        out.write_bytes(data)
    except Exception as exc:  # it stays where it is stored: the envelope says where
        print(f"--out {out}: could not save the picture ({exc})", file=sys.stderr)
        return EXIT_FAILED
    print(f"Saved the picture to {out}", file=sys.stderr)
    return EXIT_OK


def _compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from function.lifecycle import cli_invocation, handle

    overrides = {**overrides_from_args(args, parser), "compare": args.models}
    handled = asyncio.run(handle(cli_invocation("cli", overrides), timeout=args.timeout))
    summary = handled.reply
    if "results" not in summary:  # the comparison could not start: its failure envelope
        _print(summary)
        _token_hint(summary)
        return EXIT_FAILED
    if args.json:
        for record in summary["results"]:
            print(json.dumps(record, ensure_ascii=False))
    else:
        print(_table(summary["results"]))
    return EXIT_OK if handled.ok else EXIT_FAILED


def _table(records: list[dict[str, Any]]) -> str:
    """One line per model: model, ok, what it found, latency, usage."""
    rows = [("model", "ok", "result", "latency", "usage")]
    for record in records:
        usage = record.get("usage") or {}
        spent = _clip(", ".join(f"{k} {v}" for k, v in usage.items()), 200)
        rows.append(
            (
                _clip(_alternate_name(record["id"]), 120),
                "yes" if record["success"] else "no",
                _found(record),
                f"{record['latency_ms']} ms",
                spent,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[4]
        for row in rows
    )


def _alternate_name(given: Any) -> str:
    """`model`, `model (provider)`, `model @endpoint`: the alternate as given."""
    if not isinstance(given, dict):
        return str(given)
    name = str(given.get("model"))
    if given.get("provider"):
        name += f" ({given['provider']})"
    return name + (f" @{given['endpoint']}" if given.get("endpoint") else "")


def _found(record: dict[str, Any]) -> str:
    """The top label and score, or the first 60 characters of the text, or the error."""
    if not record["success"]:
        return _clip(f"error: {record['error']}")
    result = record["result"]
    if isinstance(result, list) and result and isinstance(result[0], dict) and "label" in result[0]:
        return f"{result[0]['label']} ({result[0]['score']:.2f})"
    if isinstance(result, dict) and isinstance(result.get("generated_text"), str):
        return _clip(result["generated_text"])
    return _clip(json.dumps(result, ensure_ascii=False))


def _clip(text: str, size: int = 60) -> str:
    """One printable line (an answer's control characters never reach the terminal)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= size else text[: size - 3] + "..."


def _run_event(path: Path, parser: argparse.ArgumentParser, verbosity: int) -> int:
    """The Lambda handler's work on a saved event (no metrics: stdout is the reply's)."""
    from function.lifecycle import handle_event
    from function.observability import configure_logging

    configure_logging()  # the job's JSON lines, at the CLI's level (-v, -vv)
    logging.getLogger("function").setLevel(_level(verbosity))

    try:
        event = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        parser.error(f"--event: cannot read {path}: {exc.strerror}")
    except ValueError as exc:
        parser.error(f"--event: {path} is not valid JSON: {exc}")
    handled = asyncio.run(handle_event(event))
    _print(handled.reply)
    return EXIT_OK if handled.ok else EXIT_FAILED


def _batch(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> int:
    from function.batchfields import BatchFields
    from function.errors import InputError, RunJobError
    from function.lifecycle import Handled, cli_invocation, handle
    from function.settings import load_settings
    from function.storage import STDIN, check_places, continuation_uri, file_plan

    shared = overrides_from_args(args, parser)
    source, output_path = args.input, args.output
    text_column = args.text_column or ("text" if source.lower().endswith(".csv") else None)
    if source != STDIN and not Path(source).is_file():
        parser.error(f"--input: {source} is not a file (give a JSONL or CSV file, or - for stdin)")
    default_continuation = "stdin.jsonl" if source == STDIN else source
    continuation_path = args.continuation or continuation_uri(output_path or default_continuation)
    try:
        check_places(source, output_path, continuation_path)
        settings = load_settings()
    except InputError as exc:
        parser.error(exc.message.replace("output_uri", "--output"))
    except RunJobError as exc:
        sys.stderr.write(exc.message + "\n")
        return EXIT_FAILED
    options = BatchFields(
        input_uri=source,
        batch_size=args.batch_size,
        concurrency=args.concurrency or BatchFields.model_fields["concurrency"].default,
        rate=args.rate,
    )
    lines = _count_lines(source)
    progress = Progress(lines - 1 if lines and text_column else lines)  # a CSV's header
    interrupt = Interrupt()

    async def main() -> Any:
        interrupt.install()
        try:
            plan = file_plan(
                settings,
                shared,
                options,
                source,
                output_path,
                continuation_path,
                text_column=text_column,
                id_column=args.id_column,
                progress=progress.update,
                on_start=interrupt.attach,
            )
        except RunJobError as exc:  # the output cannot be opened: said like any failure
            from function.envelope import failure_envelope

            log.error("%s", exc.message)
            return Handled(failure_envelope(exc.message, model=None), ok=False)
        return await handle(cli_invocation("cli", shared), timeout=args.timeout, plan=plan)

    try:
        handled = asyncio.run(main())
    except KeyboardInterrupt:  # the second Ctrl-C
        progress.close()
        sys.stderr.write(
            "Quit: the items not written by now are in neither the output nor the continuation.\n"
        )
        return EXIT_INTERRUPTED
    finally:
        progress.close()
    result = handled.reply
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")  # the error is logged too
    _token_hint(result)
    succeeded, first = result.get("succeeded", 0), result.get("first_failure")
    if result.get("failed") and not succeeded and isinstance(first, dict):
        which = _clip(json.dumps(first["id"], ensure_ascii=False) + ": " + first["error"], 600)
        sys.stderr.write(
            f"No item succeeded ({result['failed']:,} failed). The first in the input, id {which}\n"
        )
    if result.get("continued") and isinstance(result.get("continuation"), str):
        # A --timeout within which nothing succeeded would do the same again: not repeated.
        in_vain = result.get("stopped") == "deadline" and not succeeded
        if in_vain and args.timeout is not None:
            sys.stderr.write(
                f"No item succeeded within --timeout {args.timeout:g} s (a local model's "
                "loading and the API's retries count against it): the command below runs "
                "without it; give it a --timeout longer than that one, or none.\n"
            )
        drop = ("--timeout",) if in_vain else ()
        going_on = _going_on(argv, result["continuation"], output_path, _program(), drop)
        sys.stderr.write(f"To go on: {going_on}\n")
    if interrupt.signalled:
        return 128 + interrupt.signalled  # 130 for Ctrl-C, 143 for SIGTERM
    return EXIT_OK if handled.ok else EXIT_FAILED


# The options of where a batch reads and writes: its continuation (JSONL) sets its own.
_PLACES = ("--input", "--output", "--continuation", "--text-column", "--id-column")


def _program() -> str:
    """How this command was called, for a command to print: `.venv/bin/hf-run-job` as the
    README calls it, else the installed name."""
    called = sys.argv[0] if sys.argv else ""
    return called if Path(called).name == "hf-run-job" else "hf-run-job"


def _going_on(
    argv: list[str],
    continuation: str,
    output: str | None,
    program: str = "hf-run-job",
    drop: tuple[str, ...] = (),
) -> str:
    """The command that runs a batch's continuation: its own options (less `drop`), the
    continuation as its input, and an output beside the first one (the token masked, as
    everywhere)."""
    from function.redact import redact

    left_out = (*_PLACES, *drop)
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in left_out:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in left_out)):
            kept.append(arg)
    command = [program, *kept, "--input", continuation]
    if output not in (None, "-"):
        folder, slash, name = output.rpartition("/")
        stem, dot, suffix = name.rpartition(".")
        rest = f"{stem}.rest.{suffix}" if dot and stem else f"{name}.rest"
        command += ["--output", f"{folder}{slash}{rest}"]
    return redact(shlex.join(command))


class Interrupt:
    """Ctrl-C / SIGTERM stop the batch gracefully: what is answered is written, the rest
    goes to the continuation, the summary is printed. A second Ctrl-C quits at once."""

    def __init__(self) -> None:
        self.signalled = 0  # the signal's number
        self._engine: Any = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.fire, sig)

    def fire(self, sig: int) -> None:
        self.signalled = sig
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
        by = "Ctrl-C again" if sig == signal.SIGINT else f"Ctrl-C (or SIGINT to {os.getpid()})"
        sys.stderr.write(
            f"\nStopping ({signal.Signals(sig).name}): answered items are written; the others, "
            "and the rest of the input not read yet, go to the continuation (this can take a "
            f"while). {by} quits at once, losing what is not written by then.\n"
        )
        if self._engine is not None:
            self._engine.stop("interrupted")

    def attach(self, engine: Any) -> None:
        self._engine = engine
        if self.signalled:
            engine.stop("interrupted")


def _count_lines(source: str) -> int | None:
    """Lines in the input, for the progress total (in chunks: a line is never held whole)."""
    if source == "-":
        return None
    count, last = 0, b"\n"
    with open(source, "rb") as file:
        while chunk := file.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


class Progress:
    """A bar on a terminal; a line every few seconds otherwise (logs, CI)."""

    EVERY_S = 5.0

    def __init__(self, total: int | None, stream: Any = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = self.last = time.monotonic()
        self.shown = -1
        self.latest: Any = None
        self.stop_said = False

    def update(self, summary: Any, *, final: bool = False) -> None:
        self.latest = summary
        if summary.stopped == "deadline" and not self.stop_said:
            self.stop_said = True
            self.stream.write(
                ("\n" if self.tty else "") + "The --timeout has come: unfinished items, and the "
                "rest of the input not read yet, go to the continuation.\n"
            )
        # Counted as the items finish, not as they are written in input order.
        done, failed = summary.answered, sum(summary.failed_by_kind.values())
        seen = done + summary.continued
        now = time.monotonic()
        finished = self.total is not None and seen >= self.total
        if seen == self.shown or (
            now - self.last < (0.2 if self.tty else self.EVERY_S) and not (finished or final)
        ):
            return
        self.last, self.shown = now, seen
        rate = done / (now - self.started) if now > self.started else 0.0
        of = f"/{self.total}" if self.total is not None else ""
        share = f" ({done / self.total:.0%})" if self.total else ""
        counts = f"{done}{of}{share} {done - failed} ok {failed} failed"
        if summary.continued:
            counts += f" {summary.continued} continued"
        counts += f" {rate:.0f}/s"
        if self.tty and self.total:
            bar = "#" * int(done / self.total * 30)
            self.stream.write(f"\r[{bar:<30}] {counts}")
        elif self.tty:
            self.stream.write(f"\r{counts}")
        else:
            self.stream.write(f"progress: {counts}\n")
        self.stream.flush()

    def close(self) -> None:
        """The last counts, whatever the throttle held back (stdin has no total)."""
        if self.latest is not None:
            self.update(self.latest, final=True)
        if self.tty and self.shown >= 0:
            self.stream.write("\n")


def _sink(uri: str | None) -> Sink:
    from function.runs import open_sink
    from function.settings import load_settings

    try:
        return open_sink(uri or load_settings().results_uri)
    except ValueError as exc:  # names no bucket, an unknown scheme
        said = str(exc).replace("RESULTS_URI", "--results" if uri else "RESULTS_URI")
        raise SinkError(said) from None


class SinkError(Exception):
    """The run records cannot be read (`history`, `show`, `usage`, `report`): exit 1."""


@contextmanager
def _reading(uri: str | None) -> Iterator[None]:
    """Reading the run records (`history`, `show`, `usage`, `report`): what goes wrong
    there (a file, S3, bad data) is a SinkError that says where (exit 1)."""
    try:
        yield
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError  # only when raised

        if not isinstance(exc, OSError | ValueError | BotoCoreError | ClientError):
            raise
        from function.aws import describe
        from function.settings import load_settings

        where = uri or load_settings().results_uri
        raise SinkError(f"cannot read the run records in {where}: {describe(exc)}") from None


def _usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from function import usage
    from function.settings import load_settings

    if args.since and args.until and args.since > args.until:
        parser.error(f"--since {args.since} is after --until {args.until}: no day is in between")
    prices = usage.price_table(load_settings().prices)
    with _reading(args.results):
        runs = _sink(args.results).runs(since=args.since)
        groups, total = usage.usage(runs, args.by, prices, args.since, args.until)
    if not total.runs:
        sys.stderr.write("No run records in this period.\n")
    if args.json:
        _print(
            {
                "by": args.by,
                "groups": {k: v.as_dict() for k, v in groups.items()},
                "total": total.as_dict(),
                "prices": prices,
            }
        )
    else:
        print(usage.table(groups, total, args.by))
        print(
            "Costs are estimates from the price table (HF_PRICES; see the README).", file=sys.stderr
        )
    return EXIT_OK


def _report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from function.aws import describe
    from function.report import page_of, presign, put_page
    from function.settings import load_settings, page_location, page_problem

    settings = load_settings()
    if args.expires > 604_800:
        parser.error("--expires: at most 604800 seconds (7 days), S3's limit for a link")
    target = page_location(args.out or settings.report_uri or "report.html")
    where = "--out" if args.out else "REPORT_URI" if settings.report_uri else "--out"
    problem = page_problem(target)
    if problem:
        parser.error(f"{where}: {target} {problem}")
    if args.presign and not target.startswith("s3://"):
        parser.error(
            f"--presign needs the page on S3: --out s3://bucket/key or REPORT_URI (not {target})"
        )
    if args.out is not None or not args.presign:
        with _reading(args.results):
            page = page_of(_sink(args.results), settings, args.since)
    try:
        if args.out is not None or not args.presign:
            print(f"Wrote {put_page(page, target, settings)}", file=sys.stderr)
        if args.presign:
            print(presign(target, settings, args.expires))
    except Exception as exc:  # S3 refusing, a missing bucket or page, a full disk
        print(f"hf-run-job report: {target}: {describe(exc)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _history(args: argparse.Namespace) -> int:
    runs = []
    with _reading(args.results):
        for records in _sink(args.results).runs(since=args.since):
            if args.failed and all(r.get("success") for r in records):  # a batch: all items ok
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
    """A run's line: one record per single run or SQS message; a batch's summary record
    counts its items."""
    first = records[0]
    from function.envelope import count, seconds

    models = sorted({str(r.get("model") or "-") for r in records})
    total = succeeded = 0
    for record in records:  # damaged numbers count as nothing
        summary = record.get("summary") if record.get("kind") == "batch" else None
        if isinstance(summary, dict):
            total += count(summary.get("total")) or 0
            succeeded += count(summary.get("succeeded")) or 0
        else:
            total += 1
            succeeded += record.get("success") is True
    single = len(records) == 1 and first.get("kind") != "batch"
    success = ("yes" if succeeded else "no") if single else f"{succeeded}/{total}"
    characters = [c for r in records if (c := count(r.get("characters"))) is not None]
    duration = max(seconds(r.get("duration_ms")) or 0 for r in records)
    return (
        str(first.get("started_at", ""))[:19].replace("T", " "),
        str(first.get("run_id", "")),
        str(first.get("trigger", "")) + (" batch" if first.get("kind") == "batch" else ""),
        models[0] if len(models) == 1 else f"{len(models)} models",
        success,
        f"{duration / 1000:.2f} s",
        str(sum(characters)) if characters else "-",
    )


def _show(args: argparse.Namespace) -> int:
    with _reading(args.results):
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
            "envelopes": [r["envelope"] for r in records if "envelope" in r],
            **({"batches": batches} if (batches := _batch_summaries(records)) else {}),
        }
    )
    return EXIT_OK


def _batch_summaries(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A batch run's record holds its summary (its items' records are in its output)."""
    return [r["summary"] for r in records if r.get("kind") == "batch" and "summary" in r]


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _lifetime(text: str) -> str:
    from function.cache import lifetime

    try:
        lifetime(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a day: expected YYYY-MM-DD (UTC), e.g. 2026-11-30"
        ) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:  # argparse would name this function: "invalid _positive_int value"
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _up_to_1024(text: str) -> int:
    """--batch-size and --concurrency: the bounds the batch fields of an event have."""
    value = _positive_int(text)
    if value > 1024:
        raise argparse.ArgumentTypeError("must be at most 1024")
    return value


def _print(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def command() -> NoReturn:
    """The `hf-run-job` command: `main`, then out. After a local run the process leaves
    without the interpreter's teardown, once its output is out: a batch that stopped at its
    deadline or on a signal leaves its model computing in a thread, and torch's teardown
    under it aborts the process (exit 134, not the batch's own 1 or 130)."""
    code = main()
    if "torch" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    command()
