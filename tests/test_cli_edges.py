"""What a new user hit on the CLI (issue 7), each as a real process."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from function.settings import DEFAULT_RESULTS_DIR, LAMBDA_RESULTS_DIR, Settings
from tests.aws import AWS_ENV
from tests.conftest import ENV_VARS, EVENTS_DIR, ROOT, TOKEN, load_event
from tests.fakehf import FakeHF, Reply, Seen

MODEL_PATH = "/models/facebook/bart-large-mnli"
OK = Reply(200, [{"label": "billing", "score": 0.7}, {"label": "tech", "score": 0.3}])


def labels_for(request: Seen) -> Reply:
    return Reply(200, [{"label": request.json["inputs"], "score": 1.0}])


@pytest.fixture
def results(tmp_path):
    return tmp_path / "runs"


def cli(*args, hf: FakeHF, results: Path, token: str | None = TOKEN, input=None, **extra):
    env = {"RESULTS_URI": str(results), "HUGGINGFACE_API_ENDPOINT": hf.endpoint, **extra}
    if token:
        env["HUGGINGFACE_API_KEY"] = token
    clean = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "function", *args],
        env=clean,
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
    )


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_readme_question_answering_example_runs_over_the_default_config(hf, results):
    hf.on(
        "/models/deepset/roberta-base-squad2",
        Reply(200, {"answer": "Ada", "score": 0.9, "start": 0, "end": 3}),
    )
    done = cli(
        "run",
        "--model",
        "deepset/roberta-base-squad2",
        "--inputs",
        '{"question": "Who?", "context": "Ada wrote it."}',
        hf=hf,
        results=results,
    )
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["result"][0]["answer"] == "Ada"
    assert "candidate_labels" not in hf.requests[0].json.get("parameters", {})


def test_run_event_exits_0_when_everything_succeeded(hf, results, tmp_path):
    hf.on(MODEL_PATH, OK)
    event = load_event("sqs-receive-message.json")
    event["Records"][0]["body"] = json.dumps({"text": "hello"})
    path = tmp_path / "sqs.json"
    path.write_text(json.dumps(event))
    done = cli("run", "--event", str(path), hf=hf, results=results)
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout) == {"batchItemFailures": []}
    path.write_text(json.dumps({"text": ["a", "b"]}))
    done = cli("run", "--event", str(path), hf=hf, results=results)
    assert done.returncode == 0 and json.loads(done.stdout)["succeeded"] == 2
    hf.on(MODEL_PATH, Reply(404, {"error": "Model not found"}))
    done = cli("run", "--event", str(path), hf=hf, results=results)
    assert done.returncode == 1 and json.loads(done.stdout)["failed"] == 2


def test_stdout_carries_only_the_reply(hf, results):
    hf.on(MODEL_PATH, Reply(404, {"error": "Model not found"}))
    done = cli("run", "--event", str(EVENTS_DIR / "scheduled-event.json"), hf=hf, results=results)
    assert done.returncode == 1
    assert json.loads(done.stdout)["success"] is False  # one JSON document, no EMF lines
    assert "_aws" not in done.stdout
    done = cli("run", hf=hf, results=results)
    assert done.returncode == 1 and json.loads(done.stdout)["success"] is False


def test_history_lists_batch_runs(hf, results, tmp_path):
    hf.on(MODEL_PATH, labels_for)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(f"t{i}") + "\n" for i in range(30)))
    assert cli("batch", "--input", str(source), hf=hf, results=results).returncode == 0
    assert cli("run", "--text", "x", hf=hf, results=results).returncode == 0
    table = cli("history", hf=hf, results=results).stdout.splitlines()
    assert len(table) == 3
    assert "cli batch" in table[2] and "30/30" in table[2]
    assert " cli " in table[1] and "yes" in table[1]


def test_the_default_results_folder_does_not_depend_on_the_current_folder(monkeypatch, tmp_path):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert Settings().results_uri == str(DEFAULT_RESULTS_DIR)
    assert Settings().batches_uri == f"{DEFAULT_RESULTS_DIR}/batches"
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "hf-run-job")  # the code is read-only there
    assert Settings().results_uri == LAMBDA_RESULTS_DIR


def test_progress_does_not_reach_100_percent_when_items_were_continued(hf, results, tmp_path):
    hf.on(MODEL_PATH, lambda r: Reply(200, labels_for(r).body, delay=0.3))
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(f"t{i}") + "\n" for i in range(40)))
    done = cli(
        "batch",
        "--input",
        str(source),
        "--output",
        str(tmp_path / "out.jsonl"),
        "--concurrency",
        "2",
        "--timeout",
        "2",
        hf=hf,
        results=results,
    )
    assert done.returncode == 1
    progress = [line for line in done.stderr.splitlines() if line.startswith("progress:")]
    assert progress and "(100%)" not in progress[-1]
    assert "continued" in progress[-1]


def test_verbose_works_after_the_subcommand(hf, results):
    hf.on(MODEL_PATH, Reply(500, "boom"), OK)
    done = cli("run", "-vv", hf=hf, results=results, HF_BACKOFF_BASE="0.01")
    assert done.returncode == 0
    assert "Retrying model facebook/bart-large-mnli" in done.stderr


def test_batch_reads_stdin(hf, results):
    hf.on(MODEL_PATH, labels_for)
    lines = "".join(json.dumps({"id": f"s{i}", "text": f"t{i}"}) + "\n" for i in range(20))
    done = cli("batch", "--input", "-", hf=hf, results=results, input=lines)
    assert done.returncode == 0, done.stderr
    *records, summary = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in records] == [f"s{i}" for i in range(20)]
    assert summary["succeeded"] == 20


def test_batch_reads_csv_with_a_text_column(hf, results, tmp_path):
    hf.on(MODEL_PATH, labels_for)
    source = tmp_path / "tickets.csv"
    with source.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["ticket", "body", "customer"])
        for i in range(5):
            writer.writerow([f"T{i}", f"my parcel, number {i}", "ignored"])
    out = tmp_path / "out.jsonl"
    done = cli(
        "batch",
        "--input",
        str(source),
        "--text-column",
        "body",
        "--id-column",
        "ticket",
        "--output",
        str(out),
        hf=hf,
        results=results,
    )
    assert done.returncode == 0, done.stderr
    records = jsonl(out)
    assert [r["id"] for r in records] == [f"T{i}" for i in range(5)]
    assert [r["result"][0]["label"] for r in records] == [
        f"my parcel, number {i}" for i in range(5)
    ]
    missing = cli("batch", "--input", str(source), "--text-column", "nope", hf=hf, results=results)
    assert missing.returncode == 1 and "no column 'nope'" in missing.stderr
    assert "Other columns are ignored" in cli("batch", "--help", hf=hf, results=results).stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_batch_writes_what_it_has_and_continues_the_rest(hf, results, tmp_path, sig):
    hf.on(MODEL_PATH, lambda r: Reply(200, labels_for(r).body, delay=0.2))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(f"t{i}") + "\n" for i in range(200)))
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(
        RESULTS_URI=str(results), HUGGINGFACE_API_ENDPOINT=hf.endpoint, HUGGINGFACE_API_KEY=TOKEN
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "function",
            "batch",
            "--input",
            str(source),
            "--output",
            str(out),
            "--concurrency",
            "4",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while len(hf.requests) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + sig, stderr  # 130 for Ctrl-C, 143 for SIGTERM
    # What stopped it, and what a second stop does: "again" only after a Ctrl-C.
    assert f"Stopping ({signal.Signals(sig).name})" in stderr
    assert ("Ctrl-C again quits at once" in stderr) == (sig == signal.SIGINT)
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["stopped"] == "interrupted"
    written = [r["id"] for r in jsonl(out)]
    rest = [line["id"] for line in jsonl(tmp_path / "out.continuation.jsonl")]
    assert written and rest
    assert sorted(written + rest) == list(range(200))  # each item once
    assert summary["succeeded"] == len(written) and summary["continued"] == len(rest)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc", "expected a whole number, got 'abc'"),
        ("1.5", "expected a whole number"),
        ("0", "must be 1 or more"),
        ("2000", "must be at most 1024"),
    ],
)
@pytest.mark.parametrize("flag", ["--batch-size", "--concurrency"])
def test_a_bad_worker_option_names_the_flag_and_what_it_takes(
    hf, results, tmp_path, flag, value, expected
):
    source = tmp_path / "in.jsonl"
    source.write_text('"a"\n')
    done = cli("batch", "--input", str(source), flag, value, hf=hf, results=results)
    assert done.returncode == 2
    assert f"argument {flag}: {expected}" in done.stderr, done.stderr


@pytest.mark.parametrize("rate", ["0", "-1", "nan", "inf", "fast"])
def test_rate_must_be_a_positive_number_on_the_cli(hf, results, tmp_path, rate):
    source = tmp_path / "in.jsonl"
    source.write_text('"a"\n')
    done = cli("batch", "--input", str(source), "--rate", rate, hf=hf, results=results)
    assert done.returncode == 2 and "--rate" in done.stderr


def test_an_output_that_is_the_input_is_refused_on_the_cli(hf, results, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('"a"\n')
    done = cli("batch", "--input", str(source), "--output", str(source), hf=hf, results=results)
    assert done.returncode == 2 and "is the input" in done.stderr
    assert source.read_text() == '"a"\n' and not hf.requests


def test_a_batch_without_a_token_is_one_error_on_the_cli(hf, results, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(f"t{i}") + "\n" for i in range(50)))
    done = cli(
        "batch",
        "--input",
        str(source),
        "--output",
        str(out),
        hf=hf,
        results=results,
        token=None,
        HUGGINGFACE_API_ENDPOINT="https://router.huggingface.co/hf-inference",
    )
    assert done.returncode == 1
    assert done.stderr.count("No Hugging Face token") == 1
    assert json.loads(done.stdout)["error"].startswith("No Hugging Face token")
    assert jsonl(out) == []  # not 50 failure records


@pytest.mark.parametrize("which", ["input", "output"])
def test_a_continuation_that_is_the_input_or_the_output_is_refused(hf, results, tmp_path, which):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('"a"\n"b"\n')
    target = source if which == "input" else out
    done = cli(
        "batch",
        "--input",
        str(source),
        "--output",
        str(out),
        "--continuation",
        str(target),
        hf=hf,
        results=results,
    )
    assert done.returncode == 2, done.stderr
    assert source.read_text() == '"a"\n"b"\n' and not out.exists() and not hf.requests


def test_a_continuation_runs_alike_without_the_first_flags(hf, results, tmp_path):
    hf.on(MODEL_PATH, lambda r: Reply(200, labels_for(r).body, delay=0.3))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(f"t{i}") + "\n" for i in range(20)))
    first = cli(
        "batch",
        "--input",
        str(source),
        "--output",
        str(out),
        "--label",
        "billing, shipping",
        "--param",
        "multi_label=true",
        "--concurrency",
        "2",
        "--timeout",
        "2",
        hf=hf,
        results=results,
    )
    assert first.returncode == 1
    hf.on(MODEL_PATH, labels_for)
    before = len(hf.requests)
    second = cli(
        "batch",
        "--input",
        str(tmp_path / "out.continuation.jsonl"),
        "--output",
        str(tmp_path / "out2.jsonl"),
        hf=hf,
        results=results,
    )
    assert second.returncode == 0, second.stderr
    for request in hf.requests[before:]:
        assert request.json["parameters"] == {
            "candidate_labels": ["billing", "shipping"],
            "multi_label": True,
        }


def test_show_prints_a_batch_run(hf, results, tmp_path):
    hf.on(MODEL_PATH, labels_for)
    source = tmp_path / "in.jsonl"
    source.write_text('"a"\n"b"\n')
    assert cli("batch", "--input", str(source), hf=hf, results=results).returncode == 0
    run_id = cli("history", hf=hf, results=results).stdout.splitlines()[1].split()[2]
    shown = cli("show", run_id, hf=hf, results=results)
    assert shown.returncode == 0, shown.stderr
    (batch,) = json.loads(shown.stdout)["batches"]
    assert (batch["total"], batch["succeeded"]) == (2, 2)


def test_numbers_that_would_be_infinite_are_refused_in_batch_lines(hf, results, tmp_path):
    hf.on(MODEL_PATH, labels_for)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(
        '{"id": 1.5e400, "text": "x"}\n{"text": "y", "parameters": {"top_k": 1e999}}\n"z"\n'
    )
    done = cli("batch", "--input", str(source), "--output", str(out), hf=hf, results=results)
    assert done.returncode == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]  # strict JSON
    assert [r["success"] for r in records] == [False, False, True]
    assert (
        records[0]["error"]
        == "line 1: not usable JSON: a number is out of range (it would be infinite)"
    )


def test_progress_prints_its_last_counts_for_stdin(hf, results):
    hf.on(MODEL_PATH, labels_for)
    done = cli("batch", "--input", "-", hf=hf, results=results, input='"a"\n"b"\n"c"\n')
    assert done.returncode == 0
    assert done.stderr.splitlines()[-1].startswith("progress: 3 3 ok 0 failed")


def test_run_event_refuses_other_run_flags(hf, results):
    done = cli(
        "run",
        "--event",
        str(EVENTS_DIR / "scheduled-event.json"),
        "--model",
        "x",
        hf=hf,
        results=results,
    )
    assert done.returncode == 2 and "other run flags do not apply" in done.stderr


def test_an_explicit_id_column_must_exist(hf, results, tmp_path):
    source = tmp_path / "t.csv"
    source.write_text("text,ticket\nhello,T1\n")
    done = cli("batch", "--input", str(source), "--id-column", "nope", hf=hf, results=results)
    assert (
        done.returncode == 1 and "--id-column: the CSV header has no column 'nope'" in done.stderr
    )


def test_a_run_that_cannot_start_is_in_the_history(hf, results):
    done = cli(
        "run",
        hf=hf,
        results=results,
        token=None,
        HUGGINGFACE_API_ENDPOINT="https://router.huggingface.co/hf-inference",
    )
    assert done.returncode == 1
    table = cli("history", "--failed", hf=hf, results=results).stdout.splitlines()
    assert len(table) == 2 and "facebook/bart-large-mnli" in table[1] and " no " in table[1]


def test_stdin_that_is_the_output_file_is_refused(hf, results, tmp_path):
    target = tmp_path / "f.jsonl"
    target.write_text('"a"\n"b"\n')
    with target.open() as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "function", "batch", "--input", "-", "--output", str(target)],
            stdin=stdin,
            env={
                **{k: v for k, v in os.environ.items() if k not in ENV_VARS},
                "RESULTS_URI": str(results),
            },
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2 and "is the input" in done.stderr
    assert target.read_text() == '"a"\n"b"\n'


def test_a_csv_field_may_hold_line_breaks(hf, results, tmp_path):
    hf.on(MODEL_PATH, labels_for)
    source, out = tmp_path / "t.csv", tmp_path / "out.jsonl"
    source.write_text('id,text\n1,"hello\nworld"\n2,plain\n')
    done = cli("batch", "--input", str(source), "--output", str(out), hf=hf, results=results)
    assert done.returncode == 0, done.stderr
    assert [r["result"][0]["label"] for r in jsonl(out)] == ["hello\nworld", "plain"]


@pytest.mark.parametrize("secret", [TOKEN + "\n", json.dumps({"HUGGINGFACE_API_KEY": TOKEN})])
def test_botocore_debug_logs_never_show_a_stored_token(hf, results, moto_endpoint, secret):
    import boto3

    aws = {**AWS_ENV, "AWS_ENDPOINT_URL": moto_endpoint}
    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=moto_endpoint,
        region_name=AWS_ENV["AWS_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    arn = secrets.create_secret(Name=f"hf-{time.monotonic_ns()}", SecretString=secret)["ARN"]
    hf.on(MODEL_PATH, OK)
    done = cli(
        "-vv", "run", hf=hf, results=results, token=None, HUGGINGFACE_API_KEY_SECRET_ARN=arn, **aws
    )
    assert done.returncode == 0, done.stderr
    assert "SecretString" in done.stderr  # botocore logged the answer...
    assert TOKEN not in done.stderr and TOKEN[3:20] not in done.stderr  # ...masked
    assert hf.requests[0].headers["authorization"] == f"Bearer {TOKEN}"  # newline stripped


def test_a_continuation_of_a_batch_with_a_run_config_resumes_with_it(hf, results, tmp_path):
    config = tmp_path / "myjob.json"
    config.write_text(json.dumps({"model": "org/custom", "candidate_labels": "x, y"}))
    hf.on("/models/org/custom", lambda r: Reply(200, labels_for(r).body, delay=0.3))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(f"t{i}") + "\n" for i in range(40)))
    args = ("batch", "--config", str(config), "--concurrency", "2", "--timeout", "1.5")
    first = cli(*args, "--input", str(source), "--output", str(out), hf=hf, results=results)
    assert "The --timeout has come" in first.stderr
    rest = tmp_path / "out.continuation.jsonl"
    assert jsonl(rest)
    hf.on("/models/org/custom", labels_for)
    out2 = tmp_path / "out2.jsonl"
    second = cli("batch", "--input", str(rest), "--output", str(out2), hf=hf, results=results)
    assert second.returncode == 0, second.stderr
    records = jsonl(out) + jsonl(out2)
    assert sorted(r["id"] for r in records) == list(range(40))
    assert {r["model"] for r in records} == {"org/custom"}
    sent = {tuple(r.json["parameters"]["candidate_labels"]) for r in hf.requests}
    assert sent == {("x", "y")}


@pytest.mark.parametrize(
    "command",
    [["history"], ["usage"], ["show", "20261201T000000000Z-abcdef12"], ["report", "--out", "-"]],
)
def test_records_that_cannot_be_read_are_a_clear_failure_naming_where(command, tmp_path):
    """An S3 sink that does not answer: exit 1 and one line that says where, no traceback."""
    import socket

    from tests.conftest import run_cli

    with socket.socket() as free:  # a port on this machine that nobody listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    out = ["--out", str(tmp_path / "r.html")] if command[0] == "report" else []
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }
    done = run_cli(*(command[:1] if out else command), *out, "--results", "s3://bucket/p", env=env)
    assert done.returncode == 1, done.stderr
    assert "cannot read the run records in s3://bucket/p" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "output", "expected"),
    [
        (
            ["batch", "--input", "in.jsonl", "--output", "out.jsonl", "--provider", "local"],
            "out.jsonl",
            "hf-run-job batch --provider local --input c.jsonl --output out.rest.jsonl",
        ),
        (
            ["-v", "batch", "--input=in.jsonl", "--label", "a b", "--continuation", "x"],
            None,
            "hf-run-job -v batch --label 'a b' --input c.jsonl",
        ),
        (["batch", "--input", "-", "--output", "-"], "-", "hf-run-job batch --input c.jsonl"),
        (
            ["batch", "--output", "results"],
            "results",
            "hf-run-job batch --input c.jsonl --output results.rest",
        ),
        (
            ["batch", "--input", "in.csv", "--text-column", "body", "--id-column=ticket"],
            "d.v1/out",
            "hf-run-job batch --input c.jsonl --output d.v1/out.rest",
        ),
    ],
)
def test_a_continued_batch_says_the_command_that_goes_on(argv, output, expected):
    from function.cli import _going_on

    assert _going_on(argv, "c.jsonl", output) == expected
    # Called as the README calls it, the command says so (hf-run-job may not be on PATH).
    called = _going_on(argv, "c.jsonl", output, ".venv/bin/hf-run-job")
    assert called == expected.replace("hf-run-job", ".venv/bin/hf-run-job", 1)
