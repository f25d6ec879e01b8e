"""`hf-run-job` (and `python -m function`): run the job from a terminal or a cron line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from function.envelope import Outcome

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

EPILOG = """\
examples:
  hf-run-job run                                   # the default run config
  hf-run-job run --text "Refund not received" --label billing --label shipping
  hf-run-job run --model distilbert/distilbert-base-uncased-finetuned-sst-2-english \\
      --text "I love it" --label null              # drop the config's labels: model's own task
  hf-run-job run --config my_job --param multi_label=true
  hf-run-job run --event events/scheduled-event.json  # run the Lambda handler on a saved event

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
    run.add_argument(
        "--config",
        metavar="NAME|PATH",
        help="run config name in run_config/, or a path (default: $RUN_CONFIG, else 'default')",
    )
    run.add_argument("--model", metavar="M", help="model id, e.g. facebook/bart-large-mnli")
    run.add_argument("--text", metavar="T", help="the input text")
    run.add_argument(
        "--label",
        metavar="L",
        action="append",
        dest="labels",
        help="a candidate label (repeat; or one comma-separated list; 'null' drops "
        "the run config's labels)",
    )
    run.add_argument(
        "--task",
        metavar="T",
        help="the task, e.g. text-classification (default: "
        "inferred from the inputs, else from the model's answer)",
    )
    run.add_argument(
        "--param",
        metavar="KEY=JSON",
        action="append",
        default=[],
        help="a request parameter, e.g. multi_label=true or top_k=3 (repeatable)",
    )
    run.add_argument(
        "--inputs",
        metavar="JSON",
        help='structured inputs, e.g. \'{"question": "...", "context": "..."}\'',
    )
    wait = run.add_mutually_exclusive_group()
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
    run.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        help="the run's deadline (default: $HF_DEFAULT_BUDGET, 60 s)",
    )
    run.add_argument(
        "--event",
        metavar="FILE",
        type=Path,
        help="run the Lambda handler on a saved event (JSON); other flags are ignored",
    )
    return parser


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


def _print(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
