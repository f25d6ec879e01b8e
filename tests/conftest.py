"""Shared fixtures: the fake HF server, a clean environment pointing at it, and helpers."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakehf import REFERENCE_DIR, FakeHF

pytest_plugins = ["tests.aws"]  # the moto server fixtures

ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = ROOT / "events"
TOKEN = "hf_test_TOKEN_must_never_leak_0123456789abcdef"

ENV_VARS = (
    "HUGGINGFACE_API_KEY",
    "HF_TOKEN",
    "HUGGINGFACE_API_ENDPOINT",
    "HUGGINGFACE_ROUTER_URL",
    "HF_BILL_TO",
    "HF_ENDPOINTS",
    "RUN_CONFIG",
    "RUN_CONFIG_DIR",
    "HF_REQUEST_TIMEOUT",
    "HF_MAX_RETRIES",
    "HF_BACKOFF_BASE",
    "HF_BACKOFF_MAX",
    "HF_DEFAULT_BUDGET",
    "HF_DEADLINE_MARGIN",
    "HUGGINGFACE_API_KEY_SECRET_ARN",
    "HUGGINGFACE_API_KEY_PARAMETER",
    "HF_SECRET_TTL",
    "RESULTS_URI",
    "HF_SQS_CONCURRENCY",
    "HF_MAX_RESPONSE_BYTES",
    "HF_MAX_LINE_BYTES",
    "HF_AWS_TIMEOUT",
    "BATCHES_URI",
    "RUN_QUEUE_URL",
    "AWS_LAMBDA_FUNCTION_NAME",
    "HF_LOCAL_MAX_MODELS",
    "HF_LOCAL_MAX_MODEL_MB",
    "HF_MEDIA_MAX_BYTES",
    "HF_MEDIA_ALLOW_HTTP",
    "HF_MEDIA_TEST_HOSTS",
    "S3_TRIGGERS",
    "HF_PRICES",
    "HF_CACHE_URI",
    "REPORT_URI",
    "REPORT_DAYS",
)
# provider: local: no test reaches a hub. Set before anything imports huggingface_hub (it
# reads these once); the tests' models live in a cache of their own (`local_models`).
HF_CACHE = Path(tempfile.mkdtemp(prefix="hf-run-job-test-hub-"))
os.environ.update(
    HF_HUB_CACHE=str(HF_CACHE),
    HF_HUB_OFFLINE="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    TOKENIZERS_PARALLELISM="false",
    TRANSFORMERS_VERBOSITY="error",
)


@pytest.fixture(scope="session")
def local_models() -> Path:
    """The tests' Hugging Face cache, with the real all-MiniLM-L6-v2 and tiny models."""
    from tests.localmodels import build_tiny, lay_minilm

    lay_minilm(HF_CACHE)
    build_tiny(HF_CACHE)
    return HF_CACHE


@pytest.fixture
def hf() -> Iterator[FakeHF]:
    with FakeHF() as server:
        yield server


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, hf: FakeHF, tmp_path: Path) -> pytest.MonkeyPatch:
    """The job's environment, pointed at the fake server, with quick backoff."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RESULTS_URI", str(tmp_path / "runs"))
    monkeypatch.setenv("HUGGINGFACE_API_ENDPOINT", hf.endpoint)
    monkeypatch.setenv("HUGGINGFACE_ROUTER_URL", hf.base_url)
    monkeypatch.setenv("HUGGINGFACE_API_KEY", TOKEN)
    monkeypatch.setenv("HF_BACKOFF_BASE", "0.05")
    monkeypatch.setenv("HF_BACKOFF_MAX", "0.2")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "hf-run-job")  # in-process: as in Lambda
    return monkeypatch


@dataclass
class FakeContext:
    """What the handler reads of a Lambda context."""

    remaining_ms: int = 3000
    aws_request_id: str = "test-request-id"
    function_name: str = "hf-run-job"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:hf-run-job"
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/hf-run-job"
    log_stream_name: str = "2026/11/24/[$LATEST]test"

    def __post_init__(self) -> None:
        self._start = time.monotonic()

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.remaining_ms - (time.monotonic() - self._start) * 1000))


@dataclass
class Invoked:
    reply: Any
    elapsed: float


def invoke(event: Any, *, remaining_ms: int = 3000) -> Invoked:
    """Call the Lambda handler as Lambda would, timing it."""
    from handler import lambda_handler

    started = time.monotonic()
    reply = lambda_handler(event, FakeContext(remaining_ms))
    return Invoked(reply, time.monotonic() - started)


def run_cli(
    *args: str,
    env: dict[str, str],
    command: list[str] | None = None,
    timeout: float = 120,
    stdin: str | None = None,
) -> subprocess.CompletedProcess:
    """The CLI as a real process, in a clean environment plus `env` (and `stdin`)."""
    clean = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    # Run records of the tests never land in the project's own runs/.
    clean["RESULTS_URI"] = tempfile.mkdtemp(prefix="hf-run-job-test-runs-")
    clean.update(env)
    return subprocess.run(
        [*(command or [sys.executable, "-m", "function"]), *args],
        env=clean,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The container image test installs torch into a fresh virtualenv (minutes): it goes
    first, so that one worker (`make test` runs two) takes it while the other goes on."""
    image = [item for item in items if item.nodeid.startswith("tests/test_image.py")]
    items[:] = image + [item for item in items if item not in image]


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(HF_CACHE, ignore_errors=True)  # the tests' model cache (links, tiny models)


def pytest_configure(config: pytest.Config) -> None:
    if not REFERENCE_DIR.is_dir():
        raise pytest.UsageError(
            f"{REFERENCE_DIR} is missing: the tests replay ../shared/reference (set "
            "HF_REFERENCE_DIR to its path)"
        )
