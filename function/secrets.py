"""The Hugging Face token: from the environment, else Secrets Manager, else SSM.

Fetched once per container and cached for `HF_SECRET_TTL` seconds (Powertools Parameters),
so a rotated secret takes effect without a redeploy. The fetch is bounded by the deadline
(a hanging store is a ConfigError, not a late reply). boto3 is imported only on this path.
Every token found is remembered for redaction (`function.redact`).
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any

from function.aws import aws_client, describe
from function.errors import ConfigError
from function.redact import remember
from function.settings import Settings, check_token
from function.threads import bounded

if TYPE_CHECKING:
    from function.client import Deadline

TOKEN_KEY = "HUGGINGFACE_API_KEY"


async def resolve_token(settings: Settings, deadline: Deadline) -> str | None:
    token = settings.env_token
    if not token and settings.secret_arn:
        where = f"Secrets Manager secret {settings.secret_arn} (HUGGINGFACE_API_KEY_SECRET_ARN)"
        token = _token_from(await _fetch("secrets", settings, deadline, where), where)
    elif not token and settings.parameter_name:
        where = f"SSM parameter {settings.parameter_name} (HUGGINGFACE_API_KEY_PARAMETER)"
        token = _token_from(await _fetch("ssm", settings, deadline, where), where)
    remember(token)
    return token


async def _fetch(store: str, settings: Settings, deadline: Deadline, where: str) -> Any:
    name = settings.secret_arn if store == "secrets" else settings.parameter_name
    provider = _provider(store, settings.aws_timeout_s)
    options: dict[str, Any] = {"max_age": settings.secret_ttl_s}
    if store == "ssm":
        options["decrypt"] = True
    try:
        return await bounded(lambda: provider.get(name, **options), deadline)
    except TimeoutError:
        raise ConfigError(
            f"Could not read the token from {where}: no answer before the deadline"
        ) from None
    except Exception as exc:  # GetParameterError, botocore errors: name the store, never a value
        raise ConfigError(f"Could not read the token from {where}: {describe(exc)}") from None


@cache
def _provider(store: str, timeout_s: float) -> Any:
    """One Powertools provider per store and process: its cache is what the TTL applies to."""
    from aws_lambda_powertools.utilities import parameters

    if store == "secrets":
        return parameters.SecretsProvider(boto3_client=aws_client("secretsmanager", timeout_s))
    return parameters.SSMProvider(boto3_client=aws_client("ssm", timeout_s))


def _token_from(value: Any, where: str) -> str:
    """The raw token, or the `HUGGINGFACE_API_KEY` key of a JSON secret."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = value.strip() if isinstance(value, str) else ""
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigError(f"The token in {where} looks like JSON but is not valid") from None
        token = data.get(TOKEN_KEY) if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise ConfigError(f"{where} is JSON without a non-empty {TOKEN_KEY} key")
        text = token
    if not text.strip():
        raise ConfigError(f"{where} is empty")
    return check_token(text, where)
