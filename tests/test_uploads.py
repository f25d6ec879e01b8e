"""S3 uploads start runs (S3_TRIGGERS), in both event forms, directly and through the queue;
a batch from a .jsonl upload or from a prefix; and no result the job writes starts a run."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

import pytest

from tests.aws import client
from tests.conftest import invoke, load_event
from tests.fakehf import Reply
from tests.test_media import LABELS, png, wav

VIT = "google/vit-base-patch16-224"
WHISPER = "openai/whisper-large-v3"


def eventbridge(bucket: str, key: str) -> dict[str, Any]:
    """S3's "Object Created" as EventBridge delivers it (keys as they are)."""
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-12-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 10, "etag": "x", "sequencer": "1"},
            "request-id": "r",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


def notification(bucket: str, *keys: str) -> dict[str, Any]:
    """The S3 notification itself (keys URL-encoded)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-12-01T00:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key, safe="/"), "size": 10},
                },
            }
            for key in keys
        ]
    }


@pytest.fixture
def uploads(aws, env, hf):
    """A bucket with results under runs/ and uploads mapped to run configs."""
    s3 = client("s3")
    s3.create_bucket(Bucket="media")  # moto lives for the session: the bucket is emptied
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="media"):
        for entry in page.get("Contents", []):
            s3.delete_object(Bucket="media", Key=entry["Key"])
    env.setenv("RESULTS_URI", "s3://media/runs/")
    env.setenv(
        "S3_TRIGGERS",
        json.dumps(
            {
                "uploads/images/": "classify-images",
                "media/uploads/calls/": "transcribe-calls",
                "uploads/texts/": "default",
            }
        ),
    )
    env.delenv("RUN_CONFIG_DIR", raising=False)
    return s3


def records(s3) -> list[dict[str, Any]]:
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket="media", Prefix="runs/").get("Contents", [])
    ]
    lines = []
    for key in keys:
        if key.endswith(".jsonl") and "/batches/" not in key:
            body = s3.get_object(Bucket="media", Key=key)["Body"].read().decode()
            lines += [json.loads(line) for line in body.splitlines()]
    return lines


def test_an_uploaded_photo_is_classified_by_the_run_config_of_its_prefix(uploads, hf):
    photo = png()
    uploads.put_object(Bucket="media", Key="uploads/images/cat 1.png", Body=photo)
    uploads.put_object(Bucket="media", Key="uploads/images/cat.png", Body=photo)
    hf.on(f"/models/{VIT}", Reply(200, LABELS))
    for event in (
        eventbridge("media", "uploads/images/cat 1.png"),
        notification("media", "uploads/images/cat 1.png"),  # the key URL-encoded
        load_event("s3-put.json"),  # as `sam local generate-event s3 put` makes it
        load_event("s3-eventbridge.json"),
    ):
        reply = invoke(event).reply
        assert reply["success"], reply
        assert reply["model"] == VIT and reply["result"][0]["label"] == "lynx"
    assert [s.body for s in hf.seen(f"/models/{VIT}")] == [photo] * 4
    stored = records(uploads)
    assert [r["trigger"] for r in stored] == ["s3"] * 4
    assert {r["run_config"] for r in stored} == {"classify-images"}


def test_a_bucket_and_prefix_key_and_a_sound_through_the_queue(uploads, hf):
    uploads.put_object(Bucket="media", Key="uploads/calls/monday.wav", Body=wav())
    hf.on(f"/models/{WHISPER}", Reply(200, {"text": "hello"}))
    body = json.dumps(eventbridge("media", "uploads/calls/monday.wav"))
    event = {
        "Records": [
            {
                "messageId": "m-1",
                "receiptHandle": "h",
                "body": body,
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1",
            }
        ]
    }
    assert invoke(event).reply == {"batchItemFailures": []}
    (record,) = records(uploads)
    assert record["envelope"]["result"] == {"text": "hello"}
    assert record["message_id"] == "m-1" and record["run_config"] == "transcribe-calls"


def test_a_text_upload_is_the_runs_text(uploads, hf):
    uploads.put_object(Bucket="media", Key="uploads/texts/t.txt", Body=b"The app crashes on login.")
    hf.on("/models/facebook/bart-large-mnli", Reply(200, [{"label": "technology", "score": 0.9}]))
    reply = invoke(eventbridge("media", "uploads/texts/t.txt")).reply
    assert reply["success"], reply
    assert (
        hf.seen("/models/facebook/bart-large-mnli")[0].json["inputs"] == "The app crashes on login."
    )


def test_a_jsonl_upload_is_a_batch_with_its_output_beside_the_results(uploads, hf):
    for name in ("a", "b"):
        uploads.put_object(Bucket="media", Key=f"photos/{name}.png", Body=png())
    lines = [{"id": n, "image": f"s3://media/photos/{n}.png"} for n in ("a", "b")]
    lines.append({"id": "bad", "image": "s3://media/photos/missing.png"})
    body = "".join(json.dumps(line) + "\n" for line in lines)
    uploads.put_object(Bucket="media", Key="uploads/images/list.jsonl", Body=body.encode())
    hf.on(f"/models/{VIT}", Reply(200, LABELS))
    summary = invoke(eventbridge("media", "uploads/images/list.jsonl")).reply
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (3, 2, 1)
    assert summary["output"].startswith("s3://media/runs/batches/")
    key = summary["output"].removeprefix("s3://media/")
    out = [
        json.loads(x)
        for x in uploads.get_object(Bucket="media", Key=key)["Body"].read().splitlines()
    ]
    assert [r["id"] for r in out] == ["a", "b", "bad"]
    assert "could not read s3://media/photos/missing.png" in out[2]["error"]


def test_a_prefix_is_a_batch_of_every_object_under_it_page_by_page(uploads, hf, env):
    env.setattr("function.storage.PAGE_KEYS", 10)
    count = 25  # three pages of a listing
    for i in range(count):
        uploads.put_object(Bucket="media", Key=f"inbox/{i:05d}.png", Body=png(2, 2))
    uploads.put_object(Bucket="media", Key="inbox/", Body=b"")  # a folder marker: no item
    hf.on(f"/models/{VIT}", Reply(200, LABELS))
    summary = invoke(
        {
            "run_config": "classify-images",
            "input_uri": "s3://media/inbox/",
            "output_uri": "s3://media/out/inbox.jsonl",
        },
        remaining_ms=120_000,
    ).reply
    assert (summary["total"], summary["succeeded"]) == (count, count), summary
    out = uploads.get_object(Bucket="media", Key="out/inbox.jsonl")["Body"].read().splitlines()
    assert [json.loads(x)["id"] for x in out] == [f"inbox/{i:05d}.png" for i in range(count)]
    assert len(hf.seen(f"/models/{VIT}")) == 1  # the same picture: sent once


def test_a_prefix_batch_needs_a_media_task_and_an_output_outside_it(uploads):
    text_task = invoke({"input_uri": "s3://media/inbox/"}).reply
    assert "name the image or audio task that reads them" in text_task["error"]
    inside = invoke(
        {
            "run_config": "classify-images",
            "input_uri": "s3://media/inbox/",
            "output_uri": "s3://media/inbox/out.jsonl",
        }
    ).reply
    assert "is under the input prefix" in inside["error"]


@pytest.mark.parametrize("results", ["s3://media/runs/", "S3://media//runs"])
def test_a_result_the_job_writes_starts_no_run(uploads, hf, env, results):
    # Even with every key mapped to a run config, the job's own output starts nothing,
    # however RESULTS_URI is spelled.
    env.setenv("S3_TRIGGERS", json.dumps({"": "classify-images"}))
    env.setenv("RESULTS_URI", results)
    hf.on(
        "/models/black-forest-labs/FLUX.1-schnell", Reply(200, png(), {"content-type": "image/png"})
    )
    made = invoke(
        {"model": "black-forest-labs/FLUX.1-schnell", "task": "text-to-image", "text": "a fox"}
    ).reply
    picture = made["result"]["image"].removeprefix("s3://media/")
    written = [o["Key"] for o in uploads.list_objects_v2(Bucket="media")["Contents"]]
    assert picture in written
    before = len(hf.requests)
    for key in written:  # the picture and the run record: each would be an upload event
        reply = invoke(eventbridge("media", key)).reply
        assert not reply["success"] and "is the job's own output" in reply["error"]
    assert len(hf.requests) == before  # no run started
    after = [o["Key"] for o in uploads.list_objects_v2(Bucket="media")["Contents"]]
    assert after == written  # and nothing was written that could trigger again


def test_an_upload_no_prefix_maps_is_a_failure_naming_s3_triggers(uploads, hf):
    uploads.put_object(Bucket="media", Key="elsewhere/x.png", Body=png())
    reply = invoke(eventbridge("media", "elsewhere/x.png")).reply
    assert "no S3_TRIGGERS prefix matches s3://media/elsewhere/x.png" in reply["error"]
    assert hf.requests == []


def test_an_s3_notification_of_several_objects_runs_each(uploads, hf):
    for name in ("a", "b"):
        uploads.put_object(Bucket="media", Key=f"uploads/images/{name}.png", Body=png())
    hf.on(f"/models/{VIT}", Reply(200, LABELS))
    reply = invoke(notification("media", "uploads/images/a.png", "uploads/images/b.png")).reply
    assert [r["success"] for r in reply["results"]] == [True, True]


def test_a_malformed_s3_event_in_a_queue_message_fails_alone():
    from function.triggers import read_event

    bad = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": 5}]}
    weird_key = notification("media", "uploads/x.png")
    weird_key["Records"][0]["s3"]["object"]["key"] = 5
    messages = [
        {"eventSource": "aws:sqs", "messageId": "1", "body": json.dumps(bad)},
        {"eventSource": "aws:sqs", "messageId": "2", "body": json.dumps(weird_key)},
        {"eventSource": "aws:sqs", "messageId": "3", "body": json.dumps(eventbridge("b", "k"))},
        {"eventSource": "aws:sqs", "messageId": "4", "body": '{"text": "hi"}'},
    ]
    invocation = read_event({"Records": messages})
    assert invocation.trigger == "sqs"
    got = [(r.message_id, r.upload, r.problem is not None) for r in invocation.requests]
    assert got == [
        ("1", None, True),
        ("2", None, True),
        ("3", "s3://b/k", False),
        ("4", None, False),
    ]


def test_a_text_under_an_image_prefix_says_what_it_is(uploads, hf):
    uploads.put_object(Bucket="media", Key="uploads/images/notes.txt", Body=b"just words")
    reply = invoke(eventbridge("media", "uploads/images/notes.txt")).reply
    assert "is not an image or a sound the API reads" in reply["error"]
    assert "run config 'classify-images' runs image-classification" in reply["error"]
    assert hf.requests == []
