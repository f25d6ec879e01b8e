"""template.yaml: cfn-lint, sam validate, cfn-lint on the expanded template (which catches
what cfn-lint alone lets through), the shape that matters, and a lean `sam build`."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from function.triggers import read_event
from tests.conftest import ROOT

TEMPLATE = ROOT / "template.yaml"
BIN = Path(sys.executable).parent
TOOL_ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(autouse=True)
def _region(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the transform asks boto3 for it


def template() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())


class _NoManagedPolicies:
    """The template names managed policies by ARN, so there is nothing to look up in IAM."""

    def load(self) -> dict[str, str]:
        return {}


def expand(sam_template: dict[str, Any]) -> dict[str, Any]:
    """The SAM transform, offline: plain CloudFormation. Local code folders stand in for
    the S3 location `sam package` would give them, as `sam validate` does."""
    sam_template = copy.deepcopy(sam_template)
    for resource in sam_template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://packaged-code/run-job.zip"
    return transform(sam_template, {}, _NoManagedPolicies())


def cfn_lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "cfn-lint"), str(path)],
        capture_output=True,
        text=True,
        env=TOOL_ENV,
        timeout=300,
    )


def lint_expanded(sam_template: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "expanded.json"
    path.write_text(json.dumps(expand(sam_template), indent=1))
    return cfn_lint(path)


def test_cfn_lint_finds_nothing():
    done = cfn_lint(TEMPLATE)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def sam_validate(path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "sam"), "validate", "--region", "us-east-1", "-t", str(path)],
        capture_output=True,
        text=True,
        env=TOOL_ENV,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


def test_sam_validate():
    sam_validate(TEMPLATE)


def test_expanded_template_lints_clean(tmp_path):
    done = lint_expanded(template(), tmp_path)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def _function(t: dict) -> dict:
    return t["Resources"]["RunJobFunction"]["Properties"]


def _bad_runtime(t):
    _function(t)["Runtime"] = "python3.99"


def _misspelled_batch_failures(t):
    _function(t)["Events"]["Queue"]["Properties"]["FunctionResponseTypes"] = [
        "ReportBatchItemFailure"
    ]


def _iam_auth_typo(t):
    _function(t)["FunctionUrlConfig"]["AuthType"] = "IAM"


def _dangling_getatt(t):
    _function(t)["Events"]["Queue"]["Properties"]["Queue"] = {"Fn::GetAtt": ["NoSuchQueue", "Arn"]}


def _visibility_shorter_than_timeout(t):
    t["Resources"]["RunQueue"]["Properties"]["VisibilityTimeout"] = 30
    _function(t)["Timeout"] = 120


@pytest.mark.parametrize(
    "mutate",
    [
        _bad_runtime,
        _misspelled_batch_failures,
        _iam_auth_typo,
        _dangling_getatt,
        _visibility_shorter_than_timeout,
    ],
)
def test_expanded_lint_catches_what_plain_cfn_lint_misses(mutate, tmp_path):
    broken = template()
    mutate(broken)
    try:
        done = lint_expanded(broken, tmp_path)
    except InvalidDocumentException:  # the transform itself refused it: caught too
        return
    assert done.returncode != 0, f"{mutate.__name__} was not caught"
    assert re.search(r"^E\d{4}", done.stdout, re.M), done.stdout


def test_the_template_says_what_the_issue_asks():
    t = template()
    resources = t["Resources"]
    fn = _function(t)
    assert (fn["Runtime"], fn["Architectures"], fn["Handler"]) == (
        "python3.12",
        ["arm64"],
        "handler.lambda_handler",
    )
    assert resources["RunJobFunction"]["Metadata"]["BuildMethod"] == "makefile"
    assert fn["FunctionUrlConfig"]["AuthType"] == "AWS_IAM"
    queue_event = fn["Events"]["Queue"]["Properties"]
    assert queue_event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    redrive = resources["RunQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["RunDeadLetterQueue", "Arn"]}
    # Visibility timeout is six times the function timeout, for every allowed timeout.
    allowed = t["Parameters"]["FunctionTimeout"]["AllowedValues"]
    assert {k: v["Seconds"] for k, v in t["Mappings"]["Visibility"].items()} == {
        k: 6 * int(k) for k in allowed
    }
    # Least privilege: only the secret, only runs/ of the bucket.
    (policy,) = fn["Policies"]
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["ReadTheToken"]["Action"] == "secretsmanager:GetSecretValue"
    assert statements["ReadTheToken"]["Resource"] == {"Ref": "HuggingFaceTokenSecret"}
    assert statements["WriteRunRecords"]["Action"] == "s3:PutObject"
    assert statements["WriteRunRecords"]["Resource"] == {"Fn::Sub": "${ResultsBucket.Arn}/runs/*"}
    assert statements["ReadAndWriteBatchFiles"]["Resource"] == {
        "Fn::Sub": "${ResultsBucket.Arn}/batches/*"
    }
    assert statements["QueueFanOutParts"] == {
        "Sid": "QueueFanOutParts",
        "Effect": "Allow",
        "Action": "sqs:SendMessage",
        "Resource": {"Fn::GetAtt": ["RunQueue", "Arn"]},
    }
    assert set(statements) == {
        "ReadTheToken",
        "WriteRunRecords",
        "ReadAndWriteBatchFiles",
        "ReadUploads",
        "ListTheBucket",
        "ReadRunRecords",
        "WriteTheReport",
        "ReadAndWriteCachedAnswers",
        "QueueFanOutParts",
    }
    # Uploads: read under uploads/ only; they come through the queue, from a rule that
    # takes uploads/ only, so nothing the job writes (runs/, batches/) starts a run.
    assert statements["ReadUploads"]["Action"] == "s3:GetObject"
    assert statements["ReadUploads"]["Resource"] == {"Fn::Sub": "${ResultsBucket.Arn}/uploads/*"}
    # Listing: without it S3 answers a missing key 403, and a miss would look like a denial.
    assert statements["ListTheBucket"]["Resource"] == {"Fn::GetAtt": ["ResultsBucket", "Arn"]}
    assert statements["ReadRunRecords"]["Resource"] == {"Fn::Sub": "${ResultsBucket.Arn}/runs/*"}
    assert statements["WriteTheReport"] == {
        "Sid": "WriteTheReport",
        "Effect": "Allow",
        "Action": "s3:PutObject",
        "Resource": {"Fn::Sub": "${ResultsBucket.Arn}/report/*"},
    }
    rule = resources["UploadsRule"]["Properties"]
    assert rule["EventPattern"]["detail"]["object"]["key"] == [{"prefix": "uploads/"}]
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["RunQueue", "Arn"]}
    env_vars = fn["Environment"]["Variables"]
    for written in (env_vars["RESULTS_URI"], env_vars["BATCHES_URI"]):
        assert not written["Fn::Sub"].startswith("s3://${ResultsBucket}/uploads/")
    triggers = json.loads(t["Parameters"]["UploadTriggers"]["Default"])
    assert triggers and all(prefix.startswith("uploads/") for prefix in triggers)
    assert all((ROOT / "run_config" / f"{name}.json").is_file() for name in triggers.values())
    assert fn["Environment"]["Variables"]["S3_TRIGGERS"] == {"Ref": "UploadTriggers"}
    bucket = resources["ResultsBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert any(r.get("ExpirationInDays") for r in bucket["LifecycleConfiguration"]["Rules"])
    env = fn["Environment"]["Variables"]
    assert env["HUGGINGFACE_API_KEY_SECRET_ARN"] == {"Ref": "HuggingFaceTokenSecret"}
    assert env["RESULTS_URI"] == {"Fn::Sub": "s3://${ResultsBucket}/runs/"}
    # Batch outputs and continuations go where the role can read them back (a queued
    # continuation is read by the next worker): BATCHES_URI lies under the Get+Put grant.
    assert env["BATCHES_URI"] == {"Fn::Sub": "s3://${ResultsBucket}/batches/"}
    batch_grant = statements["ReadAndWriteBatchFiles"]
    assert set(batch_grant["Action"]) == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    prefix = batch_grant["Resource"]["Fn::Sub"].removeprefix("${ResultsBucket.Arn}/").rstrip("*")
    assert env["BATCHES_URI"]["Fn::Sub"].removeprefix("s3://${ResultsBucket}/") == prefix
    assert "HUGGINGFACE_API_KEY" not in env  # the token never sits in the environment
    schedule = resources["Schedule1"]["Properties"]
    assert schedule["Target"]["RetryPolicy"] and schedule["Target"]["DeadLetterConfig"]
    scheduled = schedule["Target"]["Input"]["Fn::Sub"].replace("${Schedule1RunConfig}", "tickets")
    event = json.loads(scheduled)  # what the function gets: a scheduled run of that config
    assert read_event(event).trigger == "schedule"
    assert read_event(event).requests[0].fields == {"run_config": "tickets"}
    assert t["Parameters"]["Schedule1Expression"]["Default"] == "rate(1 hour)"
    alarms = {k for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms == {
        "FunctionErrorsAlarm",
        "RunDeadLetterQueueAlarm",
        "ScheduleDeadLetterQueueAlarm",
    }
    assert resources["RunJobLogGroup"]["Properties"]["RetentionInDays"] == {
        "Ref": "LogRetentionDays"
    }


def test_lambda_package_dependencies_match_pyproject():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0] for d in declared}
    makefile = (ROOT / "Makefile").read_text()
    packaged = set(re.search(r"^LAMBDA_DEPS\s*:=\s*(.+)$", makefile, re.M).group(1).split())
    assert packaged == names - {"boto3"}


def test_sam_build_makes_a_lean_package(tmp_path):
    work = tmp_path / "src"
    # A copy of what git tracks, as on a fresh clone (no virtualenvs, no caches).
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, work / name)
    env = {**TOOL_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHON": sys.executable}
    done = subprocess.run(
        [str(BIN / "sam"), "build", "--build-dir", str(tmp_path / "build")],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    package = tmp_path / "build" / "RunJobFunction"
    top = {p.name for p in package.iterdir()}
    assert {
        "handler.py",
        "function",
        "run_config",
        "httpx",
        "pydantic_settings",
        "aws_lambda_powertools",
        "pydantic_core",
    } <= top
    assert not top & {
        "tests",
        "events",
        "bench",
        ".venv",
        "boto3",
        "botocore",
        "Makefile",
        "template.yaml",
        "README.md",
    }
    assert any(package.glob("pydantic_core/*aarch64*.so")), "arm64 wheels for the runtime"
    size = sum(p.stat().st_size for p in package.rglob("*") if p.is_file())
    assert size < 30 * 2**20, f"package is {size / 2**20:.1f} MiB"


def test_the_image_template_is_the_same_stack_with_the_function_from_the_dockerfile(tmp_path):
    target = tmp_path / "build" / "template-image.json"
    done = subprocess.run(
        ["make", "-s", "template-image", f"IMAGE_TEMPLATE={target}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    image = json.loads(target.read_text())
    function = image["Resources"]["RunJobFunction"]
    assert function["Properties"]["PackageType"] == "Image"
    assert not {"CodeUri", "Handler", "Runtime"} & set(function["Properties"])
    context = target.parent / function["Metadata"]["DockerContext"]
    assert (context / function["Metadata"]["Dockerfile"]).resolve() == ROOT / "Dockerfile"
    zipped = template()
    assert set(image["Resources"]) == set(zipped["Resources"])  # only the package differs
    assert function["Properties"]["Events"] == _function(zipped)["Events"]
    assert function["Properties"]["Policies"] == _function(zipped)["Policies"]
    done = cfn_lint(target)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    sam_validate(target)
    # The image `sam package` would push, as `expand` gives zip functions their S3 code.
    packaged = copy.deepcopy(image)
    packaged["Resources"]["RunJobFunction"]["Properties"]["ImageUri"] = (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/hf-run-job:local"
    )
    expanded = transform(packaged, {}, _NoManagedPolicies())
    path = tmp_path / "expanded.json"
    path.write_text(json.dumps(expanded, indent=1))
    done = cfn_lint(path)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    (lambda_function,) = [
        r for r in expanded["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
    ]
    assert lambda_function["Properties"]["PackageType"] == "Image"


def test_the_dashboard_shows_every_metric_the_job_sends():
    resources = template()["Resources"]
    dashboard = resources["RunJobDashboard"]
    assert dashboard["Type"] == "AWS::CloudWatch::Dashboard"
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    substituted = re.sub(r"\$\{[^}]+\}", "x", body)
    widgets = json.loads(substituted)["widgets"]
    shown = json.dumps(widgets)
    sent = re.findall(r'add\(name="(\w+)"', (ROOT / "function" / "observability.py").read_text())
    assert set(sent) >= {"Invocations", "Runs", "Latency", "Retries", "BilledCharacters"}
    for metric in [*sent, "FailuresByKind"]:
        assert f'"{metric}"' in shown or f'MetricName=\\"{metric}\\"' in shown, metric
    for queue in ("RunDeadLetterQueue", "ScheduleDeadLetterQueue"):
        assert "${" + queue + ".QueueName}" in body
    latency = [m for w in widgets for m in w["properties"]["metrics"] if "Latency" in m]
    assert {m[-1]["stat"] for m in latency} == {"p50", "p95"}


def test_the_answer_cache_lives_under_cache_where_the_role_reads_and_writes_and_it_expires():
    t = template()
    fn = _function(t)
    assert fn["Environment"]["Variables"]["HF_CACHE_URI"] == {
        "Fn::Sub": "s3://${ResultsBucket}/cache/"
    }
    (policy,) = fn["Policies"]
    grant = {s["Sid"]: s for s in policy["Statement"]}["ReadAndWriteCachedAnswers"]
    assert grant["Resource"] == {"Fn::Sub": "${ResultsBucket.Arn}/cache/*"}
    assert set(grant["Action"]) == {"s3:GetObject", "s3:PutObject"}
    rules = t["Resources"]["ResultsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(r.get("Prefix") == "cache/" and r.get("ExpirationInDays") for r in rules)
