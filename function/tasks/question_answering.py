"""question-answering: `{question, context}` in, `[{answer, score, start, end}]` out."""

from __future__ import annotations

from typing import Any

from function.inputs import RunInputs
from function.tasks.base import Task, is_record

_KEYS = ("answer", "score", "start", "end")


class QuestionAnswering(Task):
    name = "question-answering"

    def payload(self, inputs: RunInputs) -> dict[str, Any]:
        structured = inputs.inputs or {}
        return {
            "inputs": {"question": structured["question"], "context": structured["context"]},
            "parameters": dict(inputs.parameters),
        }

    def recognizes(self, body: Any) -> bool:
        return is_record(body, *_KEYS) or (
            isinstance(body, list) and bool(body) and all(is_record(i, *_KEYS) for i in body)
        )

    def parse(self, body: Any) -> Any:
        if is_record(body, *_KEYS):
            return [body]
        if isinstance(body, list) and all(is_record(i, *_KEYS) for i in body):
            return body
        raise self.unexpected(body)
