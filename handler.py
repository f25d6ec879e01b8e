"""AWS Lambda entry point: `handler.lambda_handler`. A thin adapter over the lifecycle.

Powertools adds the Lambda context to every log line and flushes the metrics (with a
ColdStart metric) after each invocation.
"""

from __future__ import annotations

import asyncio
from typing import Any

from function.lifecycle import handle_event
from function.observability import logger, metrics


@logger.inject_lambda_context(clear_state=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: Any, context: Any) -> Any:
    """Run the job for any trigger and return its reply: the envelope, a batch summary, an
    HTTP response or an SQS partial batch response."""
    return asyncio.run(handle_event(event, context)).reply
