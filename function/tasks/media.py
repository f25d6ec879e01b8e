"""The image and audio tasks: image-classification, object-detection, image-segmentation,
image-to-text, zero-shot-image-classification, automatic-speech-recognition and
audio-classification; and text-to-image.

The request is the raw bytes with their content type (read from the bytes, `function.media`),
or, when there are parameters, `{"inputs": <base64>, "parameters": {...}}`, as the API takes.
Text-to-image sends a prompt and answers with a picture: the run stores it beside its
records, and its result says where (`Picture`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from function.client import Call, Deadline
from function.errors import BadResponseError
from function.inputs import RunInputs
from function.media import Picture, dimensions, sniff
from function.settings import Settings
from function.tasks.base import Task, is_number, is_record, records, single
from function.tasks.classification import TextClassification

if TYPE_CHECKING:
    from function.backends import Target
    from function.media import Media


class MediaTask(Task):
    """A task whose input is `media`: the run's image or sound (which one:
    `function.inputs.MEDIA_TASKS`)."""

    def call(self, inputs: RunInputs, target: Target, media: Media | None = None) -> Call:
        assert media is not None, "a media task runs with the media read"
        call = super().call(inputs, target)
        parameters = self.parameters(inputs)
        if not parameters:
            return call._replace(payload=media.data, content_type=media.content_type)
        return call._replace(payload={"inputs": media.as_base64(), "parameters": parameters})

    def parameters(self, inputs: RunInputs) -> dict[str, Any]:
        return dict(inputs.parameters)

    def payload(self, inputs: RunInputs) -> dict[str, Any]:
        return {}  # `call` builds it from the media


class ImageClassification(MediaTask, TextClassification):
    name = "image-classification"

    def recognizes(self, body: Any) -> bool:
        return False  # a text classification's shape: recognized as that


class AudioClassification(ImageClassification):
    name = "audio-classification"


class ZeroShotImageClassification(ImageClassification):
    name = "zero-shot-image-classification"

    def parameters(self, inputs: RunInputs) -> dict[str, Any]:
        return {**inputs.parameters, "candidate_labels": inputs.labels}


def _box(value: Any) -> bool:
    return is_record(value, "xmin", "ymin", "xmax", "ymax") and all(
        is_number(value[k]) for k in ("xmin", "ymin", "xmax", "ymax")
    )


class ObjectDetection(MediaTask):
    name = "object-detection"

    def recognizes(self, body: Any) -> bool:
        items = records(body, "label", "score", "box")
        return bool(items) and all(_box(i["box"]) for i in items or [])

    def parse(self, body: Any) -> Any:
        items = records(body, "label", "score", "box")
        if items is None or not all(
            isinstance(i["label"], str) and is_number(i["score"]) and _box(i["box"]) for i in items
        ):
            raise self.unexpected(body)
        return [{"label": i["label"], "score": i["score"], "box": i["box"]} for i in items]


class ImageSegmentation(MediaTask):
    name = "image-segmentation"

    def recognizes(self, body: Any) -> bool:
        return bool(records(body, "label", "mask"))

    def parse(self, body: Any) -> Any:
        items = records(body, "label", "mask")
        if items is None or not all(
            isinstance(i["label"], str)
            and isinstance(i["mask"], str)
            and (i.get("score") is None or is_number(i["score"]))
            for i in items
        ):
            raise self.unexpected(body)
        # Semantic segmentation has no score: the key is left out rather than null.
        return [
            {k: i[k] for k in ("label", "score", "mask") if i.get(k) is not None} for i in items
        ]


class ImageToText(MediaTask):
    name = "image-to-text"

    def recognizes(self, body: Any) -> bool:
        return False  # a generation's shape: recognized as text-generation

    def parse(self, body: Any) -> Any:
        answer = single(body, "generated_text")
        if answer is None or not isinstance(answer["generated_text"], str):
            raise self.unexpected(body)
        return {"generated_text": answer["generated_text"]}


def _chunk(value: Any) -> bool:
    stamp = value.get("timestamp") if isinstance(value, dict) else None
    return (
        is_record(value, "text", "timestamp")
        and isinstance(value["text"], str)
        and isinstance(stamp, list)
        and all(v is None or is_number(v) for v in stamp)
    )


class SpeechRecognition(MediaTask):
    name = "automatic-speech-recognition"

    def recognizes(self, body: Any) -> bool:
        return isinstance(body, dict) and set(body) <= {"text", "chunks"} and "text" in body

    def parse(self, body: Any) -> Any:
        if isinstance(body, list) and len(body) == 1:
            body = body[0]
        if not (isinstance(body, dict) and isinstance(body.get("text"), str)):
            raise self.unexpected(body)
        chunks = body.get("chunks")
        if chunks is None:
            return {"text": body["text"]}
        if not (isinstance(chunks, list) and all(_chunk(c) for c in chunks)):
            raise self.unexpected(body)
        return {"text": body["text"], "chunks": chunks}


class TextToImage(Task):
    name = "text-to-image"

    def recognizes(self, body: Any) -> bool:
        return isinstance(body, bytes)

    def parse(self, body: Any) -> Any:
        if not isinstance(body, bytes):
            raise self.unexpected(body)
        content_type = sniff(body)
        if content_type is None or not content_type.startswith("image/"):
            raise BadResponseError(
                f"The text-to-image answer is not an image the job can read (its first bytes "
                f"are {body[:8].hex(' ')})"
            )
        return Picture(body, content_type, *dimensions(body, content_type))

    async def finish(self, result: Any, settings: Settings, deadline: Deadline) -> Any:
        return await result.stored(settings, deadline)
