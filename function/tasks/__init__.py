"""The tasks, by name, and recognition of a task from its answer's shape."""

from __future__ import annotations

from typing import Any

from function.errors import BadResponseError
from function.tasks.base import Task, describe_shape
from function.tasks.classification import (
    TextClassification,
    TokenClassification,
    ZeroShotClassification,
)
from function.tasks.embeddings import FeatureExtraction, SentenceSimilarity
from function.tasks.generation import TextGeneration
from function.tasks.question_answering import QuestionAnswering
from function.tasks.text2text import FillMask, Summarization, Translation

# In the order answers are recognized: the more specific shapes first.
_ALL: tuple[Task, ...] = (
    ZeroShotClassification(),
    TextGeneration(),
    Summarization(),
    Translation(),
    QuestionAnswering(),
    FillMask(),
    TokenClassification(),
    TextClassification(),
    FeatureExtraction(),
    SentenceSimilarity(),
)
TASKS: dict[str, Task] = {task.name: task for task in _ALL}


def get_task(name: str) -> Task:
    return TASKS[name]


def recognize_or_none(body: Any) -> Task | None:
    """The task whose answer has this shape, if any."""
    return next((task for task in _ALL if task.recognizes(body)), None)


def recognize(body: Any) -> Task:
    """The task whose answer has this shape (for runs that name no task)."""
    task = recognize_or_none(body)
    if task is not None:
        return task
    raise BadResponseError(
        f"Cannot tell the task from the answer's shape ({describe_shape(body)}); "
        "name the task in the run inputs"
    )


__all__ = ["TASKS", "Task", "get_task", "recognize", "recognize_or_none"]
