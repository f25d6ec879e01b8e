"""The Hugging Face token: from the environment, else Secrets Manager, else SSM.

Fetched once per container and cached for `HF_SECRET_TTL` seconds (Powertools Parameters),
so a rotated secret takes effect without a redeploy. boto3 is imported only on this path.
"""

from __future__ import annotations

import json
from typing import Any

from function.errors import ConfigError
from function.settings import Settings

TOKEN_KEY = "HUGGINGFACE_API_KEY"


def resolve_token(settings: Settings) -> str | None:
    if settings.env_token:
        return settings.env_token
    if settings.secret_arn:
        return _from_secrets_manager(settings.secret_arn, settings.secret_ttl_s)
    if settings.parameter_name:
        return _from_ssm(settings.parameter_name, settings.secret_ttl_s)
    return None


def _from_secrets_manager(arn: str, ttl: int) -> str:
    from aws_lambda_powertools.utilities import parameters

    where = f"Secrets Manager secret {arn} (HUGGINGFACE_API_KEY_SECRET_ARN)"
    try:
        value: Any = parameters.get_secret(arn, max_age=ttl)
    except Exception as exc:  # GetParameterError, botocore errors: name the ARN, never a value
        raise ConfigError(f"Could not read the token from {where}: {_reason(exc)}") from None
    return _token_from(value, where)


def _from_ssm(name: str, ttl: int) -> str:
    from aws_lambda_powertools.utilities import parameters

    where = f"SSM parameter {name} (HUGGINGFACE_API_KEY_PARAMETER)"
    try:
        value: Any = parameters.get_parameter(name, decrypt=True, max_age=ttl)
    except Exception as exc:
        raise ConfigError(f"Could not read the token from {where}: {_reason(exc)}") from None
    return _token_from(value, where)


def _token_from(value: Any, where: str) -> str:
    """The raw token, or the `HUGGINGFACE_API_KEY` key of a JSON secret."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = value.strip() if isinstance(value, str) else ""
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"The token in {where} looks like JSON but is not valid") from None
        token = data.get(TOKEN_KEY) if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise ConfigError(f"{where} is JSON without a non-empty {TOKEN_KEY} key")
        return token.strip()
    if not text:
        raise ConfigError(f"{where} is empty")
    return text


def _reason(exc: Exception) -> str:
    """The AWS error code and message; AWS messages never carry the secret's value."""
    cause = exc.__cause__ or exc.__context__ or exc
    response = getattr(cause, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip(": ")
    return f"{type(cause).__name__}: {cause}"[:300]
