"""feature-extraction and sentence-similarity (served under `/pipeline/{task}`)."""

from __future__ import annotations

from typing import Any

from function.inputs import RunInputs
from function.tasks.base import Task, is_number

_NUMBER_TYPES = frozenset((int, float))  # what JSON numbers decode to (never bool)


def _vector(value: Any) -> bool:
    """A non-empty list of numbers; checked in C, as embeddings have thousands of them."""
    return isinstance(value, list) and bool(value) and _NUMBER_TYPES.issuperset(map(type, value))


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    return depth if is_number(value) else -1


class FeatureExtraction(Task):
    name = "feature-extraction"
    pipeline_route = True

    def recognizes(self, body: Any) -> bool:
        return _depth(body) in (1, 2, 3)

    def parse(self, body: Any) -> Any:
        # One text: a sentence embedding `[d]` -> `[[d]]`; token embeddings come as
        # `[tokens][d]`, or `[1][tokens][d]` from plain transformers models -> `[tokens][d]`.
        depth = _depth(body)
        if depth == 1 and _vector(body):
            return [body]
        if depth == 3 and len(body) == 1:
            body = body[0]
            depth = 2
        if depth == 2 and all(_vector(row) for row in body):
            return body
        raise self.unexpected(body)


class SentenceSimilarity(Task):
    name = "sentence-similarity"
    pipeline_route = True

    def payload(self, inputs: RunInputs) -> dict[str, Any]:
        structured = inputs.inputs or {}
        return {
            "inputs": {
                "source_sentence": structured["source_sentence"],
                "sentences": structured["sentences"],
            },
            "parameters": dict(inputs.parameters),
        }

    def parse(self, body: Any) -> Any:
        if not _vector(body):
            raise self.unexpected(body)
        return body
