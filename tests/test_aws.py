"""The AWS paths against a moto server on 127.0.0.1: the token from Secrets Manager and
SSM, run records in S3 and `history`/`show` over them, and SQS partial batch responses."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.aws import AWS_ENV, client
from tests.conftest import invoke, load_event, run_cli
from tests.fakehf import FakeHF, Reply

MODEL = "facebook/bart-large-mnli"
PATH = f"/models/{MODEL}"
OK = Reply(
    200,
    [{"label": "billing", "score": 0.8}, {"label": "shipping", "score": 0.2}],
    {"x-compute-characters": "42", "x-compute-time": "0.05"},
)
ROUTER = "https://router.huggingface.co/hf-inference"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def secret_env(aws, env):
    """No token in the environment: it must come from a store."""
    env.delenv("HUGGINGFACE_API_KEY")
    return env


def bearer(hf: FakeHF) -> str:
    return hf.requests[-1].headers["authorization"]


# -- the token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "token"),
    [
        ("hf_test_from_secret", "hf_test_from_secret"),  # the raw token
        (json.dumps({"HUGGINGFACE_API_KEY": "hf_test_json", "other": "x"}), "hf_test_json"),
    ],
)
def test_token_from_a_secret(secret_env, hf, secret, token):
    arn = client("secretsmanager").create_secret(Name=unique("hf-token"), SecretString=secret)[
        "ARN"
    ]
    secret_env.setenv("HUGGINGFACE_API_KEY_SECRET_ARN", arn)
    hf.on(PATH, OK)
    assert invoke({}).reply["success"]
    assert bearer(hf) == f"Bearer {token}"


def test_rotated_secret_is_picked_up_after_the_ttl(secret_env, hf):
    secrets = client("secretsmanager")
    arn = secrets.create_secret(Name=unique("hf-token"), SecretString="hf_test_old")["ARN"]
    secret_env.setenv("HUGGINGFACE_API_KEY_SECRET_ARN", arn)
    secret_env.setenv("HF_SECRET_TTL", "1")
    hf.on(PATH, OK)

    invoke({})
    secrets.put_secret_value(SecretId=arn, SecretString="hf_test_new")
    invoke({})
    cached = bearer(hf)
    time.sleep(1.2)
    invoke({})

    assert cached == "Bearer hf_test_old"  # within the TTL: no call to Secrets Manager
    assert bearer(hf) == "Bearer hf_test_new"


def test_token_from_an_ssm_secure_string(secret_env, hf):
    name = "/" + unique("hf-run-job") + "/token"
    client("ssm").put_parameter(Name=name, Value="hf_test_ssm", Type="SecureString")
    secret_env.setenv("HUGGINGFACE_API_KEY_PARAMETER", name)
    hf.on(PATH, OK)
    assert invoke({}).reply["success"]
    assert bearer(hf) == "Bearer hf_test_ssm"


def test_environment_token_wins_over_the_secret(aws, env, hf):
    arn = client("secretsmanager").create_secret(
        Name=unique("hf-token"), SecretString="hf_test_secret_loses"
    )["ARN"]
    env.setenv("HUGGINGFACE_API_KEY_SECRET_ARN", arn)
    hf.on(PATH, OK)
    invoke({})
    assert bearer(hf) != "Bearer hf_test_secret_loses"


def test_missing_secret_names_the_arn(secret_env, hf):
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf"
    secret_env.setenv("HUGGINGFACE_API_KEY_SECRET_ARN", arn)
    secret_env.setenv("HUGGINGFACE_API_ENDPOINT", ROUTER)
    reply = invoke(load_event("function-url-iam.json")).reply
    assert reply["statusCode"] == 500
    error = json.loads(reply["body"])["error"]
    assert error.startswith(f"Could not read the token from Secrets Manager secret {arn}")
    assert "ResourceNotFoundException" in error
    assert hf.requests == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "looks like JSON but is not valid"),
        (json.dumps({"token": "hf_x"}), "is JSON without a non-empty HUGGINGFACE_API_KEY key"),
    ],
)
def test_unusable_secret_value(secret_env, hf, value, message):
    arn = client("secretsmanager").create_secret(Name=unique("hf-token"), SecretString=value)["ARN"]
    secret_env.setenv("HUGGINGFACE_API_KEY_SECRET_ARN", arn)
    envelope = invoke({}).reply
    assert message in envelope["error"] and arn in envelope["error"]
    assert "hf_x" not in envelope["error"]
    assert hf.requests == []


# -- results in S3, history and show ----------------------------------------------------------


@pytest.fixture
def bucket(aws, env):
    name = unique("results")
    client("s3").create_bucket(Bucket=name)
    env.setenv("RESULTS_URI", f"s3://{name}/hf-run-job/")
    return name


def stored(bucket: str) -> dict[str, list[dict]]:
    """The run records in the bucket (not the per-day usage totals beside them)."""
    s3 = client("s3")
    objects = [
        o for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []) if "/dt=" in o["Key"]
    ]
    return {
        o["Key"]: [
            json.loads(line)
            for line in s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().splitlines()
        ]
        for o in objects
    }


def test_each_invocation_is_stored_under_a_date_partition(bucket, hf):
    hf.on(PATH, OK)
    envelope = invoke(load_event("function-url-iam.json")).reply
    ((key, records),) = stored(bucket).items()
    today = datetime.now(UTC).date().isoformat()
    assert key.startswith(f"hf-run-job/dt={today}/") and key.endswith(".jsonl")
    (record,) = records
    assert record["envelope"] == json.loads(envelope["body"])
    assert record["trigger"] == "http" and record["request_id"] == "test-request-id"
    assert record["run_config"] == "default" and record["attempts"] == 1
    total = client("s3").get_object(Bucket=bucket, Key=f"hf-run-job/usage/{today}/default.json")
    assert json.loads(total["Body"].read())["characters"] == (record["characters"] or 0)
    assert record["characters"] == 42 and record["compute_time_s"] == 0.05
    assert re.fullmatch(rf"hf-run-job/dt={today}/{record['run_id']}\.[0-9a-f]{{8}}\.jsonl", key)


def cli(*args: str, **env_vars: str) -> subprocess.CompletedProcess:
    return run_cli(*args, env=env_vars, timeout=60)


def test_history_and_show_read_the_s3_sink(bucket, hf, moto_endpoint):
    hf.on(PATH, OK)
    invoke({"text": "first"})
    hf.on(PATH, Reply(404, {"error": "Model not found"}))
    invoke({"text": "second"})
    aws_env = {
        **AWS_ENV,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "RESULTS_URI": f"s3://{bucket}/hf-run-job/",
    }

    table = cli("history", **aws_env)
    failed = cli("history", "--failed", **aws_env)

    assert table.returncode == 0, table.stderr
    header, newest, oldest = table.stdout.splitlines()
    assert header.split() == [
        "TIME",
        "(UTC)",
        "RUN",
        "ID",
        "TRIGGER",
        "MODEL",
        "SUCCESS",
        "DURATION",
        "CHARACTERS",
    ]
    assert newest.split()[3:6] == ["direct", MODEL, "no"]
    assert oldest.split()[3:6] == ["direct", MODEL, "yes"] and oldest.split()[-1] == "42"
    assert len(failed.stdout.splitlines()) == 2
    run_id = newest.split()[2]
    shown = cli("show", run_id, **aws_env)
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["envelopes"][0]["error"].startswith(f"Model '{MODEL}'")
    assert cli("show", "20200101T000000000Z-00000000", **aws_env).returncode == 1
    print(table.stdout)


def test_sink_failure_still_returns_the_envelope(aws, env, hf, capfd):
    env.setenv("RESULTS_URI", f"s3://{unique('no-such-bucket')}/x/")
    hf.on(PATH, OK)
    envelope = invoke({}).reply
    assert envelope["success"]
    logged = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
    ]
    (error,) = [line for line in logged if line["message"].startswith("Could not store")]
    assert error["level"] == "ERROR" and "NoSuchBucket" in error["message"]


# -- SQS ---------------------------------------------------------------------------------------


def sqs_event(messages: list[dict], queue_arn: str) -> dict:
    """The Lambda SQS event for received messages, in the shape of the sample event."""
    template = load_event("sqs-receive-message.json")["Records"][0]
    return {
        "Records": [
            {
                **template,
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "md5OfBody": m["MD5OfBody"],
                "eventSourceARN": queue_arn,
            }
            for m in messages
        ]
    }


def test_sqs_batch_returns_only_transient_failures_and_stores_the_rest(bucket, env, hf):
    env.setenv("HF_MAX_RETRIES", "1")
    env.setenv("HF_REQUEST_TIMEOUT", "0.3")
    hf.on(PATH, OK)
    hf.on("/models/org/broken", Reply(500, {"error": "boom"}))
    hf.on("/models/org/busy", Reply(429, {"error": "slow down"}, {"Retry-After": "0"}))
    hf.on("/models/org/slow", Reply(200, OK.body, delay=5))
    hf.on("/models/org/missing", Reply(404, {"error": "Model not found"}))
    bodies = (
        [{"text": f"ticket {i}"} for i in range(5)]  # succeed
        + [{"model": "org/broken"}, {"model": "org/busy"}, {"model": "org/slow"}]  # transient
        + [{"model": "org/missing"}, {"model": "not a model id"}]  # permanent
    )
    sqs = client("sqs")
    queue = sqs.create_queue(QueueName=unique("runs"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=2)
    messages = received["Messages"]
    assert len(messages) == 10
    by_body = {m["Body"]: m["MessageId"] for m in messages}

    reply = invoke(sqs_event(messages, arn), remaining_ms=5000).reply

    transient = {by_body[json.dumps(b)] for b in bodies[5:8]}
    assert {f["itemIdentifier"] for f in reply["batchItemFailures"]} == transient
    assert len(reply["batchItemFailures"]) == 3
    (records,) = stored(bucket).values()
    assert len(records) == 7
    assert {r["message_id"] for r in records} == set(by_body.values()) - transient
    assert sum(r["success"] for r in records) == 5
    assert {r["error_kind"] for r in records if not r["success"]} == {"not_found", "invalid_input"}
    assert all(r["trigger"] == "sqs" for r in records)

    # As the Lambda poller does: delete what succeeded; the rest comes back after the timeout.
    handles = {m["MessageId"]: m["ReceiptHandle"] for m in messages}
    for message_id in set(handles) - transient:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=handles[message_id])
    time.sleep(2.2)
    again = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert {m["MessageId"] for m in again} == transient


def test_sqs_messages_go_back_when_the_sink_fails(aws, env, hf):
    env.setenv("RESULTS_URI", f"s3://{unique('no-such-bucket')}/x/")
    hf.on(PATH, OK)
    event = load_event("sqs-receive-message.json")
    event["Records"][0]["body"] = json.dumps({"text": "hello"})
    reply = invoke(event).reply
    assert reply == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}


def test_sqs_message_that_is_not_json_is_a_stored_failure(aws, env, hf, tmp_path):
    event = load_event("sqs-receive-message.json")  # body "Hello from SQS!"
    reply = invoke(event).reply
    assert reply == {"batchItemFailures": []}
    lines = [
        json.loads(line)
        for p in (tmp_path / "runs").glob("*.jsonl")
        for line in p.read_text().splitlines()
    ]
    assert [r["envelope"]["error"] for r in lines] == [
        "The message body is not valid JSON (line 1, column 1): Expecting value"
    ]


# -- fan-out -------------------------------------------------------------------------------------


def drain(sqs, queue: str, arn: str, *, rounds: int = 50) -> int:
    """Work the queue as the Lambda poller does until it is empty; returns the invocations."""
    for invocations in range(rounds):
        messages = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=30
        ).get("Messages", [])
        if not messages:
            return invocations
        reply = invoke(sqs_event(messages, arn), remaining_ms=120_000).reply
        failed = {f["itemIdentifier"] for f in reply["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError("the queue did not drain")


def test_fan_out_10000_items_in_10000_records_out_none_twice(bucket, env, hf):
    def classify(request):
        return Reply(200, [{"label": request.json["inputs"], "score": 1.0}])

    hf.on(PATH, classify)
    sqs = client("sqs")
    queue = sqs.create_queue(QueueName=unique("work"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    env.setenv("RUN_QUEUE_URL", queue)
    lines = "".join(
        json.dumps({"id": f"i{i}", "text": f"text {i % 50}"}) + "\n" for i in range(10_000)
    )
    client("s3").put_object(Bucket=bucket, Key="in/items.jsonl", Body=lines.encode())

    started = invoke(
        {
            "input_uri": f"s3://{bucket}/in/items.jsonl",
            "fan_out": True,
            "chunk_size": 500,
            "output_uri": f"s3://{bucket}/out/",
        },
        remaining_ms=60_000,
    ).reply
    assert started == {
        "fan_out": True,
        "total": 10_000,
        "parts": 20,
        "output": f"s3://{bucket}/out/",
        "manifest": f"s3://{bucket}/out/manifest.json",
    }
    drain(sqs, queue, arn)

    s3 = client("s3")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key="out/manifest.json")["Body"].read())
    assert [p["count"] for p in manifest["parts"]] == [500] * 20
    records = []
    for part in manifest["parts"]:
        key = part["output"].removeprefix(f"s3://{bucket}/")
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        records += [json.loads(line) for line in body.splitlines()]
    assert len(records) == 10_000
    assert [r["id"] for r in records] == [f"i{i}" for i in range(10_000)]  # none twice, in order
    assert all(
        r["success"] and r["result"][0]["label"] == f"text {int(r['id'][1:]) % 50}" for r in records
    )


def test_unfinished_batch_goes_back_on_the_queue_and_nothing_is_lost(bucket, env, hf):
    slow = {"on": True}

    def classify(request):
        delay = 0.3 if slow["on"] else 0.0
        return Reply(200, [{"label": request.json["inputs"], "score": 1.0}], delay=delay)

    hf.on(PATH, classify)
    sqs = client("sqs")
    queue = sqs.create_queue(QueueName=unique("work"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    env.setenv("RUN_QUEUE_URL", queue)
    items = [{"id": i, "text": f"t{i}"} for i in range(120)]
    output = f"s3://{bucket}/batches/out.jsonl"

    first = invoke(
        {"items": items, "output_uri": output, "concurrency": 4}, remaining_ms=4_000
    ).reply
    assert first["continued"] > 0 and first["succeeded"] + first["continued"] == 120
    assert first["continuation_queued"] == f"s3://{bucket}/batches/out.c1.jsonl"
    slow["on"] = False
    drain(sqs, queue, arn)

    s3 = client("s3")

    def ids(uri):
        body = s3.get_object(Bucket=bucket, Key=uri.removeprefix(f"s3://{bucket}/"))["Body"]
        return [json.loads(line)["id"] for line in body.read().decode().splitlines()]

    done_first, done_later = ids(output), ids(first["continuation_queued"])
    assert sorted(done_first + done_later) == list(range(120))  # all, none twice


def test_a_continuation_that_cannot_be_queued_is_not_lost(bucket, env, hf, tmp_path):
    """The queue refuses (here: it does not exist): the batch still answers with its summary
    and where the continuation is; from SQS its message goes back, to run again whole."""
    hf.on(PATH, Reply(200, [{"label": "x", "score": 1.0}], delay=0.3))
    sqs = client("sqs")
    real = sqs.create_queue(QueueName=unique("real"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=real, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    env.setenv("RUN_QUEUE_URL", real.rsplit("/", 1)[0] + "/no-such-queue")
    items = [{"id": i, "text": f"t{i}"} for i in range(60)]
    output = tmp_path / "out.jsonl"
    summary = invoke(
        {"items": items, "output_uri": str(output), "concurrency": 4}, remaining_ms=4_000
    ).reply
    assert summary["continued"] > 0 and summary["continuation_queued"] is None
    assert summary["queue_error"].startswith("RUN_QUEUE_URL")
    done = [json.loads(x)["id"] for x in output.read_text().splitlines()]
    rest = [json.loads(x)["id"] for x in Path(summary["continuation"]).read_text().splitlines()]
    assert sorted(done + rest) == list(range(60))  # written, none lost

    body = json.dumps({"items": items, "output_uri": str(output), "concurrency": 4})
    sqs.send_message(QueueUrl=real, MessageBody=body)
    messages = sqs.receive_message(QueueUrl=real, MaxNumberOfMessages=1)["Messages"]
    reply = invoke(sqs_event(messages, arn), remaining_ms=4_000).reply
    assert reply["batchItemFailures"] == [{"itemIdentifier": messages[0]["MessageId"]}]


def test_every_request_of_an_sqs_invocation_keeps_its_records_on_s3(bucket, env, hf, aws):
    """One invocation stores its single runs, each batch and each comparison apart: none may
    replace another's records (they share the invocation's run id)."""
    hf.on(PATH, OK)
    sqs = client("sqs")
    queue = sqs.create_queue(QueueName=unique("many"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    bodies = [{"text": "single"}, {"items": ["a", "b"]}, {"items": ["c", "d", "e"]}]
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
    messages = []
    while len(messages) < 3:
        messages += sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    reply = invoke(sqs_event(messages, arn), remaining_ms=10_000).reply
    assert reply["batchItemFailures"] == []
    records = [r for rs in stored(bucket).values() for r in rs]
    assert len({r["run_id"] for r in records}) == 1 and len(records) == 3  # 1 run + 2 batches
    aws_env = {**AWS_ENV, "AWS_ENDPOINT_URL": aws, "RESULTS_URI": f"s3://{bucket}/hf-run-job/"}
    done = run_cli("usage", "--json", env=aws_env)
    assert done.returncode == 0, done.stderr
    total = json.loads(done.stdout)["total"]
    history = run_cli("history", env=aws_env).stdout.splitlines()
    assert len(history) == 2 and "6/6" in history[1]  # one run: its 2 batches and a single
    assert (total["runs"], total["items"]) == (1, 1 + 2 + 3)
