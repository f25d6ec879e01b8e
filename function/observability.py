"""Structured JSON logs and CloudWatch EMF metrics, with AWS Lambda Powertools.

The package's modules log through ordinary `logging.getLogger(__name__)` loggers; the
Powertools Logger's JSON formatter is copied onto the `function` logger, so every line is
one JSON object with the invocation's keys (request id, run id, trigger). Lines go to
stderr through `RedactingHandler`: the token never shows. Texts are never logged, only
their models, tasks, statuses, durations and counts.

Metrics are recorded only in Lambda (`handler.lambda_handler` flushes them with
`log_metrics`); outside it stdout carries the reply alone.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from function.redact import RedactingHandler, guard_root_handlers

if TYPE_CHECKING:
    from function.envelope import Outcome
    from function.replies import Done

SERVICE = "hf-run-job"
NAMESPACE = "HfRunJob"

logger = Logger(service=SERVICE, logger_handler=RedactingHandler())
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
_configured = False


def configure_logging() -> None:
    """Give the package's loggers the Powertools JSON format (once per process), and mask
    secrets in whatever else reaches the root logger's handlers."""
    global _configured
    if not _configured:
        logging.getLogger("function")
        copy_config_to_registered_loggers(source_logger=logger, include={"function"})
        _configured = True
    guard_root_handlers()


def start_invocation(**keys: Any) -> None:
    logger.remove_keys(["run_id", "trigger", "request_id"])
    logger.append_keys(**keys)


def record_metrics(outcomes: list[Outcome], done: list[Done]) -> None:
    """The invocation's metrics: per run, per batch, and what went back to the queue.
    Failures by kind are one dimension each (`FailuresByKind`, `ErrorKind`)."""
    add = metrics.add_metric
    add(name="Invocations", unit=MetricUnit.Count, value=1)
    kinds: dict[str, int] = {}
    for outcome in outcomes:
        add(name="Runs", unit=MetricUnit.Count, value=1)
        add(name="Successes" if outcome.success else "Failures", unit=MetricUnit.Count, value=1)
        add(name="Latency", unit=MetricUnit.Milliseconds, value=outcome.duration_ms)
        add(name="Retries", unit=MetricUnit.Count, value=max(0, outcome.attempts - 1))
        if outcome.usage.characters:
            add(name="BilledCharacters", unit=MetricUnit.Count, value=outcome.usage.characters)
        if not outcome.success:
            kind = outcome.error_kind or "unknown"
            kinds[kind] = kinds.get(kind, 0) + 1
    for item in done:
        if "items_per_s" in item.body:  # a batch's summary (a comparison's runs are outcomes)
            summary = item.body
            ran = summary.get("succeeded", 0) + summary.get("failed", 0)
            add(name="Runs", unit=MetricUnit.Count, value=ran)  # what it continued runs later
            add(name="Successes", unit=MetricUnit.Count, value=summary.get("succeeded", 0))
            add(name="Failures", unit=MetricUnit.Count, value=summary.get("failed", 0))
            add(name="Continued", unit=MetricUnit.Count, value=summary.get("continued", 0))
            if summary.get("characters"):
                add(name="BilledCharacters", unit=MetricUnit.Count, value=summary["characters"])
            for kind, failed in summary.get("failed_by_kind", {}).items():
                kinds[kind] = kinds.get(kind, 0) + failed
    retried = sum(1 for item in done if item.retry)
    if retried:
        add(name="ReturnedToQueue", unit=MetricUnit.Count, value=retried)
    for kind, count in kinds.items():
        with single_metric(
            name="FailuresByKind", unit=MetricUnit.Count, value=count, namespace=NAMESPACE
        ) as metric:
            metric.add_dimension(name="ErrorKind", value=kind)
