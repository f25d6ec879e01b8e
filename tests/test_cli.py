"""The CLI, run as a real process: envelope on stdout, exit 0 / 1 / 2."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import EVENTS_DIR, TOKEN, run_cli
from tests.fakehf import FakeHF, Reply

MODEL_PATH = "/models/facebook/bart-large-mnli"
RESULTS = Path(tempfile.mkdtemp(prefix="hf-run-job-cli-"))
OK = Reply(200, [{"label": "billing", "score": 0.7}, {"label": "tech", "score": 0.3}])


def cli(*args: str, hf: FakeHF | None = None, token: str | None = TOKEN, cmd=None, **extra_env):
    env = {"RESULTS_URI": str(RESULTS), **extra_env}
    if hf is not None:
        env["HUGGINGFACE_API_ENDPOINT"] = hf.endpoint
    if token:
        env["HUGGINGFACE_API_KEY"] = token
    return run_cli(*args, env=env, command=cmd, timeout=60)


def test_run_with_overrides_prints_the_envelope(hf):
    hf.on(MODEL_PATH, OK)
    done = cli(
        "run",
        "--text",
        "Invoice wrong",
        "--label",
        "billing",
        "--label",
        "tech",
        "--param",
        "multi_label=true",
        "--param",
        "hypothesis_template=About {}.",
        hf=hf,
    )
    assert done.returncode == 0, done.stderr
    envelope = json.loads(done.stdout)
    assert envelope["success"] and envelope["result"][0]["label"] == "billing"
    assert hf.requests[0].json == {
        "inputs": "Invoice wrong",
        "parameters": {
            "candidate_labels": ["billing", "tech"],
            "multi_label": True,
            "hypothesis_template": "About {}.",
        },
    }


def test_console_script_runs_the_default_config(hf):
    script = Path(sys.executable).with_name("hf-run-job")
    hf.on(MODEL_PATH, OK)
    done = cli("run", hf=hf, cmd=[str(script)])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"] == "facebook/bart-large-mnli"


def test_failure_envelope_exits_1(hf):
    hf.on(MODEL_PATH, Reply(404, {"error": "Model not found"}))
    done = cli("run", "--no-wait", hf=hf)
    assert done.returncode == 1
    assert "was not found" in json.loads(done.stdout)["error"]
    assert "x-wait-for-model" not in hf.requests[0].headers


def test_missing_token_prints_the_clear_envelope():
    done = cli("run", token=None)
    assert done.returncode == 1
    envelope = json.loads(done.stdout)
    assert envelope["error"].startswith("No Hugging Face token: set HUGGINGFACE_API_KEY")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--param", "novalue"], "--param expects KEY=JSON"),
        (["run", "--inputs", "{bad"], "--inputs is not valid JSON"),
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
        (["run", "--wait", "--no-wait"], "not allowed with argument"),
        (["run", "--event", "no/such/file.json"], "--event: cannot read"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_exit_2(args, message):
    done = cli(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_help_explains_inputs_and_exit_codes():
    done = cli("run", "--help")
    assert done.returncode == 0
    for text in (
        "--label",
        "--param KEY=JSON",
        "--event FILE",
        "Exit status",
        "HUGGINGFACE_API_KEY",
    ):
        assert text in done.stdout


def test_event_file_runs_the_handler(hf):
    hf.on(MODEL_PATH, OK)
    done = cli("run", "--event", str(EVENTS_DIR / "function-url.json"), hf=hf)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["statusCode"] == 200 and json.loads(reply["body"])["success"]


def test_structured_inputs_and_task(hf):
    hf.on(
        "/models/deepset/roberta-base-squad2",
        Reply(200, {"answer": "42", "score": 0.9, "start": 0, "end": 2}),
    )
    done = cli(
        "run",
        "--model",
        "deepset/roberta-base-squad2",
        "--label",
        "null",
        "--inputs",
        '{"question": "Meaning of life?", "context": "42"}',
        hf=hf,
    )
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["result"] == [
        {"answer": "42", "score": 0.9, "start": 0, "end": 2}
    ]


def test_verbose_logs_go_to_stderr_without_the_token(hf):
    hf.on(MODEL_PATH, Reply(500, "boom"), OK)
    done = cli("-vv", "run", hf=hf, HF_BACKOFF_BASE="0.01")
    assert done.returncode == 0
    assert "Retrying model facebook/bart-large-mnli" in done.stderr
    assert TOKEN not in done.stderr and TOKEN not in done.stdout
