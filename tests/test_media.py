"""Images and audio: the media tasks end to end on the fake server, the inputs' sources
(base64, data: URLs, files from the CLI, S3 on moto, URLs), their checks, and the URL guard."""

from __future__ import annotations

import base64
import io
import json
import wave
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from function.media import is_public, sniff
from tests.aws import client
from tests.conftest import TOKEN, invoke, run_cli
from tests.fakehf import Reply, recorded_reply, recording
from tests.schemas import assert_valid

CLIP = "openai/clip-vit-base-patch32"
VIT = "google/vit-base-patch16-224"


def png(width: int = 8, height: int = 6, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def jpeg(width: int = 8, height: int = 6) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(out, format="JPEG")
    return out.getvalue()


def wav(seconds: float = 0.25, rate: int = 16_000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(rate)
        sound.writeframes(b"\x00\x01" * int(seconds * rate))
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


LABELS = [{"label": "tabby cat", "score": 0.2}, {"label": "lynx", "score": 0.7}]


# -- the tasks, end to end -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "field", "data", "answer", "expected"),
    [
        (
            "image-classification",
            "image",
            png(),
            LABELS,
            [{"label": "lynx", "score": 0.7}, {"label": "tabby cat", "score": 0.2}],
        ),
        (
            "object-detection",
            "image",
            jpeg(),
            [{"label": "cat", "score": 0.9, "box": {"xmin": 1, "ymin": 2, "xmax": 5, "ymax": 6}}],
            None,
        ),
        (
            "image-segmentation",
            "image",
            png(),
            [{"label": "cat", "score": 0.9, "mask": b64(png(2, 2))}, {"label": "sky", "mask": "x"}],
            None,
        ),
        ("image-to-text", "image", jpeg(), [{"generated_text": "a red square"}], None),
        ("automatic-speech-recognition", "audio", wav(), {"text": "hello there"}, None),
        (
            "audio-classification",
            "audio",
            wav(),
            [{"label": "speech", "score": 0.1}, {"label": "music", "score": 0.8}],
            [{"label": "music", "score": 0.8}, {"label": "speech", "score": 0.1}],
        ),
    ],
)
def test_a_media_task_sends_the_raw_bytes_and_reads_the_answer_into_the_envelope(
    env, hf, task, field, data, answer, expected
):
    hf.on(f"/models/{VIT}", Reply(200, answer))
    reply = invoke({"model": VIT, "task": task, field: b64(data)}).reply
    assert reply["success"], reply
    (seen,) = hf.seen(f"/models/{VIT}")
    assert seen.body == data  # the bytes themselves, not JSON
    assert seen.headers["content-type"] == sniff(data)
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert_valid(task, "output", reply["result"])
    if expected is not None:
        assert reply["result"] == expected
    assert reply["is_classification"] == task.endswith("classification")


def test_with_parameters_the_request_is_json_with_the_image_in_base64(env, hf):
    hf.on(f"/models/{VIT}", Reply(200, LABELS))
    image = png()
    reply = invoke(
        {
            "model": VIT,
            "task": "image-classification",
            "image": b64(image),
            "parameters": {"top_k": 2},
        }
    ).reply
    assert reply["success"], reply
    (seen,) = hf.seen(f"/models/{VIT}")
    assert seen.headers["content-type"] == "application/json"
    assert seen.json == {"inputs": b64(image), "parameters": {"top_k": 2}}
    assert_valid("image-classification", "input", seen.json)


def test_zero_shot_image_classification_replays_the_recorded_exchange(env, hf):
    exchange = recording(
        "router__TestInferenceClient.test_zero_shot_image_classification__hf-inference__"
        "zero-shot-image-classification"
    )["exchanges"][0]
    recorded = json.loads(exchange["request"]["body"])
    hf.on(f"/models/{CLIP}", recorded_reply(exchange))
    reply = invoke(
        {
            "model": CLIP,
            "image": recorded["inputs"],  # the recorded picture, as base64
            "candidate_labels": "tree, woman, cat",
        }
    ).reply
    assert reply["success"], reply
    assert reply["is_classification"] is True
    assert [r["label"] for r in reply["result"]] == ["woman", "cat", "tree"]
    assert_valid("zero-shot-image-classification", "output", reply["result"])
    (seen,) = hf.seen(f"/models/{CLIP}")
    assert seen.json == recorded  # the same request huggingface_hub sent
    assert_valid("zero-shot-image-classification", "input", seen.json)


def test_an_image_over_the_run_configs_text_replaces_it(env, hf, tmp_path):
    (tmp_path / "default.json").write_text(json.dumps({"model": VIT, "text": "a ticket"}))
    env.setenv("RUN_CONFIG_DIR", str(tmp_path))
    hf.on(f"/models/{VIT}", Reply(200, LABELS))
    reply = invoke({"task": "image-classification", "image": b64(png())}).reply
    assert reply["success"], reply


# -- sources ---------------------------------------------------------------------------------


def test_a_data_url_and_url_safe_base64_are_read(env, hf):
    hf.on(f"/models/{VIT}", Reply(200, LABELS))
    image = jpeg()
    for given_as in (
        f"data:image/jpeg;base64,{b64(image)}",
        base64.urlsafe_b64encode(image).decode().rstrip("="),
    ):
        reply = invoke({"model": VIT, "task": "image-classification", "image": given_as}).reply
        assert reply["success"], reply
    assert [s.body for s in hf.seen(f"/models/{VIT}")] == [image, image]


def test_the_cli_reads_a_file_and_an_event_never_does(env, hf, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(png())
    hf.on(f"/models/{VIT}", Reply(200, LABELS))
    environment = {"HUGGINGFACE_API_ENDPOINT": hf.endpoint, "HUGGINGFACE_API_KEY": TOKEN}
    done = run_cli(
        "run", "--model", VIT, "--task", "image-classification", "--image", str(photo),
        "--label", "null", env=environment,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"][0]["label"] == "lynx"
    assert hf.seen(f"/models/{VIT}")[0].body == photo.read_bytes()
    # The same path in an event is not a file: it is refused, and nothing is sent.
    reply = invoke({"model": VIT, "task": "image-classification", "image": str(photo)}).reply
    assert not reply["success"]
    assert reply["error"].startswith("Invalid input: image:")
    assert "file path from the CLI only" in reply["error"]
    assert len(hf.seen(f"/models/{VIT}")) == 1


def test_an_s3_object_is_read_with_the_functions_role(aws, env, hf):
    s3 = client("s3")
    s3.create_bucket(Bucket="uploads")
    sound = wav()
    s3.put_object(Bucket="uploads", Key="calls/one.wav", Body=sound)
    hf.on("/models/openai/whisper-tiny", Reply(200, {"text": "hi"}))
    reply = invoke(
        {
            "model": "openai/whisper-tiny",
            "task": "automatic-speech-recognition",
            "audio": "s3://uploads/calls/one.wav",
        }
    ).reply
    assert reply == {
        "success": True,
        "result": {"text": "hi"},
        "is_classification": False,
        "model": "openai/whisper-tiny",
        "error": None,
    }
    assert hf.seen("/models/openai/whisper-tiny")[0].body == sound
    missing = invoke(
        {"model": "m", "task": "automatic-speech-recognition", "audio": "s3://uploads/nope.wav"}
    ).reply
    assert (
        not missing["success"] and "audio: could not read s3://uploads/nope.wav" in missing["error"]
    )


# -- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("image", "not base64 at all!", "expected s3://bucket/key, an https:// URL"),
        ("image", "QUJD=x", "expected s3://bucket/key"),
        ("image", b64(png())[:-40], "the PNG stops before its end"),
        ("image", b64(b"%PDF-1.4 hello"), "not in a format the API reads"),
        ("image", b64(wav()), "holds audio/wav, not image"),
        ("audio", b64(png()), "holds image/png, not audio"),
        ("image", b64(wav()[:100]), "holds audio/wav"),
        ("audio", b64(wav()[:100]), "the file stops at 100 bytes"),
        ("image", "data:image/png,plain", "a data: URL must be base64"),
        ("image", "ftp://example.com/cat.png", "expected s3://bucket/key"),
        ("image", "", "at least 1 character"),
    ],
)
def test_bad_media_is_refused_naming_the_field_and_nothing_is_sent(env, hf, field, value, message):
    task = "image-classification" if field == "image" else "audio-classification"
    reply = invoke({"model": VIT, "task": task, field: value}).reply
    assert not reply["success"], reply
    assert reply["error"].startswith(f"Invalid input: {field}"), reply["error"]
    assert message in reply["error"]
    assert hf.requests == []


def test_media_over_the_size_limit_is_refused_before_it_is_read_whole(env, hf):
    env.setenv("HF_MEDIA_MAX_BYTES", "2048")
    big = b"\x89PNG\r\n\x1a\n" + bytes(4000)
    reply = invoke({"model": VIT, "task": "image-classification", "image": b64(big)}).reply
    assert "4,008 bytes is over the limit of 2,048 bytes (HF_MEDIA_MAX_BYTES)" in reply["error"]
    assert reply["error"].startswith("Invalid input: image:")
    assert hf.requests == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task": "image-classification"}, "image is required for task 'image-classification'"),
        ({"task": "image-classification", "image": "x", "audio": "y"}, "audio is only used by"),
        ({"task": "text-classification", "text": "hi", "image": "x"}, "image is only used by"),
        ({"image": "x"}, "task: name the task that reads the image"),
        ({"task": "zero-shot-image-classification", "image": "x"}, "candidate_labels is required"),
        (
            {"task": "image-classification", "image": "x", "provider": "local"},
            "runs the text tasks",
        ),
    ],
)
def test_media_fields_are_checked_against_the_task(env, hf, fields, message):
    reply = invoke({"model": VIT, "candidate_labels": None, **fields}).reply
    assert not reply["success"]
    assert message in reply["error"], reply["error"]
    assert hf.requests == []


# -- URLs, from public addresses only ------------------------------------------------------------


@pytest.fixture
def media_host(env, hf):
    """`http://media.test:PORT/...`, a public-looking name served by the fake server."""
    env.setenv("HF_MEDIA_ALLOW_HTTP", "true")
    env.setenv("HF_MEDIA_TEST_HOSTS", json.dumps({"media.test": "127.0.0.1"}))
    return f"http://media.test:{hf.port}"


def test_a_public_url_is_fetched_without_credentials(env, hf, media_host):
    image = png()
    hf.on("/cat.png", Reply(200, image, {"content-type": "text/plain"}), prefix="")
    hf.on(f"/models/{VIT}", Reply(200, LABELS))
    reply = invoke(
        {"model": VIT, "task": "image-classification", "image": f"{media_host}/cat.png"}
    ).reply
    assert reply["success"], reply
    (fetched,) = hf.seen("/cat.png", prefix="")
    assert fetched.method == "GET" and "authorization" not in fetched.headers
    assert fetched.headers["host"] == f"media.test:{hf.port}"
    sent = hf.seen(f"/models/{VIT}")[0]
    assert sent.body == image and sent.headers["content-type"] == "image/png"  # by its bytes


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/cat.png",
        "http://10.0.0.7/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/cat.png",
        "http://localhost:{port}/cat.png",
        "http://[::ffff:127.0.0.1]:{port}/cat.png",
        "http://0.0.0.0:{port}/cat.png",
    ],
)
def test_a_url_to_the_functions_own_network_is_refused(env, hf, media_host, url):
    hf.on("/cat.png", Reply(200, png()), prefix="")
    reply = invoke(
        {"model": VIT, "task": "image-classification", "image": url.format(port=hf.port)}
    ).reply
    assert not reply["success"]
    assert "not a public address" in reply["error"], reply["error"]
    assert hf.requests == []


def test_a_redirect_to_loopback_is_refused(env, hf, media_host):
    hf.on("/cat.png", Reply(200, png()), prefix="")
    target = f"http://127.0.0.1:{hf.port}/cat.png"
    hf.on("/go", Reply(302, b"", {"location": target}), prefix="")
    reply = invoke(
        {"model": VIT, "task": "image-classification", "image": f"{media_host}/go"}
    ).reply
    assert "not a public address" in reply["error"], reply["error"]
    assert [r.path for r in hf.requests] == ["/go"]


def test_redirects_are_followed_a_few_times_only(env, hf, media_host):
    hf.on("/loop", Reply(302, b"", {"location": "/loop"}), prefix="")
    reply = invoke(
        {"model": VIT, "task": "image-classification", "image": f"{media_host}/loop"}
    ).reply
    assert "more than 3 redirects" in reply["error"]
    assert len(hf.requests) == 4


def test_http_is_refused_unless_a_setting_allows_it(env, hf):
    reply = invoke(
        {"model": VIT, "task": "image-classification", "image": "http://example.com/a.png"}
    ).reply
    assert "http:// URLs are not fetched; expected https://" in reply["error"]


def test_a_url_with_credentials_is_refused(env, hf, media_host):
    url = f"http://user:pw@media.test:{hf.port}/cat.png"
    reply = invoke({"model": VIT, "task": "image-classification", "image": url}).reply
    assert "user name or password" in reply["error"]
    assert hf.requests == []


def test_a_url_that_fails_is_a_transient_failure_naming_it(env, hf, media_host):
    hf.on("/gone.png", Reply(404, {"error": "nope"}), prefix="")
    reply = invoke(
        {"model": VIT, "task": "image-classification", "image": f"{media_host}/gone.png"}
    ).reply
    assert reply["error"] == f"image: http://media.test:{hf.port}/gone.png answered HTTP 404"
    assert "answered HTTP 404" in reply["error"]


def test_a_url_answer_over_the_size_limit_is_cut_off(env, hf, media_host):
    env.setenv("HF_MEDIA_MAX_BYTES", "4096")
    hf.on("/big.png", Reply(200, b"\x89PNG\r\n\x1a\n" + bytes(100_000)), prefix="")
    reply = invoke(
        {"model": VIT, "task": "image-classification", "image": f"{media_host}/big.png"}
    ).reply
    assert "over the limit" in reply["error"]
    assert hf.seen(f"/models/{VIT}") == []


PRIVATE_V4 = st.one_of(
    st.ip_addresses(v=4, network="10.0.0.0/8"),
    st.ip_addresses(v=4, network="172.16.0.0/12"),
    st.ip_addresses(v=4, network="192.168.0.0/16"),
    st.ip_addresses(v=4, network="127.0.0.0/8"),
    st.ip_addresses(v=4, network="169.254.0.0/16"),
    st.ip_addresses(v=4, network="100.64.0.0/10"),
    st.ip_addresses(v=4, network="0.0.0.0/8"),
)


@examples(max_examples=300)
@given(PRIVATE_V4)
def test_no_private_address_is_public_in_either_form(address: Any):
    assert not is_public(str(address))
    assert not is_public(f"::ffff:{address}")


@given(st.ip_addresses(v=6, network="fc00::/7") | st.ip_addresses(v=6, network="fe80::/10"))
def test_no_private_ipv6_address_is_public(address: Any):
    assert not is_public(str(address))


def test_public_addresses_are_public():
    assert is_public("93.184.216.34") and is_public("2606:4700:4700::1111")


# -- text-to-image ---------------------------------------------------------------------------

FLUX = "black-forest-labs/FLUX.1-schnell"


def test_text_to_image_stores_the_picture_beside_the_records(env, hf, tmp_path):
    picture = png(64, 48)
    hf.on(f"/models/{FLUX}", Reply(200, picture, {"content-type": "image/png"}))
    parameters = {"width": 64, "height": 48, "num_inference_steps": 4, "seed": 7}
    reply = invoke(
        {"model": FLUX, "task": "text-to-image", "text": "a red fox", "parameters": parameters}
    ).reply
    assert reply["success"], reply
    result = reply["result"]
    assert set(reply) == {"success", "result", "is_classification", "model", "error"}
    assert result["content_type"] == "image/png" and result["bytes"] == len(picture)
    assert (result["width"], result["height"]) == (64, 48)
    stored = Path(result["image"])
    assert stored.is_relative_to(tmp_path / "runs" / "images")
    assert stored.read_bytes() == picture
    (sent,) = hf.seen(f"/models/{FLUX}")
    assert sent.json == {"inputs": "a red fox", "parameters": parameters}
    assert_valid("text-to-image", "input", sent.json)


def test_a_jpeg_pictures_size_is_read_from_its_header(env, hf):
    hf.on(f"/models/{FLUX}", Reply(200, jpeg(33, 21), {"content-type": "image/jpeg"}))
    result = invoke({"model": FLUX, "task": "text-to-image", "text": "x"}).reply["result"]
    assert (result["width"], result["height"]) == (33, 21)
    assert result["image"].endswith(".jpg")


def test_a_text_to_image_answer_that_is_not_an_image_fails_clearly(env, hf):
    hf.on(f"/models/{FLUX}", Reply(200, b"<html>oops</html>", {"content-type": "image/png"}))
    reply = invoke({"model": FLUX, "task": "text-to-image", "text": "x"}).reply
    assert not reply["success"]
    assert "not an image the job can read" in reply["error"]


def test_text_to_image_stores_in_s3_under_results_uri(aws, env, hf):
    s3 = client("s3")
    s3.create_bucket(Bucket="results")
    env.setenv("RESULTS_URI", "s3://results/runs/")
    picture = png(16, 16)
    hf.on(f"/models/{FLUX}", Reply(200, picture, {"content-type": "image/png"}))
    result = invoke({"model": FLUX, "task": "text-to-image", "text": "x"}).reply["result"]
    assert result["image"].startswith("s3://results/runs/images/")
    key = result["image"].removeprefix("s3://results/")
    stored = s3.get_object(Bucket="results", Key=key)
    assert stored["Body"].read() == picture and stored["ContentType"] == "image/png"


def test_the_cli_saves_the_picture_where_asked(env, hf, tmp_path):
    picture = png(10, 10)
    hf.on(f"/models/{FLUX}", Reply(200, picture, {"content-type": "image/png"}))
    out = tmp_path / "fox.png"
    environment = {"HUGGINGFACE_API_ENDPOINT": hf.endpoint, "HUGGINGFACE_API_KEY": TOKEN}
    done = run_cli(
        "run", "--model", FLUX, "--task", "text-to-image", "--text", "a fox", "--label", "null",
        "--out", str(out), env=environment,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == picture
    assert json.loads(done.stdout)["result"]["width"] == 10


@pytest.mark.parametrize("field", ["image", "audio"])
def test_media_over_a_text_run_config_needs_its_task_named(env, hf, field):
    # The default run config is zero-shot text: its labels do not make a zero-shot image run.
    reply = invoke({"model": VIT, field: b64(png() if field == "image" else wav())}).reply
    assert reply["error"].startswith(f"Invalid input: task: name the task that reads the {field}")
    assert hf.requests == []
    if field == "image":  # with labels of its own, it is zero-shot-image-classification
        hf.on(f"/models/{CLIP}", Reply(200, LABELS))
        reply = invoke({"model": CLIP, "image": b64(png()), "candidate_labels": "a, b"}).reply
        assert reply["success"], reply
        assert hf.seen(f"/models/{CLIP}")[0].json["parameters"] == {"candidate_labels": ["a", "b"]}


def test_the_cli_says_when_a_file_is_missing_and_refuses_out_for_other_tasks(env, hf, tmp_path):
    environment = {"HUGGINGFACE_API_ENDPOINT": hf.endpoint, "HUGGINGFACE_API_KEY": TOKEN}
    missing = tmp_path / "nothere.png"
    done = run_cli(
        "run", "--model", VIT, "--task", "image-classification", "--image", str(missing),
        env=environment,
    )  # fmt: skip
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"] == f"Invalid input: image: no such file: {missing}"
    photo = tmp_path / "photo.png"
    photo.write_bytes(png())
    done = run_cli(
        "run", "--model", VIT, "--task", "image-classification", "--image", str(photo),
        "--out", str(tmp_path / "x.png"), env=environment,
    )  # fmt: skip
    assert done.returncode == 2 and "--out saves a text-to-image picture" in done.stderr
    assert hf.requests == []


# -- what the probes of issue 10 found ---------------------------------------------------------


def test_a_compressed_answer_is_refused_never_inflated(env, hf, media_host):
    import gzip

    bomb = gzip.compress(b"\x89PNG\r\n\x1a\n" + bytes(8_000_000))  # 8 MB in ~8 KB
    hf.on("/bomb.png", Reply(200, bomb, {"content-encoding": "gzip"}), prefix="")
    env.setenv("HF_MEDIA_MAX_BYTES", "1048576")
    reply = invoke(
        {"model": VIT, "task": "image-classification", "image": f"{media_host}/bomb.png"}
    )
    assert "answered compressed (gzip)" in reply.reply["error"]
    (fetched,) = hf.seen("/bomb.png", prefix="")
    assert fetched.headers["accept-encoding"] == "identity"


def test_a_batch_holds_at_most_sixteen_images_at_once(env, hf, media_host):
    hf.latency = 0.03
    hf.on("/i.png", Reply(200, png()), prefix="")
    hf.on(f"/models/{VIT}", lambda seen: Reply(200, LABELS))
    items = [{"id": i, "image": f"{media_host}/i.png?n={i}"} for i in range(60)]
    summary = invoke(
        {"model": VIT, "task": "image-classification", "items": items, "concurrency": 200},
        remaining_ms=60_000,
    ).reply
    assert summary["succeeded"] == 60, summary
    assert hf.peak_in_flight <= 16  # downloads and answers together


def test_a_name_server_that_never_answers_is_bounded_by_the_deadline(env, hf, monkeypatch):
    import socket
    import time as clock

    real = socket.getaddrinfo

    def slow(host, *args, **kwargs):
        if host == "slow.example.com":
            clock.sleep(5)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    event = {
        "model": VIT,
        "task": "image-classification",
        "image": "https://slow.example.com/a.png",
    }
    done = invoke(event, remaining_ms=2000)
    assert done.elapsed < 2.0
    assert "did not resolve before the deadline" in done.reply["error"]


def test_an_s3_scheme_in_capitals_is_s3_never_a_local_path(env, hf, aws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "S3:" / "bucket").mkdir(parents=True)
    (tmp_path / "S3:" / "bucket" / "x.png").write_bytes(png())
    reply = invoke({"model": VIT, "task": "image-classification", "image": "S3://bucket/x.png"})
    assert "could not read s3://bucket/x.png" in reply.reply["error"]
    assert hf.requests == []


def test_a_redirect_to_an_unusable_url_is_invalid_input(env, hf, media_host):
    hf.on("/bad", Reply(302, b"", {"location": "http:\\\\127.0.0.1:1/x"}), prefix="")
    reply = invoke({"model": VIT, "task": "image-classification", "image": f"{media_host}/bad"})
    assert reply.reply["error"].startswith("Invalid input: image:"), reply.reply["error"]


@pytest.mark.parametrize("text", [b"BMW recalls 2 cars", b"ID3 tags are metadata", b"OggS is a"])
def test_text_that_starts_like_a_signature_is_not_media(text):
    assert sniff(text) is None


@pytest.mark.parametrize(
    "address", ["64:ff9b::a00:5", "64:ff9b::7f00:1", "2002:a00:5::1", "::10.0.0.5", "fec0::1"]
)
def test_ipv6_that_carries_a_private_ipv4_is_not_public(address):
    assert not is_public(address)
