"""Structured JSON logs and CloudWatch EMF metrics, with AWS Lambda Powertools.

The package's modules log through ordinary `logging.getLogger(__name__)` loggers; the
Powertools Logger's JSON formatter is copied onto the `function` logger, so every line is
one JSON object with the invocation's keys (request id, run id, trigger). Texts are never
logged, only their models, tasks, statuses, durations and counts.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from function.envelope import Outcome

SERVICE = "hf-run-job"
NAMESPACE = "HfRunJob"


# stderr: in Lambda it reaches CloudWatch like stdout; on a terminal it stays apart from the
# envelope (stdout) and from EMF metrics, which Powertools prints to stdout.
class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (redirections, test capture)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


logger = Logger(service=SERVICE, logger_handler=_StderrHandler())
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
_configured = False


def configure_logging() -> None:
    """Give the package's loggers the Powertools JSON format (once per process)."""
    global _configured
    if not _configured:
        logging.getLogger("function")
        copy_config_to_registered_loggers(source_logger=logger, include={"function"})
        _configured = True


def start_invocation(**keys: Any) -> None:
    logger.remove_keys(["run_id", "trigger", "request_id"])
    logger.append_keys(**keys)


def record_metrics(outcomes: list[Outcome], *, retried_by_queue: int = 0) -> None:
    metrics.add_metric(name="Invocations", unit=MetricUnit.Count, value=1)
    for outcome in outcomes:
        metrics.add_metric(name="Runs", unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name="Successes" if outcome.success else "Failures", unit=MetricUnit.Count, value=1
        )
        metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=outcome.duration_ms)
        metrics.add_metric(
            name="Retries", unit=MetricUnit.Count, value=max(0, outcome.attempts - 1)
        )
        if outcome.usage.characters:
            metrics.add_metric(
                name="BilledCharacters", unit=MetricUnit.Count, value=outcome.usage.characters
            )
        if not outcome.success:
            with single_metric(
                name="FailuresByKind", unit=MetricUnit.Count, value=1, namespace=NAMESPACE
            ) as metric:
                metric.add_dimension(name="ErrorKind", value=outcome.error_kind or "unknown")
    if retried_by_queue:
        metrics.add_metric(name="ReturnedToQueue", unit=MetricUnit.Count, value=retried_by_queue)


def flush_metrics() -> None:
    try:
        metrics.flush_metrics()
    except Exception:  # metrics must never cost the reply
        logging.getLogger(__name__).exception("Could not flush metrics")


def record_batch_metrics(summary: dict[str, Any]) -> None:
    metrics.add_metric(name="Invocations", unit=MetricUnit.Count, value=1)
    # A fan-out start has only `total`; the workers report the runs.
    metrics.add_metric(name="Runs", unit=MetricUnit.Count, value=summary.get("total", 0))
    metrics.add_metric(name="Successes", unit=MetricUnit.Count, value=summary.get("succeeded", 0))
    metrics.add_metric(name="Failures", unit=MetricUnit.Count, value=summary.get("failed", 0))
    metrics.add_metric(name="Continued", unit=MetricUnit.Count, value=summary.get("continued", 0))
