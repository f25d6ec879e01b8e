"""Every setting of the job, read from the environment in one place."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from function.errors import ConfigError

DEFAULT_ENDPOINT = "https://router.huggingface.co/hf-inference"
DEFAULT_ROUTER = "https://router.huggingface.co"
DEAD_HOST = "api-inference.huggingface.co"
HF_ROUTER_HOST = "router.huggingface.co"
PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_RUN_CONFIG_DIR = PROJECT_DIR / "run_config"
# Run records stay in one place whatever the current directory: beside run_config/ on a
# workstation; in Lambda (read-only code) under /tmp, when the template sets no RESULTS_URI.
DEFAULT_RESULTS_DIR = PROJECT_DIR / "runs"
LAMBDA_RESULTS_DIR = "/tmp/hf-run-job/runs"
MIB = 1024 * 1024


def check_token(value: str, name: str) -> str:
    """Surrounding whitespace (a trailing newline from `echo` or a file) is dropped; a control
    character inside is refused, naming where it came from but never the value."""
    token = value.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in token):
        raise ConfigError(f"{name} contains a control character; expected a token like hf_...")
    if not token.isascii():
        raise ConfigError(f"{name} contains a non-ASCII character; expected a token like hf_...")
    return token


def s3_spelling(uri: str) -> str:
    """One spelling of an S3 location the job writes to (`S3://b//runs` is `s3://b/runs`),
    so that every writer, and the check that keeps uploads from starting runs on the job's
    own output, agree on where it is."""
    if uri[:5].lower() != "s3://":
        return uri
    bucket, _, prefix = uri[5:].partition("/")
    prefix = "/".join(part for part in prefix.split("/") if part)
    return f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/"


def page_location(uri: str) -> str:
    """Where the report page goes: a file, or an S3 object (`s3://b/report/` is
    `s3://b/report/index.html`), spelled as `s3_spelling` spells its folder."""
    if uri[:5].lower() != "s3://":
        return uri
    folder = uri.endswith("/") or "/" not in uri[5:].strip("/")
    return s3_spelling(uri) + "index.html" if folder else s3_spelling(uri).removesuffix("/")


def page_problem(target: str) -> str | None:
    """Why the report page cannot go there, if it cannot: a file path or s3://bucket/key."""
    if target.startswith("s3://"):
        bucket, _, key = target.removeprefix("s3://").partition("/")
        return None if bucket and key else "is not an S3 object: expected s3://bucket/key"
    if "://" in target:
        return "is not a place for the page: expected a file path or s3://bucket/key"
    if target.endswith("/") or Path(target).is_dir():
        return "is a folder: name the file, e.g. report.html"
    return None


def check_base_url(value: str, example: str) -> str:
    """An http(s) base URL without a query string or fragment, without a trailing `/`."""
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL such as " + example)
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    if parts.username or parts.password:
        raise ValueError("must not carry a user name or password (the token authenticates)")
    return value


def without_chat_route(value: str) -> str:
    """A base URL as OpenAI clients write it (`.../v1`, `.../v1/chat/completions`) is taken
    for the server's root: the job adds `/v1/chat/completions` itself."""
    for suffix in ("/v1/chat/completions", "/v1"):
        if value.endswith(suffix):
            return value.removesuffix(suffix)
    return value


ENDPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_ORG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


class Endpoint(BaseModel):
    """A dedicated Inference Endpoint or a server of one's own (TGI, TEI, vLLM), by name.

    Its token is Hugging Face's unless `token_env` names a variable that holds its own key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    url: str
    token_env: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return without_chat_route(check_base_url(value, "https://xyz.endpoints.huggingface.cloud"))

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("token_env must be the name of an environment variable")
        return value

    def own_token(self) -> str | None:
        """The endpoint's own key, from the variable `token_env` names (None: use the HF
        token). A variable that is not set is a configuration error naming it."""
        if self.token_env is None:
            return None
        value = os.environ.get(self.token_env, "").strip()
        if not value:
            raise ConfigError(f"{self.token_env} is not set; HF_ENDPOINTS names it as a token_env")
        return check_token(value, self.token_env)


class Settings(BaseSettings):
    """The job's configuration. Environment variable names are the field aliases."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", frozen=True)

    huggingface_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("HUGGINGFACE_API_KEY", "HF_TOKEN")
    )
    huggingface_api_endpoint: str = Field(
        default=DEFAULT_ENDPOINT, validation_alias="HUGGINGFACE_API_ENDPOINT"
    )
    # LLMs (text-generation) go to the router's OpenAI-compatible chat completions route.
    huggingface_router_url: str = Field(
        default=DEFAULT_ROUTER, validation_alias="HUGGINGFACE_ROUTER_URL"
    )
    # The organization that pays for requests to Hugging Face's hosts (X-HF-Bill-To).
    bill_to: str | None = Field(default=None, validation_alias="HF_BILL_TO")
    # Named endpoints, as JSON: {"name": "https://..."} or {"name": {"url", "token_env"}}.
    endpoints: dict[str, Any] = Field(default_factory=dict, validation_alias="HF_ENDPOINTS")
    run_config: str = Field(default="default", validation_alias="RUN_CONFIG")
    run_config_dir: Path = Field(default=DEFAULT_RUN_CONFIG_DIR, validation_alias="RUN_CONFIG_DIR")
    request_timeout_s: float = Field(default=30.0, gt=0, validation_alias="HF_REQUEST_TIMEOUT")
    max_retries: int = Field(default=4, ge=0, le=20, validation_alias="HF_MAX_RETRIES")
    backoff_base_s: float = Field(default=0.5, gt=0, validation_alias="HF_BACKOFF_BASE")
    backoff_max_s: float = Field(default=8.0, gt=0, validation_alias="HF_BACKOFF_MAX")
    default_budget_s: float = Field(default=60.0, gt=0, validation_alias="HF_DEFAULT_BUDGET")
    deadline_margin_s: float = Field(default=1.0, ge=0, validation_alias="HF_DEADLINE_MARGIN")
    # Memory bounds: an answer larger than this fails (a feature-extraction chunk is split
    # instead), and so does a batch input line longer than that.
    max_response_bytes: int = Field(
        default=32 * MIB, ge=1024, validation_alias="HF_MAX_RESPONSE_BYTES"
    )
    max_line_bytes: int = Field(default=1 * MIB, ge=1024, validation_alias="HF_MAX_LINE_BYTES")
    # Where the token comes from when it is not in the environment (AWS deployments).
    secret_arn: str | None = Field(default=None, validation_alias="HUGGINGFACE_API_KEY_SECRET_ARN")
    parameter_name: str | None = Field(
        default=None, validation_alias="HUGGINGFACE_API_KEY_PARAMETER"
    )
    secret_ttl_s: int = Field(default=300, ge=0, validation_alias="HF_SECRET_TTL")
    # AWS calls (secrets, S3, SQS): connect and read timeouts of each; the deadline bounds
    # them all as well.
    aws_timeout_s: float = Field(default=10.0, gt=0, validation_alias="HF_AWS_TIMEOUT")
    # Where run records go: a local directory or s3://bucket/prefix/.
    results_uri: str = Field(default="", validation_alias="RESULTS_URI")
    # Where batch outputs go when an event names none (default: RESULTS_URI/batches/).
    batches_uri: str = Field(default="", validation_alias="BATCHES_URI")
    sqs_concurrency: int = Field(default=10, ge=1, le=100, validation_alias="HF_SQS_CONCURRENCY")
    # The queue the workers read: fan-out parts and batch continuations are sent to it.
    run_queue_url: str | None = Field(default=None, validation_alias="RUN_QUEUE_URL")
    # provider: local. Models come from the Hugging Face cache (HF_HOME / HF_HUB_CACHE, read
    # by huggingface_hub); with HF_HUB_OFFLINE nothing is downloaded.
    hf_hub_offline: bool = Field(default=False, validation_alias="HF_HUB_OFFLINE")
    local_max_models: int = Field(default=2, ge=1, le=64, validation_alias="HF_LOCAL_MAX_MODELS")
    local_max_model_mb: int = Field(default=2048, ge=1, validation_alias="HF_LOCAL_MAX_MODEL_MB")
    # Image and audio inputs (function.media): the size limit, checked before they are read
    # whole; plain-http URLs (off: https only); and, for tests only, host names served on
    # this machine ({"media.test": "127.0.0.1"}), whose address is not checked.
    media_max_bytes: int = Field(default=10 * MIB, ge=1024, validation_alias="HF_MEDIA_MAX_BYTES")
    media_allow_http: bool = Field(default=False, validation_alias="HF_MEDIA_ALLOW_HTTP")
    media_test_hosts: dict[str, str] = Field(
        default_factory=dict, validation_alias="HF_MEDIA_TEST_HOSTS"
    )
    # The answer cache across runs (function.cache): default RESULTS_URI/cache.
    cache_uri: str = Field(default="", validation_alias="HF_CACHE_URI")
    # `usage`'s price table over its defaults (function.usage), e.g.
    # {"tokens_per_million": {"input": 0.2, "output": 0.6}}.
    prices: dict[str, dict[str, float]] = Field(default_factory=dict, validation_alias="HF_PRICES")
    # The report page (function.report): each scheduled run rewrites it when this is set, a
    # file or s3://bucket/report/index.html; it covers the last REPORT_DAYS days.
    report_uri: str = Field(default="", validation_alias="REPORT_URI")
    report_days: int = Field(default=14, ge=1, le=366, validation_alias="REPORT_DAYS")
    # S3 uploads that start runs (function.uploads): {"uploads/images/": "classify-images"},
    # a prefix (or bucket/prefix) to the run config that runs its objects.
    s3_triggers: dict[str, str] = Field(default_factory=dict, validation_alias="S3_TRIGGERS")
    # Set by Lambda itself: metrics are emitted only there.
    lambda_function_name: str | None = Field(
        default=None, validation_alias="AWS_LAMBDA_FUNCTION_NAME"
    )

    @field_validator("huggingface_api_key", mode="before")
    @classmethod
    def _check_token(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return check_token(value, "the token") or None
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return value

    @field_validator("huggingface_api_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        return check_base_url(value, DEFAULT_ENDPOINT)

    @field_validator("huggingface_router_url")
    @classmethod
    def _check_router(cls, value: str) -> str:
        value = without_chat_route(check_base_url(value, DEFAULT_ROUTER))
        if urlsplit(value).hostname == DEAD_HOST:
            raise ValueError(f"{DEAD_HOST} has been shut down; use {DEFAULT_ROUTER}")
        return value

    @field_validator("bill_to")
    @classmethod
    def _check_bill_to(cls, value: str | None) -> str | None:
        if value is not None and not _ORG_NAME.fullmatch(value.strip()):
            raise ValueError("must be an organization name (letters, digits, '-', '_', '.')")
        return value.strip() if value else None

    @field_validator("endpoints", mode="before")
    @classmethod
    def _check_endpoints(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # pydantic says what was expected
        for name in value:
            if not isinstance(name, str) or not ENDPOINT_NAME.fullmatch(name):
                raise ValueError(
                    f"{str(name)[:40]!r} is not an endpoint name (letters, digits, '-', '_', '.')"
                )
        # Endpoint's schema is built only here, when endpoints are set at all.
        endpoints = {}
        for name, given in value.items():
            try:
                endpoints[name] = Endpoint.model_validate(
                    {"url": given} if isinstance(given, str) else given
                )
            except ValidationError as exc:
                problem = exc.errors(include_input=False, include_url=False)[0]
                where = "".join(f"[{part!r}]" for part in problem["loc"])
                raise ValueError(
                    f"[{name!r}]{where}: {problem['msg'].removeprefix('Value error, ')}"
                ) from None
        return endpoints

    @field_validator("prices")
    @classmethod
    def _price_table(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Known tables and keys (any hardware under compute_per_hour), finite prices >= 0."""
        known = {"compute_per_hour": None, "tokens_per_million": {"input", "output"}}
        for table, rates in value.items():
            if table not in known:
                raise ValueError(f"unknown table {table!r}; expected some of {', '.join(known)}")
            keys = known[table]
            for key, price in rates.items():
                if keys is not None and key not in keys:
                    raise ValueError(f"{table}: unknown key {key!r}; expected input, output")
                if not (math.isfinite(price) and price >= 0):
                    raise ValueError(f"{table}.{key}: expected a price of 0 or more, in dollars")
        return value

    @field_validator("report_uri")
    @classmethod
    def _report_page(cls, value: str) -> str:
        value = page_location(value)
        problem = value and page_problem(value)
        if problem:
            raise ValueError(f"{value} {problem}")
        return value

    @model_validator(mode="after")
    def _default_locations(self) -> Settings:
        if not self.results_uri:
            default = LAMBDA_RESULTS_DIR if self.in_lambda else str(DEFAULT_RESULTS_DIR)
            object.__setattr__(self, "results_uri", default)
        object.__setattr__(self, "results_uri", s3_spelling(self.results_uri))
        if not self.batches_uri:
            object.__setattr__(self, "batches_uri", self.results_uri.rstrip("/") + "/batches")
        object.__setattr__(self, "batches_uri", s3_spelling(self.batches_uri))
        if not self.cache_uri:
            object.__setattr__(self, "cache_uri", self.results_uri.rstrip("/") + "/cache")
        object.__setattr__(self, "cache_uri", s3_spelling(self.cache_uri))
        return self

    @property
    def env_token(self) -> str | None:
        """The token set in the environment (see `function.secrets.resolve_token`)."""
        return self.huggingface_api_key.get_secret_value() if self.huggingface_api_key else None

    @property
    def endpoint_host(self) -> str:
        return urlsplit(self.huggingface_api_endpoint).hostname or ""

    @property
    def needs_token(self) -> bool:
        """Hugging Face's own hosts need a token; a self-hosted server may not."""
        return is_hf_host(self.huggingface_api_endpoint)

    @property
    def in_lambda(self) -> bool:
        return bool(self.lambda_function_name)


def is_hf_host(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "huggingface.co" or host.endswith((".huggingface.co", ".huggingface.cloud"))


def load_settings() -> Settings:
    """Read the settings, turning a bad value into a ConfigError that names the variable.

    The message never repeats the rejected value: it could be a secret.
    """
    try:
        return Settings()
    except SettingsError as exc:  # a JSON setting that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = _variable(field.group(1)) if field else "a setting"
        raise ConfigError(f"Invalid setting {name}: expected JSON") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "settings"
            where = "".join(f"[{part!r}]" for part in err["loc"][1:])  # HF_ENDPOINTS['a']['url']
            problems.append(
                f"{_variable(field)}{where}: {err['msg'].removeprefix('Value error, ')}"
            )
        raise ConfigError("Invalid setting " + "; ".join(problems)) from None


def _variable(field: str) -> str:
    """The environment variable(s) of a settings field."""
    alias = (
        Settings.model_fields[field].validation_alias if field in Settings.model_fields else None
    )
    if isinstance(alias, AliasChoices):
        return " / ".join(str(choice) for choice in alias.choices)
    return alias if isinstance(alias, str) else field.upper()
