"""AWS Lambda entry point: `handler.lambda_handler`. A thin adapter over `function.events`."""

from __future__ import annotations

import asyncio
from typing import Any

from function.events import handle_event


def lambda_handler(event: Any, context: Any) -> Any:
    """Run the job for any trigger and return its reply: the envelope, or an HTTP response."""
    return asyncio.run(handle_event(event, context))
