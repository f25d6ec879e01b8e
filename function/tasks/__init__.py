"""The tasks, by name, and recognition of a task from its answer's shape."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from function.errors import BadResponseError
from function.tasks.base import Task, describe_shape

# Task name -> "module:class", in the order answers are recognized (the more specific shapes
# first). A run that names its task imports only that task's module.
_WHERE = {
    "zero-shot-classification": "classification:ZeroShotClassification",
    "text-generation": "generation:TextGeneration",
    "summarization": "text2text:Summarization",
    "translation": "text2text:Translation",
    "question-answering": "question_answering:QuestionAnswering",
    "fill-mask": "text2text:FillMask",
    "object-detection": "media:ObjectDetection",
    "image-segmentation": "media:ImageSegmentation",
    "token-classification": "classification:TokenClassification",
    "text-classification": "classification:TextClassification",
    "feature-extraction": "embeddings:FeatureExtraction",
    "sentence-similarity": "embeddings:SentenceSimilarity",
    "automatic-speech-recognition": "media:SpeechRecognition",
    "image-classification": "media:ImageClassification",
    "audio-classification": "media:AudioClassification",
    "zero-shot-image-classification": "media:ZeroShotImageClassification",
    "image-to-text": "media:ImageToText",
    "text-to-image": "media:TextToImage",
}
_loaded: dict[str, Task] = {}


def get_task(name: str) -> Task:
    task = _loaded.get(name)
    if task is None:
        module, cls = _WHERE[name].split(":")
        task = _loaded[name] = getattr(import_module(f"function.tasks.{module}"), cls)()
    return task


def all_tasks() -> list[Task]:
    return [get_task(name) for name in _WHERE]


def recognize_or_none(body: Any) -> Task | None:
    """The task whose answer has this shape, if any."""
    return next((task for task in all_tasks() if task.recognizes(body)), None)


def recognize(body: Any) -> Task:
    """The task whose answer has this shape (for runs that name no task)."""
    task = recognize_or_none(body)
    if task is not None:
        return task
    raise BadResponseError(
        f"Cannot tell the task from the answer's shape ({describe_shape(body)}); "
        "name the task in the run inputs"
    )


__all__ = ["Task", "all_tasks", "get_task", "recognize", "recognize_or_none"]
