"""zero-shot-classification, text-classification and token-classification."""

from __future__ import annotations

from typing import Any

from function.inputs import RunInputs
from function.tasks.base import Task, is_number, records


def _ranked(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`[{label, score}]`, highest score first."""
    return sorted(
        ({"label": item["label"], "score": item["score"]} for item in items),
        key=lambda item: item["score"],
        reverse=True,
    )


def _label_scores(body: Any) -> list[dict[str, Any]] | None:
    items = records(body, "label", "score")
    if items is None:
        return None
    if all(isinstance(i["label"], str) and is_number(i["score"]) for i in items):
        return items
    return None


class TextClassification(Task):
    name = "text-classification"
    is_classification = True

    def recognizes(self, body: Any) -> bool:
        return bool(body) and _label_scores(body) is not None

    def parse(self, body: Any) -> Any:
        items = _label_scores(body)
        if items is None:
            raise self.unexpected(body)
        return _ranked(items)


class ZeroShotClassification(TextClassification):
    name = "zero-shot-classification"

    def payload(self, inputs: RunInputs) -> dict[str, Any]:
        parameters = {**inputs.parameters, "candidate_labels": inputs.labels}
        return {"inputs": inputs.text, "parameters": parameters}

    def recognizes(self, body: Any) -> bool:
        return isinstance(body, dict) and "labels" in body and "scores" in body

    def parse(self, body: Any) -> Any:
        # Until late 2025 the API answered {"sequence", "labels", "scores"}; since then the
        # spec's [{"label", "score"}], which the base class reads.
        if isinstance(body, list) and len(body) == 1 and self.recognizes(body[0]):
            body = body[0]
        if self.recognizes(body):
            labels, scores = body["labels"], body["scores"]
            if not (
                isinstance(labels, list) and isinstance(scores, list) and len(labels) == len(scores)
            ):
                raise self.unexpected(body)
            body = [{"label": x, "score": s} for x, s in zip(labels, scores, strict=True)]
        return super().parse(body)


class TokenClassification(Task):
    name = "token-classification"

    def recognizes(self, body: Any) -> bool:
        items = records(body, "score", "word", "start", "end")
        return bool(items) and all("entity_group" in i or "entity" in i for i in items or [])

    def parse(self, body: Any) -> Any:
        items = records(body, "score", "word", "start", "end")
        if items is None or not all("entity_group" in i or "entity" in i for i in items):
            raise self.unexpected(body)
        return items
