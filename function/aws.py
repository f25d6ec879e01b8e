"""boto3 clients, made once per process (a client costs tens of milliseconds to build, and
a warm Lambda container runs many invocations). boto3 is imported only when one is asked for.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def aws_client(service: str) -> Any:
    import boto3

    return boto3.client(service)
